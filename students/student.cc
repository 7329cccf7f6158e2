// Students on LibTorch: the network, knowledge-distillation training, post-training quantization
// and the integer reference. Every torch call sits inside a try block that turns c10::Error (and
// any std::exception) into an absl::Status.
#include "students/student.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <c10/util/Exception.h>
#include <torch/nn/functional/activation.h>
#include <torch/nn/functional/fold.h>
#include <torch/nn/functional/loss.h>
#include <torch/nn/functional/pooling.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>
#include <torch/optim/adam.h>
#include <torch/utils.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstring>
#include <limits>
#include <mutex>
#include <random>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"
#include "models/model_spec.h"
#include "models/model_zoo.h"
#include "data/seeded_random.h"

namespace edgefl::students {
namespace {

constexpr int64_t kForwardBatch = 256;  // eval / calibration / reference chunk

const std::vector<StudentArch>& Registry() {
  using L = StudentLayer;
  constexpr LayerKind kConv = LayerKind::kConv;
  constexpr LayerKind kDw = LayerKind::kDepthwiseConv;
  constexpr LayerKind kPool = LayerKind::kMaxPool;
  constexpr LayerKind kDense = LayerKind::kDense;
  static const auto* registry = new std::vector<StudentArch>{
      {"student_tiny",
       "conv3x3 1->16, maxpool, conv3x3 16->32, maxpool, conv3x3 32->32, dense 1568->10",
       {L{kConv, 16, 3, 1, true}, L{kPool}, L{kConv, 32, 3, 1, true}, L{kPool},
        L{kConv, 32, 3, 1, true}, L{kDense, kStudentNumClasses, 0, 0, false}}},
      {"student_dw",
       "conv3x3 1->16, maxpool, dw3x3 16 + pw 16->48, maxpool, dw3x3 48 + pw 48->96, maxpool, "
       "dense 864->10",
       {L{kConv, 16, 3, 1, true}, L{kPool}, L{kDw, 0, 3, 1, true}, L{kConv, 48, 1, 0, true},
        L{kPool}, L{kDw, 0, 3, 1, true}, L{kConv, 96, 1, 0, true}, L{kPool},
        L{kDense, kStudentNumClasses, 0, 0, false}}},
  };
  return *registry;
}

absl::Status FromTorch(const std::string& what, const std::exception& e) {
  if (const auto* c10e = dynamic_cast<const c10::Error*>(&e)) {
    return absl::InternalError(
        absl::StrCat(what, ": torch error: ", c10e->what_without_backtrace()));
  }
  return absl::InternalError(absl::StrCat(what, ": ", e.what()));
}

double SecondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

absl::Status CheckImages(const data::ImageDataset& data, const char* what) {
  if (data.rows != 28 || data.cols != 28) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": images are ", data.rows, "x", data.cols, ", students take 28x28"));
  }
  if (data.pixels.size() % (28 * 28) != 0) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": pixel count is not a multiple of 784"));
  }
  if (NumImages(data) == 0) return absl::InvalidArgumentError(absl::StrCat(what, ": no images"));
  return absl::OkStatus();
}

// Images [rows..] as float [b, 1, 28, 28] in [0, 1].
torch::Tensor FloatBatch(const data::ImageDataset& data, const int64_t* rows, int64_t b) {
  torch::Tensor x = torch::empty({b, 1, 28, 28}, torch::kFloat32);
  float* dst = x.data_ptr<float>();
  for (int64_t i = 0; i < b; ++i) {
    const uint8_t* src = data.pixels.data() + rows[i] * 784;
    for (int j = 0; j < 784; ++j) dst[i * 784 + j] = static_cast<float>(src[j] / 255.0);
  }
  return x;
}

torch::Tensor ContiguousBatch(const data::ImageDataset& data, int64_t begin, int64_t b) {
  std::vector<int64_t> rows(b);
  for (int64_t i = 0; i < b; ++i) rows[i] = begin + i;
  return FloatBatch(data, rows.data(), b);
}

// Serialises our use of torch's global generator when building students.
std::mutex& RngMutex() {
  static auto* mu = new std::mutex;
  return *mu;
}

