// Training and evaluation of a registered model behind a torch-free interface, so that server/
// and client/ never include LibTorch headers (each TU with <torch/torch.h> costs ~25 s and 1.3 GB).
#ifndef EDGEFL_MODELS_MODEL_RUNNER_H_
#define EDGEFL_MODELS_MODEL_RUNNER_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "data/dataset.h"
#include "protos/edgefl.pb.h"

namespace edgefl::models {

struct TrainOptions {
  int epochs = 1;
  int batch_size = 32;        // last partial batch kept
  double lr = 0.05;           // plain SGD
  double momentum = 0;
  double weight_decay = 0;
  int64_t max_samples = 0;    // 0 = all; otherwise a seeded random subset per epoch
  uint64_t seed = 0;          // shuffling
  // FedProx (Li et al. 2020): mu (w - w_start) is added to every gradient before the SGD step,
  // w_start being the weights Train starts from (the global model). 0 = off. Costs one copy of
  // the weights while training.
  double proximal_mu = 0;
  // FedRS (Li & Zhan 2021, restricted softmax): the logits of classes that do not occur in `data`
  // are multiplied by alpha in [0, 1] before the loss (and the training accuracy), so that local
  // steps on a label-skewed device drive the missing classes' scores down less. 1 = off.
  double restricted_softmax_alpha = 1;
  // FedDyn (Acar et al. 2021): when non-empty (num_parameters() values, spec order), subtracted
  // from every gradient before the SGD step (after the proximal term): the device's linear term
  // g, so that local steps minimise loss - <g, w> + mu/2 ||w - w_start||^2. Must outlive Train.
  absl::Span<const float> linear_term;
  // FedBABU (Oh et al. 2022): the model's final layer (weight and bias, the last
  // ModelRunner::head_size() values in spec order) is not updated; only the body trains.
  bool freeze_head = false;
  // FedNTD (Lee et al., NeurIPS 2022, "Preservation of the Global Knowledge by Not-True
  // Distillation in Federated Learning"): when beta > 0 the loss adds beta tau^2
  // KL(teacher || student) over the softmax (temperature tau) of the logits of every class but
  // the sample's own, the teacher being the weights Train starts from (the global model), so
  // that local steps on label-skewed data keep what the global model knows of the other classes.
  // Costs a second copy of the model and one more forward pass per batch.
  double not_true_distillation_beta = 0;
  double not_true_distillation_tau = 1;
};

struct TrainResult {
  double mean_loss = 0;       // mean cross-entropy over all samples seen
  double accuracy = 0;        // training accuracy over the samples seen (during training)
  int64_t samples = 0;        // samples per epoch actually used
  double seconds = 0;
};

struct EvalResult {
  double loss = 0;            // mean cross-entropy
  double accuracy = 0;        // top-1
  int64_t samples = 0;
  double seconds = 0;
};

// Called after each batch with (samples done, samples total, running mean loss).
using ProgressFn = std::function<void(int64_t, int64_t, double)>;

// Owns one instance of a registered model. Not thread-safe; one runner per thread.
class ModelRunner {
 public:
  // NOT_FOUND for an unknown model name. `threads` sets torch's intra-op threads for this process
  // (at::set_num_threads) when > 0. The model starts from InitialWeights(model_name, 0); torch's
  // global RNG is left as it was.
  static absl::StatusOr<std::unique_ptr<ModelRunner>> Create(const std::string& model_name,
                                                             int threads);
  virtual ~ModelRunner() = default;

  virtual const proto::ModelSpec& spec() const = 0;
  virtual int64_t num_parameters() const = 0;

  // Copies flat float32 weights (spec order) into the model. INVALID_ARGUMENT on size mismatch.
  virtual absl::Status SetWeights(absl::Span<const float> weights) = 0;
  // Copies the model's weights out, flat in spec order (resizes `out`).
  virtual void GetWeights(std::vector<float>* out) const = 0;

  // Local training: fresh SGD optimizer, `epochs` passes over a seeded permutation of `data`,
  // mean cross-entropy, pixels scaled to [0,1]. INVALID_ARGUMENT on empty data or bad options.
  // Deterministic for a given seed, starting weights and thread count. The shuffling uses
  // std::mt19937_64(options.seed), never torch's global RNG. `progress` may be empty. Gradients
  // are dropped afterwards, so between calls the runner holds only weights and a batch buffer.
  virtual absl::StatusOr<TrainResult> Train(const data::ImageDataset& data, const TrainOptions& options,
                                            const ProgressFn& progress) = 0;

  // Mean cross-entropy and top-1 accuracy on `data` (no grad, eval mode; training mode is restored
  // afterwards). `batch_size` samples go through each forward pass, capped at 32 so memory stays
  // bounded (results do not depend on it). INVALID_ARGUMENT on empty or inconsistent data, labels
  // > 9 or batch_size < 1.
  virtual absl::StatusOr<EvalResult> Evaluate(const data::ImageDataset& data, int batch_size) = 0;
};

}  // namespace edgefl::models

#endif  // EDGEFL_MODELS_MODEL_RUNNER_H_
