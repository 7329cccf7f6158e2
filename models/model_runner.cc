// ModelRunner on LibTorch. Every torch call is inside a try block that turns c10::Error (and any
// other std::exception) into an absl::Status, so no exception crosses the torch-free interface.
#include "models/model_runner.h"

#include <ATen/Parallel.h>
#include <c10/util/Exception.h>
#include <malloc.h>
#include <torch/nn/functional/loss.h>
#include <torch/optim/sgd.h>
#include <torch/utils.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstring>
#include <random>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "models/model_spec.h"
#include "models/model_zoo.h"
#include "data/seeded_random.h"

namespace edgefl::models {
namespace {

constexpr int kImageSide = 28;
constexpr int kNumClasses = 10;
// Evaluate's forward passes never take more samples than this: memory stays bounded (a 500-image
// fedavg_cnn forward pass needs ~150 MiB of activations) and 32-sample passes are the fastest on
// CPU here (4.3 s for 10,000 images vs 5.8 s at 64, whose ~6 MiB buffers churn mmap).
constexpr int64_t kMaxEvalForwardBatch = 32;

double SecondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// pixel -> float32(pixel / 255), the exact values of WORKLOAD.md's `x = pixel / 255.0`.
const std::array<float, 256>& PixelScale() {
  static const std::array<float, 256> table = [] {
    std::array<float, 256> t{};
    for (int i = 0; i < 256; ++i) t[i] = static_cast<float>(i / 255.0);
    return t;
  }();
  return table;
}

absl::Status CheckData(const data::ImageDataset& data, const char* what) {
  if (data.size() == 0) return absl::InvalidArgumentError(absl::StrCat(what, ": empty data set"));
  if (data.rows != kImageSide || data.cols != kImageSide) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": images are ", data.rows, "x", data.cols,
                                                   ", the models take ", kImageSide, "x",
                                                   kImageSide));
  }
  const size_t want = static_cast<size_t>(data.size()) * data.rows * data.cols;
  if (data.pixels.size() != want) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": ", data.pixels.size(), " pixels for ",
                                                   data.size(), " labels (need ", want, ")"));
  }
  for (size_t i = 0; i < data.labels.size(); ++i) {
    if (data.labels[i] >= kNumClasses) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": label ", int{data.labels[i]}, " of sample ", i, " not in 0..9"));
    }
  }
  return absl::OkStatus();
}

// Hands freed heap memory back to the OS so the resident set between rounds is the live data.
void ReleaseFreeMemory() {
#ifdef __GLIBC__
  malloc_trim(0);
#endif
}

absl::Status FromTorch(const char* what, const std::exception& e) {
  if (const auto* c10e = dynamic_cast<const c10::Error*>(&e)) {
    return absl::InternalError(
        absl::StrCat(what, ": torch error: ", c10e->what_without_backtrace()));
  }
  return absl::InternalError(absl::StrCat(what, ": ", e.what()));
}

class TorchModelRunner final : public ModelRunner {
 public:
  TorchModelRunner(std::shared_ptr<ImageClassifierImpl> model, proto::ModelSpec spec)
      : model_(std::move(model)), spec_(std::move(spec)), params_(model_->parameters()) {
    for (const auto& p : params_) num_parameters_ += p.numel();
    // The head: the parameters of the last registered layer (every zoo model ends in its
    // classifier, fc2), which are the last of params_.
    const auto layers = model_->children();
    head_begin_ = params_.size() - (layers.empty() ? 0 : layers.back()->parameters().size());
    model_->train();
  }

  const proto::ModelSpec& spec() const override { return spec_; }
  int64_t num_parameters() const override { return num_parameters_; }

  absl::Status SetWeights(absl::Span<const float> weights) override {
    if (static_cast<int64_t>(weights.size()) != num_parameters_) {
      return absl::InvalidArgumentError(absl::StrCat("SetWeights: got ", weights.size(),
                                                     " floats, model ", spec_.model(), " has ",
                                                     num_parameters_));
    }
    try {
      torch::NoGradGuard no_grad;
      const float* src = weights.data();
      for (auto& p : params_) {
        // from_blob does not copy; copy_ writes into the parameter's own storage.
        p.copy_(torch::from_blob(const_cast<float*>(src), p.sizes(), torch::kFloat32));
        src += p.numel();
      }
    } catch (const std::exception& e) {
      return FromTorch("SetWeights", e);
    }
    return absl::OkStatus();
  }