class GeneratorStateRestorer {
 public:
  GeneratorStateRestorer() : gen_(at::detail::getDefaultCPUGenerator()) {
    std::lock_guard<std::mutex> lock(gen_.mutex());
    saved_ = gen_.get_state();
  }
  ~GeneratorStateRestorer() {
    std::lock_guard<std::mutex> lock(gen_.mutex());
    gen_.set_state(saved_);
  }

 private:
  at::Generator gen_;
  at::Tensor saved_;
};

// The float student: the layers of a StudentArch, conv / dwconv with batch norm.
class StudentNetImpl : public torch::nn::Module {
 public:
  explicit StudentNetImpl(const StudentArch& arch) : arch_(arch) {
    int channels = 1;
    // The registry's architectures are valid (StudentModel::Create checks FootprintOf first).
    const std::vector<TensorShape> outputs = FootprintOf(arch).value().outputs;
    for (size_t i = 0; i < arch.layers.size(); ++i) {
      const StudentLayer& l = arch.layers[i];
      convs_.emplace_back(nullptr);
      bns_.emplace_back(nullptr);
      fcs_.emplace_back(nullptr);
      const std::string tag = absl::StrCat("l", i);
      switch (l.kind) {
        case LayerKind::kConv:
        case LayerKind::kDepthwiseConv: {
          const bool dw = l.kind == LayerKind::kDepthwiseConv;
          const int out = dw ? channels : l.out_channels;
          convs_[i] = register_module(
              tag + "_conv", torch::nn::Conv2d(torch::nn::Conv2dOptions(channels, out, l.kernel)
                                                   .padding(l.pad)
                                                   .groups(dw ? channels : 1)
                                                   .bias(false)));
          bns_[i] = register_module(tag + "_bn", torch::nn::BatchNorm2d(out));
          channels = out;
          break;
        }
        case LayerKind::kMaxPool:
          break;
        case LayerKind::kDense: {
          const int64_t in_features = i == 0 ? 28 * 28 : outputs[i - 1].bytes();
          fcs_[i] = register_module(tag + "_fc", torch::nn::Linear(in_features, l.out_channels));
          channels = l.out_channels;
          break;
        }
      }
    }
  }

  torch::Tensor forward(torch::Tensor x) { return Run(std::move(x), nullptr); }

  // Also collects every layer's output into `outputs` when not null.
  torch::Tensor Run(torch::Tensor x, std::vector<torch::Tensor>* outputs) {
    for (size_t i = 0; i < arch_.layers.size(); ++i) {
      const StudentLayer& l = arch_.layers[i];
      switch (l.kind) {
        case LayerKind::kConv:
        case LayerKind::kDepthwiseConv:
          x = bns_[i]->forward(convs_[i]->forward(x));
          break;
        case LayerKind::kMaxPool:
          x = torch::max_pool2d(x, 2);
          break;
        case LayerKind::kDense:
          if (x.dim() > 2) x = x.flatten(1);
          x = fcs_[i]->forward(x);
          break;
      }
      if (l.relu) x = torch::relu(x);
      if (outputs != nullptr) outputs->push_back(x);
    }
    return x;
  }

  // Float weight (torch layout) and bias of layer i with batch norm folded in (float64).
  std::pair<torch::Tensor, torch::Tensor> Folded(size_t i) {
    const StudentLayer& l = arch_.layers[i];
    if (l.kind == LayerKind::kDense) {
      return {fcs_[i]->weight.detach().to(torch::kFloat64),
              fcs_[i]->bias.detach().to(torch::kFloat64)};
    }
    torch::Tensor w = convs_[i]->weight.detach().to(torch::kFloat64);
    const auto& bn = bns_[i];
    torch::Tensor gamma = bn->weight.detach().to(torch::kFloat64);
    torch::Tensor beta = bn->bias.detach().to(torch::kFloat64);
    torch::Tensor mean = bn->running_mean.detach().to(torch::kFloat64);
    torch::Tensor var = bn->running_var.detach().to(torch::kFloat64);
    torch::Tensor s = gamma / torch::sqrt(var + bn->options.eps());
    return {w * s.view({-1, 1, 1, 1}), beta - mean * s};
  }

