// The model registry and the torch-dependent half of model_spec.h (SpecForModel, InitialWeights).
#include "models/model_zoo.h"

#include <ATen/CPUGeneratorImpl.h>
#include <c10/util/Exception.h>
#include <torch/utils.h>

#include <functional>
#include <map>
#include <mutex>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"
#include "models/model_spec.h"
#include "models/relu_max_pool.h"

namespace edgefl::models {
namespace {

torch::nn::Conv2dOptions Conv5x5(int64_t in, int64_t out) {
  return torch::nn::Conv2dOptions(in, out, 5).padding(2).bias(true);
}

// Conv (5x5, pad 2) -> ReLU -> maxpool 2x2, twice; flatten; fc -> ReLU -> fc. ReLU + pooling is
// one fused operation (bit-identical to torch::max_pool2d(torch::relu(x), 2), see its header).
torch::Tensor TwoConvTwoFc(torch::Tensor x, torch::nn::Conv2d& conv1, torch::nn::Conv2d& conv2,
                           torch::nn::Linear& fc1, torch::nn::Linear& fc2) {
  x = ReluMaxPool2x2(conv1->forward(x));
  x = ReluMaxPool2x2(conv2->forward(x));
  x = torch::relu(fc1->forward(x.flatten(1)));
  return fc2->forward(x);
}

using Factory = std::function<std::shared_ptr<ImageClassifierImpl>()>;

// Registry order is the order ModelNames() reports.
const std::vector<std::pair<std::string, Factory>>& Registry() {
  static const auto* registry = new std::vector<std::pair<std::string, Factory>>{
      {"fedavg_cnn", [] { return std::make_shared<FedAvgCnnImpl>(); }},
      {"small_cnn", [] { return std::make_shared<SmallCnnImpl>(); }},
      {"mlp", [] { return std::make_shared<MlpImpl>(); }},
  };
  return *registry;
}

// Serialises our use of torch's global generator (seeding, building, restoring).
std::mutex& RngMutex() {
  static auto* mu = new std::mutex;
  return *mu;
}

absl::Status UnknownModel(const std::string& name) {
  return absl::NotFoundError(absl::StrCat("unknown model \"", name,
                                          "\"; known models: ", absl::StrJoin(ModelNames(), ", ")));
}

}  // namespace

FedAvgCnnImpl::FedAvgCnnImpl()
    : conv1_(register_module("conv1", torch::nn::Conv2d(Conv5x5(1, 32)))),
      conv2_(register_module("conv2", torch::nn::Conv2d(Conv5x5(32, 64)))),
      fc1_(register_module("fc1", torch::nn::Linear(64 * 7 * 7, 512))),
      fc2_(register_module("fc2", torch::nn::Linear(512, 10))) {}

torch::Tensor FedAvgCnnImpl::forward(torch::Tensor x) {
  return TwoConvTwoFc(std::move(x), conv1_, conv2_, fc1_, fc2_);
}

SmallCnnImpl::SmallCnnImpl()
    : conv1_(register_module("conv1", torch::nn::Conv2d(Conv5x5(1, 8)))),
      conv2_(register_module("conv2", torch::nn::Conv2d(Conv5x5(8, 16)))),
      fc1_(register_module("fc1", torch::nn::Linear(16 * 7 * 7, 64))),
      fc2_(register_module("fc2", torch::nn::Linear(64, 10))) {}

torch::Tensor SmallCnnImpl::forward(torch::Tensor x) {
  x = (x - kSmallCnnInputMean) * (1.0f / kSmallCnnInputStd);
  return TwoConvTwoFc(std::move(x), conv1_, conv2_, fc1_, fc2_);
}

MlpImpl::MlpImpl()
    : fc1_(register_module("fc1", torch::nn::Linear(28 * 28, 128))),
      fc2_(register_module("fc2", torch::nn::Linear(128, 10))) {}

torch::Tensor MlpImpl::forward(torch::Tensor x) {
  return fc2_->forward(torch::relu(fc1_->forward(x.flatten(1))));
}

absl::StatusOr<std::shared_ptr<ImageClassifierImpl>> CreateModel(const std::string& name,
                                                                 uint64_t seed) {
  const Factory* factory = nullptr;
  for (const auto& [n, f] : Registry()) {
    if (n == name) factory = &f;
  }
  if (factory == nullptr) return UnknownModel(name);
  std::lock_guard<std::mutex> lock(RngMutex());
  try {
    // Puts the global generator back as it was, also when building throws.
    class GeneratorStateRestorer {
     public:
      GeneratorStateRestorer() : gen_(at::detail::getDefaultCPUGenerator()) {
        std::lock_guard<std::mutex> gen_lock(gen_.mutex());
        saved_ = gen_.get_state();
      }
      ~GeneratorStateRestorer() {
        std::lock_guard<std::mutex> gen_lock(gen_.mutex());
        gen_.set_state(saved_);
      }

     private:
      at::Generator gen_;
      at::Tensor saved_;
    } restorer;
    torch::manual_seed(seed);
    return (*factory)();
  } catch (const c10::Error& e) {
    return absl::InternalError(
        absl::StrCat("building model ", name, ": ", e.what_without_backtrace()));
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("building model ", name, ": ", e.what()));
  }
}

proto::ModelSpec SpecOfModule(const std::string& name, const torch::nn::Module& module) {
  proto::ModelSpec spec;
  spec.set_model(name);
  for (const auto& item : module.named_parameters(/*recurse=*/true)) {
    proto::TensorSpec* t = spec.add_tensors();
    t->set_name(item.key());
    for (int64_t d : item.value().sizes()) t->add_shape(d);
  }
  return spec;
}

// ---- model_spec.h, the torch-dependent part ----

std::vector<std::string> ModelNames() {
  std::vector<std::string> names;
  for (const auto& entry : Registry()) names.push_back(entry.first);
  return names;
}

absl::StatusOr<proto::ModelSpec> SpecForModel(const std::string& name) {
  static auto* mu = new std::mutex;
  static auto* cache = new std::map<std::string, proto::ModelSpec>;
  {
    std::lock_guard<std::mutex> lock(*mu);
    auto it = cache->find(name);
    if (it != cache->end()) return it->second;
  }
  ASSIGN_OR_RETURN(std::shared_ptr<ImageClassifierImpl> model, CreateModel(name, /*seed=*/0));
  proto::ModelSpec spec = SpecOfModule(name, *model);
  std::lock_guard<std::mutex> lock(*mu);
  cache->emplace(name, spec);
  return spec;
}

absl::StatusOr<std::vector<float>> InitialWeights(const std::string& name, uint64_t seed) {
  ASSIGN_OR_RETURN(std::shared_ptr<ImageClassifierImpl> model, CreateModel(name, seed));
  std::vector<float> out;
  try {
    for (const auto& p : model->parameters()) {
      torch::Tensor t = p.detach().contiguous();
      const float* data = t.data_ptr<float>();
      out.insert(out.end(), data, data + t.numel());
    }
  } catch (const c10::Error& e) {
    return absl::InternalError(
        absl::StrCat("initial weights of ", name, ": ", e.what_without_backtrace()));
  }
  return out;
}

}  // namespace edgefl::models