  void GetWeights(std::vector<float>* out) const override {
    out->resize(num_parameters_);
    float* dst = out->data();
    for (const auto& p : params_) {
      // Parameters are dense float32 and contiguous (they are created so and only copied into).
      const torch::Tensor t = p.detach().contiguous();
      std::memcpy(dst, t.data_ptr<float>(), t.numel() * sizeof(float));
      dst += t.numel();
    }
  }

  absl::StatusOr<TrainResult> Train(const data::ImageDataset& data, const TrainOptions& options,
                                    const ProgressFn& progress) override {
    RETURN_IF_ERROR(CheckData(data, "Train"));
    if (options.epochs < 1 || options.batch_size < 1 || !(options.lr >= 0) ||
        !(options.momentum >= 0) || !(options.weight_decay >= 0) || options.max_samples < 0 ||
        !(options.proximal_mu >= 0) || std::isinf(options.proximal_mu) ||
        !(options.restricted_softmax_alpha >= 0 && options.restricted_softmax_alpha <= 1) ||
        !(options.not_true_distillation_beta >= 0) || std::isinf(options.not_true_distillation_beta) ||
        !(options.not_true_distillation_tau > 0) || std::isinf(options.not_true_distillation_tau)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "Train: bad options: epochs=", options.epochs, " batch_size=", options.batch_size,
          " lr=", options.lr, " momentum=", options.momentum,
          " weight_decay=", options.weight_decay, " max_samples=", options.max_samples,
          " proximal_mu=", options.proximal_mu,
          " restricted_softmax_alpha=", options.restricted_softmax_alpha,
          " not_true_distillation_beta=", options.not_true_distillation_beta,
          " not_true_distillation_tau=", options.not_true_distillation_tau));
    }
    if (!options.linear_term.empty() &&
        options.linear_term.size() != static_cast<size_t>(num_parameters())) {
      return absl::InvalidArgumentError(absl::StrCat("Train: linear_term holds ",
                                                     options.linear_term.size(),
                                                     " values, the model has ", num_parameters()));
    }
    const auto start = std::chrono::steady_clock::now();
    const int64_t n = data.size();
    const int64_t per_epoch = options.max_samples > 0 ? std::min(options.max_samples, n) : n;
    const int64_t total = per_epoch * options.epochs;
    TrainResult result;
    result.samples = per_epoch;
    try {
      model_->train();
      torch::optim::SGD optimizer(params_, torch::optim::SGDOptions(options.lr)
                                               .momentum(options.momentum)
                                               .weight_decay(options.weight_decay));
      // FedProx: the weights the round started from, the centre of the proximal term.
      std::vector<torch::Tensor> anchor;
      if (options.proximal_mu > 0) {
        torch::NoGradGuard no_grad;
        for (const auto& p : params_) anchor.push_back(p.detach().clone());
      }
      // FedDyn: the linear term as one tensor per parameter (copies: the span's memory is not
      // torch's).
      std::vector<torch::Tensor> linear;
      if (!options.linear_term.empty()) {
        const float* src = options.linear_term.data();
        for (const auto& p : params_) {
          torch::Tensor t = torch::empty_like(p.detach());
          std::memcpy(t.data_ptr<float>(), src, t.numel() * sizeof(float));
          src += t.numel();
          linear.push_back(std::move(t));
        }
      }
      // FedRS: 1 for the classes present in the data, alpha for the others (labels are < 10:
      // CheckData).
      torch::Tensor logit_scale;
      if (options.restricted_softmax_alpha < 1) {
        std::array<bool, kNumClasses> present{};
        for (uint8_t label : data.labels) present[label] = true;
        logit_scale = torch::empty({kNumClasses}, torch::kFloat32);
        float* scale = logit_scale.data_ptr<float>();
        for (int k = 0; k < kNumClasses; ++k) {
          scale[k] = present[k] ? 1.0f : static_cast<float>(options.restricted_softmax_alpha);
        }
      }
      // FedNTD: the teacher is a copy of the weights training starts from.
      const double ntd_beta = options.not_true_distillation_beta;
      const double ntd_tau = options.not_true_distillation_tau;
      if (ntd_beta > 0) {
        if (teacher_ == nullptr) {
          ASSIGN_OR_RETURN(teacher_, CreateModel(spec_.model(), 0));
          teacher_->eval();
        }
        torch::NoGradGuard no_grad;
        const std::vector<torch::Tensor> from = teacher_->parameters();
        for (size_t i = 0; i < params_.size(); ++i) from[i].copy_(params_[i].detach());
      } else {
        teacher_.reset();  // a schedule entry turned FedNTD off: free the model copy
      }
      std::mt19937_64 rng(options.seed);
      double loss_sum = 0;
      int64_t correct = 0;
      int64_t done = 0;
      for (int epoch = 0; epoch < options.epochs; ++epoch) {
        // A fresh permutation per epoch; with max_samples its prefix is a random subset.
        std::vector<int64_t> order = data::SeededPermutation(n, rng);
        order.resize(per_epoch);
        for (int64_t begin = 0; begin < per_epoch; begin += options.batch_size) {
          const int64_t b = std::min<int64_t>(options.batch_size, per_epoch - begin);
          auto [x, y] = FillBatch(data, order.data() + begin, b);
          // Gradients are unset rather than zeroed between batches (torch's set_to_none): the
          // forward pass then runs without them resident, and backward hands each fresh gradient
          // to its parameter instead of adding it into a zeroed buffer (a second copy of fc1's
          // 6.4 MB gradient). 0 + g == g, so the SGD step is the same.
          for (auto& p : params_) p.mutable_grad() = torch::Tensor();
          torch::Tensor logits = model_->forward(x);
          if (logit_scale.defined()) logits = logits * logit_scale;
          const torch::Tensor ce = torch::nn::functional::cross_entropy(logits, y);
          torch::Tensor loss = ce;
          if (ntd_beta > 0) {
            torch::Tensor teacher_logits;
            {
              torch::NoGradGuard no_grad;
              teacher_logits = teacher_->forward(x);
            }
            // Every class but the sample's own: [b, 9].
            const torch::Tensor not_true =
                torch::ones({b, kNumClasses}, torch::kBool).scatter_(1, y.unsqueeze(1), false);
            const torch::Tensor s = torch::log_softmax(
                logits.masked_select(not_true).view({b, kNumClasses - 1}) / ntd_tau, 1);
            const torch::Tensor t = torch::log_softmax(
                teacher_logits.masked_select(not_true).view({b, kNumClasses - 1}) / ntd_tau, 1);
            // KL(teacher || student), averaged over the batch.
            const torch::Tensor kl = (t.exp() * (t - s)).sum(1).mean();
            loss = ce + kl * (ntd_beta * ntd_tau * ntd_tau);
          }
          loss.backward();
          if (!anchor.empty()) {
            torch::NoGradGuard no_grad;
            for (size_t i = 0; i < params_.size(); ++i) {
              // grad += mu (w - w_start)
              params_[i].mutable_grad().add_(params_[i].detach() - anchor[i],
                                             options.proximal_mu);
            }
          }
          if (!linear.empty()) {
            torch::NoGradGuard no_grad;
            // grad -= g
            for (size_t i = 0; i < params_.size(); ++i) params_[i].mutable_grad().sub_(linear[i]);
          }
          if (options.freeze_head) {
            // SGD skips a parameter without a gradient (no step, no momentum, no weight decay).
            for (size_t i = head_begin_; i < params_.size(); ++i) params_[i].mutable_grad() = torch::Tensor();
          }
          optimizer.step();
          loss_sum += ce.item<double>() * static_cast<double>(b);
          correct += logits.detach().argmax(1).eq(y).sum().item<int64_t>();
          done += b;
          if (progress) progress(done, total, loss_sum / static_cast<double>(done));
        }
      }
      result.mean_loss = loss_sum / static_cast<double>(done);
      result.accuracy = static_cast<double>(correct) / static_cast<double>(done);
      // Drop the gradients so they do not stay resident between rounds.
      for (auto& p : params_) p.mutable_grad() = torch::Tensor();
    } catch (const std::exception& e) {
      ReleaseFreeMemory();
      return FromTorch("Train", e);
    }
    ReleaseFreeMemory();
    result.seconds = SecondsSince(start);
    return result;
  }

  absl::StatusOr<EvalResult> Evaluate(const data::ImageDataset& data, int batch_size) override {
    RETURN_IF_ERROR(CheckData(data, "Evaluate"));
    if (batch_size < 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("Evaluate: batch_size must be >= 1, got ", batch_size));
    }
    const auto start = std::chrono::steady_clock::now();
    const int64_t n = data.size();
    EvalResult result;
    result.samples = n;
    // Restores training mode however Evaluate leaves.
    struct TrainModeRestorer {
      ImageClassifierImpl* model;
      ~TrainModeRestorer() { model->train(); }
    };
    try {
      torch::NoGradGuard no_grad;
      TrainModeRestorer restore{model_.get()};
      model_->eval();
      const int64_t chunk = std::min<int64_t>(batch_size, kMaxEvalForwardBatch);
      std::vector<int64_t> order(std::min<int64_t>(chunk, n));
      double loss_sum = 0;
      int64_t correct = 0;
      for (int64_t begin = 0; begin < n; begin += chunk) {
        const int64_t b = std::min<int64_t>(chunk, n - begin);
        for (int64_t i = 0; i < b; ++i) order[i] = begin + i;
        auto [x, y] = FillBatch(data, order.data(), b);
        const torch::Tensor logits = model_->forward(x);
        loss_sum +=
            torch::nn::functional::cross_entropy(
                logits, y, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum))
                .item<double>();
        correct += logits.argmax(1).eq(y).sum().item<int64_t>();
      }
      result.loss = loss_sum / static_cast<double>(n);
      result.accuracy = static_cast<double>(correct) / static_cast<double>(n);
    } catch (const std::exception& e) {
      ReleaseFreeMemory();
      return FromTorch("Evaluate", e);
    }
    ReleaseFreeMemory();
    result.seconds = SecondsSince(start);
    return result;
  }

 private:
  // Writes samples rows[0..b) as float pixels and int64 labels into reused buffers and returns
  // views of their first b entries. The data set itself stays uint8.
  std::pair<torch::Tensor, torch::Tensor> FillBatch(const data::ImageDataset& data, const int64_t* rows,
                                                    int64_t b) {
    if (!batch_x_.defined() || batch_x_.size(0) < b) {
      batch_x_ = torch::empty({b, 1, kImageSide, kImageSide}, torch::kFloat32);
      batch_y_ = torch::empty({b}, torch::kInt64);
    }
    const std::array<float, 256>& scale = PixelScale();
    constexpr int64_t kPixels = kImageSide * kImageSide;
    float* x = batch_x_.data_ptr<float>();
    int64_t* y = batch_y_.data_ptr<int64_t>();
    for (int64_t i = 0; i < b; ++i) {
      const uint8_t* src = data.pixels.data() + rows[i] * kPixels;
      float* dst = x + i * kPixels;
      for (int64_t j = 0; j < kPixels; ++j) dst[j] = scale[src[j]];
      y[i] = data.labels[rows[i]];
    }
    return {batch_x_.narrow(0, 0, b), batch_y_.narrow(0, 0, b)};
  }

  std::shared_ptr<ImageClassifierImpl> model_;
  proto::ModelSpec spec_;
  std::vector<torch::Tensor> params_;  // spec order
  int64_t num_parameters_ = 0;
  std::shared_ptr<ImageClassifierImpl> teacher_;  // FedNTD's copy of the global model (lazily made)
  size_t head_begin_ = 0;  // params_[head_begin_..] are the final layer (TrainOptions::freeze_head)
  torch::Tensor batch_x_;  // [capacity, 1, 28, 28] float32, reused across batches
  torch::Tensor batch_y_;  // [capacity] int64
};

}  // namespace

absl::StatusOr<std::unique_ptr<ModelRunner>> ModelRunner::Create(const std::string& model_name,
                                                                 int threads) {
  ASSIGN_OR_RETURN(std::shared_ptr<ImageClassifierImpl> model, CreateModel(model_name, /*seed=*/0));
  try {
    if (threads > 0) at::set_num_threads(threads);
    proto::ModelSpec spec = SpecOfModule(model_name, *model);
    return std::unique_ptr<ModelRunner>(new TorchModelRunner(std::move(model), std::move(spec)));
  } catch (const std::exception& e) {
    return FromTorch("ModelRunner::Create", e);
  }
}

}  // namespace edgefl::models