 private:
  StudentArch arch_;
  std::vector<torch::nn::Conv2d> convs_;
  std::vector<torch::nn::BatchNorm2d> bns_;
  std::vector<torch::nn::Linear> fcs_;
};
TORCH_MODULE(StudentNet);

// Copies image `src` into `dst` shifted by (dy, dx) with zero fill, optionally mirrored.
void AugmentInto(const float* src, float* dst, int dy, int dx, bool flip) {
  for (int y = 0; y < 28; ++y) {
    for (int x = 0; x < 28; ++x) {
      const int sy = y - dy;
      int sx = x - dx;
      if (flip) sx = 27 - sx;
      dst[y * 28 + x] = (sy >= 0 && sy < 28 && sx >= 0 && sx < 28) ? src[sy * 28 + sx] : 0.0f;
    }
  }
}

class TorchStudentModel final : public StudentModel {
 public:
  TorchStudentModel(StudentArch arch, StudentNet net)
      : arch_(std::move(arch)), net_(std::move(net)) {}

  const StudentArch& arch() const override { return arch_; }

  absl::StatusOr<DistillTrainResult> Train(const data::ImageDataset& data,
                                           absl::Span<const float> teacher_logits,
                                           const DistillTrainOptions& o,
                                           const models::ProgressFn& progress) override {
    RETURN_IF_ERROR(CheckImages(data, "Train"));
    const int64_t n = NumImages(data);
    if (o.epochs < 1 || o.batch_size < 1 || !(o.lr > 0) || !(o.weight_decay >= 0) ||
        !(o.temperature > 0) || !(o.alpha >= 0 && o.alpha <= 1)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "Train: bad options: epochs=", o.epochs, " batch_size=", o.batch_size, " lr=", o.lr,
          " weight_decay=", o.weight_decay, " temperature=", o.temperature, " alpha=", o.alpha));
    }
    const bool use_teacher = o.alpha > 0;
    const bool use_labels = o.alpha < 1;
    if (use_teacher && static_cast<int64_t>(teacher_logits.size()) != n * kStudentNumClasses) {
      return absl::InvalidArgumentError(
          absl::StrCat("Train: ", teacher_logits.size(), " teacher logits for ", n, " images"));
    }
    if (use_labels && data.size() != n) {
      return absl::InvalidArgumentError(absl::StrCat("Train: alpha ", o.alpha,
                                                     " < 1 needs labels, but the data has ",
                                                     data.size(), " labels for ", n, " images"));
    }
    for (uint8_t y : data.labels) {
      if (use_labels && y >= kStudentNumClasses) {
        return absl::InvalidArgumentError(absl::StrCat("Train: label ", int{y}, " not in 0..9"));
      }
    }
    const auto start = std::chrono::steady_clock::now();
    DistillTrainResult result;
    result.samples = n;
    try {
      net_->train();
      torch::optim::Adam optimizer(net_->parameters(),
                                   torch::optim::AdamOptions(o.lr).weight_decay(o.weight_decay));
      const int64_t steps_per_epoch = (n + o.batch_size - 1) / o.batch_size;
      const int64_t total_steps = steps_per_epoch * o.epochs;
      std::mt19937_64 rng(o.seed);
      const float inv_t = static_cast<float>(1.0 / o.temperature);
      const double t2 = o.temperature * o.temperature;
      int64_t step = 0;
      int64_t done = 0;
      for (int epoch = 0; epoch < o.epochs; ++epoch) {
        const std::vector<int64_t> order = data::SeededPermutation(n, rng);
        double epoch_loss = 0;
        for (int64_t begin = 0; begin < n; begin += o.batch_size, ++step) {
          const int64_t b = std::min<int64_t>(o.batch_size, n - begin);
          const int64_t* rows = order.data() + begin;
          torch::Tensor x = FloatBatch(data, rows, b);
          if (o.augment) {
            torch::Tensor src = x.clone();
            const float* s = src.data_ptr<float>();
            float* d = x.data_ptr<float>();
            for (int64_t i = 0; i < b; ++i) {
              const int dy = static_cast<int>(data::UniformBelow(5, rng)) - 2;
              const int dx = static_cast<int>(data::UniformBelow(5, rng)) - 2;
              const bool flip = data::UniformBelow(2, rng) == 1;
              AugmentInto(s + i * 784, d + i * 784, dy, dx, flip);
            }
          }
          // Cosine learning rate, per step.
          const double lr =
              0.5 * o.lr * (1 + std::cos(M_PI * static_cast<double>(step) / total_steps));
          for (auto& group : optimizer.param_groups()) {
            static_cast<torch::optim::AdamOptions&>(group.options()).lr(lr);
          }
          optimizer.zero_grad();
          const torch::Tensor logits = net_->forward(x);
          torch::Tensor loss = torch::zeros({}, torch::kFloat32);
          if (use_teacher) {
            torch::Tensor t = torch::empty({b, kStudentNumClasses}, torch::kFloat32);
            float* td = t.data_ptr<float>();
            for (int64_t i = 0; i < b; ++i) {
              std::memcpy(td + i * kStudentNumClasses,
                          teacher_logits.data() + rows[i] * kStudentNumClasses,
                          kStudentNumClasses * sizeof(float));
            }
            const torch::Tensor soft = torch::softmax(t * inv_t, 1);
            const torch::Tensor kd = torch::nn::functional::kl_div(
                torch::log_softmax(logits * inv_t, 1), soft,
                torch::nn::functional::KLDivFuncOptions().reduction(torch::kBatchMean));
            loss = loss + kd * (o.alpha * t2);
          }
          if (use_labels) {
            torch::Tensor y = torch::empty({b}, torch::kInt64);
            int64_t* yd = y.data_ptr<int64_t>();
            for (int64_t i = 0; i < b; ++i) yd[i] = data.labels[rows[i]];
            loss = loss + torch::nn::functional::cross_entropy(logits, y) * (1 - o.alpha);
          }
          loss.backward();
          optimizer.step();
          epoch_loss += loss.item<double>() * static_cast<double>(b);
          done += b;
          // Mean loss of the epoch so far.
          if (progress) progress(done, n * o.epochs, epoch_loss / static_cast<double>(begin + b));
        }
        result.last_epoch_loss = epoch_loss / static_cast<double>(n);
      }
      for (auto& p : net_->parameters()) p.mutable_grad() = torch::Tensor();
    } catch (const std::exception& e) {
      return FromTorch("Train", e);
    }
    result.seconds = SecondsSince(start);
    return result;
  }

  absl::StatusOr<std::vector<float>> Logits(const data::ImageDataset& data) override {
    RETURN_IF_ERROR(CheckImages(data, "Logits"));
    const int64_t n = NumImages(data);
    std::vector<float> out(n * kStudentNumClasses);
    try {
      torch::NoGradGuard no_grad;
      net_->eval();
      for (int64_t begin = 0; begin < n; begin += kForwardBatch) {
        const int64_t b = std::min(kForwardBatch, n - begin);
        const torch::Tensor logits = net_->forward(ContiguousBatch(data, begin, b)).contiguous();
        std::memcpy(out.data() + begin * kStudentNumClasses, logits.data_ptr<float>(),
                    b * kStudentNumClasses * sizeof(float));
      }
      net_->train();
    } catch (const std::exception& e) {
      net_->train();
      return FromTorch("Logits", e);
    }
    return out;
  }

  absl::StatusOr<Int8Model> Quantize(const data::ImageDataset& calibration) override {
    RETURN_IF_ERROR(CheckImages(calibration, "Quantize"));
    ASSIGN_OR_RETURN(StudentFootprint fp, FootprintOf(arch_));
    const size_t num_layers = arch_.layers.size();
    Int8Model model;
    model.name = arch_.name;
    try {
      torch::NoGradGuard no_grad;
      net_->eval();
      // Activation ranges of every layer output over the calibration images.
      std::vector<double> lo(num_layers, std::numeric_limits<double>::infinity());
      std::vector<double> hi(num_layers, -std::numeric_limits<double>::infinity());
      const int64_t n = NumImages(calibration);
      for (int64_t begin = 0; begin < n; begin += kForwardBatch) {
        const int64_t b = std::min(kForwardBatch, n - begin);
        std::vector<torch::Tensor> outs;
        net_->Run(ContiguousBatch(calibration, begin, b), &outs);
        for (size_t i = 0; i < num_layers; ++i) {
          lo[i] = std::min(lo[i], outs[i].min().item<double>());
          hi[i] = std::max(hi[i], outs[i].max().item<double>());
        }
      }
      double in_scale = model.input_scale;
      int32_t in_zp = model.input_zero_point;
      TensorShape in_shape = model.input;
      for (size_t i = 0; i < num_layers; ++i) {
        const StudentLayer& sl = arch_.layers[i];
        Int8Layer l;
        l.kind = sl.kind;
        l.in = in_shape;
        l.out = fp.outputs[i];
        l.kernel = sl.kernel;
        l.pad = sl.pad;
        l.relu = sl.relu;
        l.input_scale = in_scale;
        l.input_zero_point = in_zp;
        if (sl.kind == LayerKind::kMaxPool) {
          l.output_scale = in_scale;
          l.output_zero_point = in_zp;
          l.act_min = -128;
          l.act_max = 127;
        } else {
          // Output range: [0, max] after ReLU (zero point -128), else [min, max] widened to 0.
          double out_scale;
          int32_t out_zp;
          if (sl.relu) {
            out_scale = std::max(hi[i], 1e-6) / 255.0;
            out_zp = -128;
          } else {
            const double a = std::min(lo[i], 0.0), z = std::max(hi[i], 0.0);
            out_scale = std::max(z - a, 1e-6) / 255.0;
            out_zp = static_cast<int32_t>(
                std::clamp<double>(std::round(-128.0 - a / out_scale), -128.0, 127.0));
          }
          l.output_scale = out_scale;
          l.output_zero_point = out_zp;
          l.act_min = sl.relu ? out_zp : -128;
          l.act_max = 127;
          auto [w, bias] = Folded(i);
          const int64_t oc = w.size(0);
          torch::Tensor w2 = w.reshape({oc, -1}).contiguous();
          const int64_t fan_in = w2.size(1);
          const double* wd = w2.data_ptr<double>();
          const double* bd = bias.contiguous().data_ptr<double>();
          l.weights.resize(oc * fan_in);
          for (int64_t c = 0; c < oc; ++c) {
            double wmax = 0;
            for (int64_t j = 0; j < fan_in; ++j)
              wmax = std::max(wmax, std::abs(wd[c * fan_in + j]));
            const double ws = wmax > 0 ? wmax / 127.0 : 1.0;
            int64_t abs_sum = 0;
            for (int64_t j = 0; j < fan_in; ++j) {
              const double q = std::clamp(std::round(wd[c * fan_in + j] / ws), -127.0, 127.0);
              l.weights[c * fan_in + j] = static_cast<int8_t>(q);
              abs_sum += std::abs(static_cast<int64_t>(q));
            }
            // Keep |bias| + 255 * sum|w| below 2^31 so the int32 accumulator cannot overflow.
            const double limit = static_cast<double>((int64_t{1} << 31) - 1 - 255 * abs_sum);
            const double qb = std::clamp(std::round(bd[c] / (in_scale * ws)), -limit, limit);
            l.bias.push_back(static_cast<int32_t>(qb));
            l.weight_scales.push_back(ws);
            int32_t m = 0, s = 0;
            RETURN_IF_ERROR(QuantizeMultiplier(in_scale * ws / out_scale, &m, &s));
            l.multiplier.push_back(m);
            l.shift.push_back(s);
          }
          in_scale = out_scale;
          in_zp = out_zp;
        }
        in_shape = l.out;
        model.layers.push_back(std::move(l));
      }
      model.output_scale = in_scale;
      model.output_zero_point = in_zp;
      net_->train();
    } catch (const std::exception& e) {
      net_->train();
      return FromTorch("Quantize", e);
    }
    RETURN_IF_ERROR(ValidateInt8Model(model));
    return model;
  }

 private:
  std::pair<torch::Tensor, torch::Tensor> Folded(size_t i) { return net_->Folded(i); }

  StudentArch arch_;
  StudentNet net_;
};

}  // namespace

