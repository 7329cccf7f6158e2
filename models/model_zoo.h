// The LibTorch model registry. This header includes LibTorch: only models/*.cc may include it
// (everything outside models/ goes through the torch-free model_spec.h / model_runner.h).
#ifndef EDGEFL_MODELS_MODEL_ZOO_H_
#define EDGEFL_MODELS_MODEL_ZOO_H_

#include <torch/nn/module.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "protos/edgefl.pb.h"

namespace edgefl::models {

// Common base of every registered model: an image classifier taking [N, 1, 28, 28] float32
// pixels in [0, 1] and returning [N, 10] logits. Parameters are registered in wire order.
class ImageClassifierImpl : public torch::nn::Module {
 public:
  virtual torch::Tensor forward(torch::Tensor x) = 0;
};

// "fedavg_cnn": McMahan et al. 2017 CNN with padding 2 (WORKLOAD.md), 1,663,370 parameters:
// conv1 5x5 1->32 pad 2, ReLU, maxpool 2; conv2 5x5 32->64 pad 2, ReLU, maxpool 2;
// fc1 3136->512, ReLU; fc2 512->10.
class FedAvgCnnImpl : public ImageClassifierImpl {
 public:
  FedAvgCnnImpl();
  torch::Tensor forward(torch::Tensor x) override;

 private:
  torch::nn::Conv2d conv1_{nullptr};
  torch::nn::Conv2d conv2_{nullptr};
  torch::nn::Linear fc1_{nullptr};
  torch::nn::Linear fc2_{nullptr};
};
TORCH_MODULE(FedAvgCnn);

// Fixed input standardisation inside small_cnn's forward: x' = (x - mean) / std, with
// Fashion-MNIST's training-set pixel statistics (of x = pixel / 255). Not a parameter; an exporter
// of small_cnn must apply it before conv1 (it cannot be folded into conv1 exactly because of the
// zero padding).
inline constexpr float kSmallCnnInputMean = 0.2860f;
inline constexpr float kSmallCnnInputStd = 0.3530f;

// "small_cnn": the same shape scaled down for quick runs and as the microcontroller student,
// 54,314 parameters: standardise the input (above); conv1 5x5 1->8 pad 2, ReLU, maxpool 2;
// conv2 5x5 8->16 pad 2, ReLU, maxpool 2; fc1 784->64, ReLU; fc2 64->10. The standardisation
// roughly doubles how fast it learns from PyTorch's default initialisation with plain SGD.
class SmallCnnImpl : public ImageClassifierImpl {
 public:
  SmallCnnImpl();
  torch::Tensor forward(torch::Tensor x) override;

 private:
  torch::nn::Conv2d conv1_{nullptr};
  torch::nn::Conv2d conv2_{nullptr};
  torch::nn::Linear fc1_{nullptr};
  torch::nn::Linear fc2_{nullptr};
};
TORCH_MODULE(SmallCnn);

// "mlp": flatten 784 -> fc1 128, ReLU -> fc2 10; 101,770 parameters.
class MlpImpl : public ImageClassifierImpl {
 public:
  MlpImpl();
  torch::Tensor forward(torch::Tensor x) override;

 private:
  torch::nn::Linear fc1_{nullptr};
  torch::nn::Linear fc2_{nullptr};
};
TORCH_MODULE(Mlp);

// Builds a fresh instance of the registered model `name`, initialised with LibTorch's default
// initialisation drawn from torch's global CPU generator seeded with `seed`. The global
// generator's state is restored afterwards, so this has no effect on other users of torch's RNG.
// NOT_FOUND naming the model and the known names for an unknown name. Not safe to call
// concurrently with other users of torch's global generator.
absl::StatusOr<std::shared_ptr<ImageClassifierImpl>> CreateModel(const std::string& name,
                                                                 uint64_t seed);

// The spec (names in registration order, shapes) of `module`'s parameters, labelled `name`.
proto::ModelSpec SpecOfModule(const std::string& name, const torch::nn::Module& module);

}  // namespace edgefl::models

#endif  // EDGEFL_MODELS_MODEL_ZOO_H_