std::vector<std::string> StudentNames() {
  std::vector<std::string> names;
  for (const StudentArch& a : Registry()) names.push_back(a.name);
  return names;
}

absl::StatusOr<StudentArch> StudentArchByName(const std::string& name) {
  for (const StudentArch& a : Registry()) {
    if (a.name == name) return a;
  }
  return absl::NotFoundError(absl::StrCat(
      "unknown student \"", name, "\"; known students: ", absl::StrJoin(StudentNames(), ", ")));
}

absl::StatusOr<StudentFootprint> FootprintOf(const StudentArch& arch, const TensorShape& input) {
  StudentFootprint fp;
  std::vector<int64_t> scratch;
  TensorShape cur = input;
  for (size_t i = 0; i < arch.layers.size(); ++i) {
    const StudentLayer& l = arch.layers[i];
    absl::StatusOr<TensorShape> out =
        LayerOutputShape(l.kind, cur, l.out_channels, l.kernel, l.pad);
    if (!out.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat(arch.name, " layer ", i, ": ", out.status().message()));
    }
    int64_t w = 0;
    switch (l.kind) {
      case LayerKind::kConv:
        w = int64_t{out->c} * cur.c * l.kernel * l.kernel;
        break;
      case LayerKind::kDepthwiseConv:
        w = int64_t{out->c} * l.kernel * l.kernel;
        break;
      case LayerKind::kDense:
        w = int64_t{out->c} * cur.bytes();
        break;
      case LayerKind::kMaxPool:
        break;
    }
    if (l.kind != LayerKind::kMaxPool) {
      fp.parameters += w + out->c;
      fp.int8_weight_bytes += w;
      fp.weight_bytes += w + int64_t{9} * out->c;
    }
    fp.outputs.push_back(*out);
    scratch.push_back(LayerScratchBytes(l.kind, cur, l.kernel));
    cur = *out;
  }
  if (arch.layers.empty() || arch.layers.back().kind != LayerKind::kDense ||
      cur.c != kStudentNumClasses) {
    return absl::InvalidArgumentError(absl::StrCat(arch.name, ": must end in a dense layer with ",
                                                   kStudentNumClasses, " outputs"));
  }
  fp.arena_bytes = PlanArena(fp.outputs, scratch).arena_bytes;
  return fp;
}

int64_t NumImages(const data::ImageDataset& data) {
  const int64_t per = static_cast<int64_t>(data.rows) * data.cols;
  return per > 0 ? static_cast<int64_t>(data.pixels.size()) / per : 0;
}

double LogitsAccuracy(absl::Span<const float> logits, absl::Span<const uint8_t> labels) {
  if (labels.empty()) return 0;
  int64_t correct = 0;
  for (size_t i = 0; i < labels.size(); ++i) {
    const float* row = logits.data() + i * kStudentNumClasses;
    correct += (std::max_element(row, row + kStudentNumClasses) - row) == labels[i];
  }
  return static_cast<double>(correct) / static_cast<double>(labels.size());
}

double Int8LogitsAccuracy(absl::Span<const int8_t> logits, absl::Span<const uint8_t> labels) {
  if (labels.empty()) return 0;
  int64_t correct = 0;
  for (size_t i = 0; i < labels.size(); ++i) {
    const int8_t* row = logits.data() + i * kStudentNumClasses;
    correct += (std::max_element(row, row + kStudentNumClasses) - row) == labels[i];
  }
  return static_cast<double>(correct) / static_cast<double>(labels.size());
}

absl::StatusOr<std::vector<float>> TeacherLogits(const proto::ModelSpec& spec,
                                                 absl::Span<const float> weights,
                                                 const data::ImageDataset& data, int threads) {
  RETURN_IF_ERROR(CheckImages(data, "TeacherLogits"));
  ASSIGN_OR_RETURN(proto::ModelSpec registered, models::SpecForModel(spec.model()));
  RETURN_IF_ERROR(models::CheckSpecMatches(registered, spec));
  if (static_cast<int64_t>(weights.size()) != models::NumParameters(registered)) {
    return absl::InvalidArgumentError(absl::StrCat("teacher ", spec.model(), " needs ",
                                                   models::NumParameters(registered), " weights, got ",
                                                   weights.size()));
  }
  ASSIGN_OR_RETURN(std::shared_ptr<models::ImageClassifierImpl> model, models::CreateModel(spec.model(), 0));
  const int64_t n = NumImages(data);
  std::vector<float> out(n * kStudentNumClasses);
  try {
    if (threads > 0) at::set_num_threads(threads);
    torch::NoGradGuard no_grad;
    const float* src = weights.data();
    for (auto& p : model->parameters()) {
      p.copy_(torch::from_blob(const_cast<float*>(src), p.sizes(), torch::kFloat32));
      src += p.numel();
    }
    model->eval();
    constexpr int64_t kTeacherBatch = 32;  // fedavg_cnn activations stay small
    for (int64_t begin = 0; begin < n; begin += kTeacherBatch) {
      const int64_t b = std::min(kTeacherBatch, n - begin);
      const torch::Tensor logits = model->forward(ContiguousBatch(data, begin, b)).contiguous();
      if (logits.size(1) != kStudentNumClasses) {
        return absl::InvalidArgumentError(
            absl::StrCat("teacher ", spec.model(), " has ", logits.size(1), " outputs, not 10"));
      }
      std::memcpy(out.data() + begin * kStudentNumClasses, logits.data_ptr<float>(),
                  b * kStudentNumClasses * sizeof(float));
    }
  } catch (const std::exception& e) {
    return FromTorch("TeacherLogits", e);
  }
  return out;
}

absl::StatusOr<std::unique_ptr<StudentModel>> StudentModel::Create(const std::string& student,
                                                                   uint64_t seed) {
  ASSIGN_OR_RETURN(StudentArch arch, StudentArchByName(student));
  RETURN_IF_ERROR(FootprintOf(arch).status());
  try {
    std::lock_guard<std::mutex> lock(RngMutex());
    GeneratorStateRestorer restorer;
    torch::manual_seed(seed);
    StudentNet net(arch);
    return std::unique_ptr<StudentModel>(new TorchStudentModel(std::move(arch), std::move(net)));
  } catch (const std::exception& e) {
    return FromTorch(absl::StrCat("building ", student), e);
  }
}

absl::StatusOr<std::vector<int8_t>> Int8ReferenceLogits(const Int8Model& model,
                                                        const data::ImageDataset& data) {
  RETURN_IF_ERROR(ValidateInt8Model(model));
  RETURN_IF_ERROR(CheckImages(data, "Int8ReferenceLogits"));
  if (model.input_zero_point != -128 || std::abs(model.input_scale * 255.0 - 1.0) > 1e-12 ||
      !(model.input == TensorShape{28, 28, 1})) {
    return absl::InvalidArgumentError(
        "Int8ReferenceLogits: the model's input must be 28x28x1 with scale 1/255, zero point -128");
  }
  const int64_t n = NumImages(data);
  const int classes = model.num_classes();
  std::vector<int8_t> out(n * classes);
  try {
    torch::NoGradGuard no_grad;
    // Per-layer constants as tensors.
    struct Consts {
      torch::Tensor w, bias, mult, round, den;
      torch::Dtype dtype = torch::kFloat64;
    };
    std::vector<Consts> consts;
    for (const Int8Layer& l : model.layers) {
      Consts c;
      if (l.kind != LayerKind::kMaxPool) {
        std::vector<int64_t> shape;
        switch (l.kind) {
          case LayerKind::kConv:
            shape = {l.out.c, l.in.c, l.kernel, l.kernel};
            break;
          case LayerKind::kDepthwiseConv:
            shape = {l.out.c, 1, l.kernel, l.kernel};
            break;
          default:
            shape = {l.out.c, l.in.bytes()};
        }
        // Largest possible |partial sum|: 255 * sum|w| of the heaviest output channel.
        const int64_t fan_in = static_cast<int64_t>(l.weights.size()) / l.out.c;
        int64_t bound = 0;
        for (int64_t ch = 0; ch < l.out.c; ++ch) {
          int64_t sum = 0;
          for (int64_t j = 0; j < fan_in; ++j) sum += std::abs(int{l.weights[ch * fan_in + j]});
          bound = std::max(bound, 255 * sum);
        }
        c.dtype = bound < (int64_t{1} << 24) ? torch::kFloat32 : torch::kFloat64;
        std::vector<double> w(l.weights.begin(), l.weights.end());
        c.w = torch::tensor(w, torch::kFloat64).reshape(shape).to(c.dtype);
        std::vector<int64_t> bias(l.bias.begin(), l.bias.end()), mult, round, den;
        for (size_t ch = 0; ch < l.multiplier.size(); ++ch) {
          const int rs = 31 - l.shift[ch];
          mult.push_back(l.multiplier[ch]);
          round.push_back(int64_t{1} << (rs - 1));
          den.push_back(int64_t{1} << rs);
        }
        const bool dense = l.kind == LayerKind::kDense;
        const std::vector<int64_t> view =
            dense ? std::vector<int64_t>{1, l.out.c} : std::vector<int64_t>{1, l.out.c, 1, 1};
        c.bias = torch::tensor(bias, torch::kInt64).view(view);
        c.mult = torch::tensor(mult, torch::kInt64).view(view);
        c.round = torch::tensor(round, torch::kInt64).view(view);
        c.den = torch::tensor(den, torch::kInt64).view(view);
      }
      consts.push_back(std::move(c));
    }
    for (int64_t begin = 0; begin < n; begin += kForwardBatch) {
      const int64_t b = std::min(kForwardBatch, n - begin);
      torch::Tensor px = torch::from_blob(const_cast<uint8_t*>(data.pixels.data()) + begin * 784,
                                          {b, 1, 28, 28}, torch::kUInt8);
      torch::Tensor x = px.to(torch::kInt64) - 128;  // q = pixel - 128
      for (size_t i = 0; i < model.layers.size(); ++i) {
        const Int8Layer& l = model.layers[i];
        const Consts& c = consts[i];
        if (l.kind == LayerKind::kMaxPool) {
          x = torch::max_pool2d(x.to(torch::kFloat32), 2).to(torch::kInt64);  // exact: int8 values
          continue;
        }
        // Integer sums of products computed in floating point through im2col (unfold) and
        // matrix products: exact because every partial sum is an integer no larger than
        // 255 * sum|w| (checked per layer to fit the type's mantissa), whatever the order of
        // summation. (conv2d itself is avoided: NNPACK / Winograd paths are not exact.)
        const torch::Tensor xs = (x - l.input_zero_point).to(c.dtype);
        torch::Tensor acc;
        if (l.kind == LayerKind::kDense) {
          acc = torch::matmul(xs.flatten(1), c.w.t());  // (c, h, w) order, as the weights
        } else {
          const int64_t k = l.kernel;
          const torch::Tensor cols = torch::nn::functional::unfold(
              xs, torch::nn::functional::UnfoldFuncOptions({k, k}).padding(l.pad));
          // cols: [b, in.c * k * k, out.h * out.w], rows in (c, ky, kx) order.
          if (l.kind == LayerKind::kConv) {
            acc = torch::matmul(c.w.reshape({l.out.c, -1}), cols);
          } else {
            acc = (cols.view({b, l.in.c, k * k, -1}) * c.w.reshape({1, l.in.c, k * k, 1})).sum(2);
          }
          acc = acc.view({b, l.out.c, l.out.h, l.out.w});
        }
        // Exact integers already; round() only guards the conversion.
        torch::Tensor acc_i = acc.round().to(torch::kInt64) + c.bias;
        torch::Tensor v = torch::div(acc_i * c.mult + c.round, c.den, "floor");
        x = torch::clamp(v + l.output_zero_point, l.act_min, l.act_max);
      }
      const torch::Tensor logits = x.reshape({b, classes}).to(torch::kInt8).contiguous();
      std::memcpy(out.data() + begin * classes, logits.data_ptr<int8_t>(), b * classes);
    }
  } catch (const std::exception& e) {
    return FromTorch("Int8ReferenceLogits", e);
  }
  return out;
}

}  // namespace edgefl::students
