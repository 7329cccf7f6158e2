#include "aggregation/server_optimizer.h"

#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "aggregation/state_format.h"
#include "common/status_macros.h"

namespace edgefl::aggregation {
namespace {

constexpr char kField[] = "aggregation.server_optimizer.";

absl::Status CheckDim(size_t dim) {
  if (dim == 0) {
    return absl::InvalidArgumentError(absl::StrCat(kField, "dim must be > 0, got 0"));
  }
  return absl::OkStatus();
}

absl::Status CheckPositive(absl::string_view field, double value) {
  if (!std::isfinite(value) || !(value > 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat(kField, field, " must be finite and > 0, got ", value));
  }
  return absl::OkStatus();
}

absl::Status CheckUnitInterval(absl::string_view field, double value) {
  if (!(value >= 0 && value < 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat(kField, field, " must be in [0, 1), got ", value));
  }
  return absl::OkStatus();
}

absl::Status CheckSizes(size_t dim, absl::Span<const double> delta, absl::Span<float> global) {
  if (delta.size() != dim || global.size() != dim) {
    return absl::InvalidArgumentError(absl::StrCat("server optimizer: delta has ", delta.size(),
                                                   " values and the model ", global.size(),
                                                   ", expected ", dim));
  }
  for (size_t i = 0; i < dim; ++i) {
    if (!std::isfinite(delta[i])) {
      return absl::InvalidArgumentError(
          absl::StrCat("server optimizer: delta holds a non-finite value (", delta[i],
                       ") at index ", i, "; model left unchanged"));
    }
  }
  return absl::OkStatus();
}

absl::Status Overflow(size_t i) {
  return absl::InvalidArgumentError(absl::StrCat("server optimizer: the step overflows at index ",
                                                 i, "; model and state left unchanged"));
}

// Every optimizer's saved state starts with its dim, learning rate and step count.
struct StateHeader {
  double learning_rate;
  int64_t steps;
};

void PutStateHeader(StateWriter& writer, size_t dim, double learning_rate, int64_t steps) {
  writer.PutU64(dim);
  writer.PutF64(learning_rate);
  writer.PutU64(static_cast<uint64_t>(steps));
}

absl::StatusOr<StateHeader> GetStateHeader(StateReader& reader, const std::string& kind,
                                           size_t want_dim) {
  ASSIGN_OR_RETURN(const uint64_t dim, reader.GetU64("dim"));
  if (dim != want_dim) {
    return absl::InvalidArgumentError(absl::StrCat("state for ", kind, ": saved for dim ", dim,
                                                   ", this optimizer has dim ", want_dim));
  }
  ASSIGN_OR_RETURN(const double lr, reader.GetF64("learning_rate"));
  RETURN_IF_ERROR(CheckPositive("learning_rate", lr));
  ASSIGN_OR_RETURN(const uint64_t steps, reader.GetU64("steps"));
  return StateHeader{lr, static_cast<int64_t>(steps)};
}

class Sgd : public ServerOptimizer {
 public:
  explicit Sgd(const SgdOptions& options)
      : ServerOptimizer(options.learning_rate),
        dim_(options.dim),
        momentum_(options.momentum),
        velocity_(options.momentum > 0 ? options.dim : 0, 0.0) {}

  std::string name() const override { return "sgd"; }
  size_t dim() const override { return dim_; }

  absl::Status Apply(absl::Span<const double> delta, absl::Span<float> global) override {
    RETURN_IF_ERROR(CheckSizes(dim_, delta, global));
    const double lr = learning_rate_;
    if (velocity_.empty()) {
      // No momentum buffer: x += lr * d, rounded once (lr == 1 is exactly FedAvg's update).
      for (size_t i = 0; i < dim_; ++i) {
        if (!std::isfinite(static_cast<float>(global[i] + lr * delta[i]))) return Overflow(i);
      }
      for (size_t i = 0; i < dim_; ++i) global[i] = static_cast<float>(global[i] + lr * delta[i]);
    } else {
      for (size_t i = 0; i < dim_; ++i) {
        const double u = momentum_ * velocity_[i] + delta[i];
        if (!std::isfinite(u) || !std::isfinite(static_cast<float>(global[i] + lr * u))) {
          return Overflow(i);
        }
      }
      for (size_t i = 0; i < dim_; ++i) {
        velocity_[i] = momentum_ * velocity_[i] + delta[i];
        global[i] = static_cast<float>(global[i] + lr * velocity_[i]);
      }
    }
    ++steps_;
    return absl::OkStatus();
  }

  std::string SaveState() const override {
    StateWriter writer(Kind());
    PutStateHeader(writer, dim_, learning_rate_, steps_);
    writer.PutF64Array(velocity_);
    return writer.Finish();
  }

  absl::Status LoadState(absl::string_view state) override {
    ASSIGN_OR_RETURN(StateReader reader, StateReader::Open(state, Kind()));
    ASSIGN_OR_RETURN(const StateHeader header, GetStateHeader(reader, Kind(), dim_));
    std::vector<double> velocity;
    RETURN_IF_ERROR(reader.GetF64Array("velocity", velocity_.size(), &velocity));
    RETURN_IF_ERROR(reader.Finish());
    learning_rate_ = header.learning_rate;
    steps_ = header.steps;
    velocity_ = std::move(velocity);
    return absl::OkStatus();
  }

 private:
  // The momentum buffer exists only for momentum > 0; its presence is part of the kind.
  std::string Kind() const {
    return velocity_.empty() ? "server_optimizer.sgd" : "server_optimizer.sgd_momentum";
  }

  size_t dim_;
  double momentum_;
  std::vector<double> velocity_;
};

class FedDyn : public ServerOptimizer {
 public:
  explicit FedDyn(const FedDynOptions& options)
      : ServerOptimizer(1.0),
        dim_(options.dim),
        alpha_(options.alpha),
        h_(options.dim, 0.0) {}

  std::string name() const override { return "feddyn"; }
  size_t dim() const override { return dim_; }

  absl::Status Apply(absl::Span<const double> delta, absl::Span<float> global) override {
    RETURN_IF_ERROR(CheckSizes(dim_, delta, global));
    for (size_t i = 0; i < dim_; ++i) {
      const double h = h_[i] - alpha_ * delta[i];
      if (!std::isfinite(h) ||
          !std::isfinite(static_cast<float>(global[i] + (delta[i] - h / alpha_)))) {
        return Overflow(i);
      }
    }
    for (size_t i = 0; i < dim_; ++i) {
      h_[i] -= alpha_ * delta[i];
      global[i] = static_cast<float>(global[i] + (delta[i] - h_[i] / alpha_));
    }
    ++steps_;
    return absl::OkStatus();
  }

  absl::Status SetLearningRate(double learning_rate) override {
    if (learning_rate != 1.0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "aggregation.server_optimizer.learning_rate must be 1 with feddyn, got ", learning_rate));
    }
    return absl::OkStatus();
  }

  std::string SaveState() const override {
    StateWriter writer(kKind);
    PutStateHeader(writer, dim_, learning_rate_, steps_);  // 1: the format every optimizer shares
    writer.PutF64Array(h_);
    return writer.Finish();
  }

  absl::Status LoadState(absl::string_view state) override {
    ASSIGN_OR_RETURN(StateReader reader, StateReader::Open(state, kKind));
    ASSIGN_OR_RETURN(const StateHeader header, GetStateHeader(reader, kKind, dim_));
    std::vector<double> h;
    RETURN_IF_ERROR(reader.GetF64Array("h", dim_, &h));
    RETURN_IF_ERROR(reader.Finish());
    for (size_t i = 0; i < dim_; ++i) {
      if (!std::isfinite(h[i])) {
        return absl::InvalidArgumentError(
            absl::StrCat("state for ", kKind, ": non-finite h at index ", i));
      }
    }
    if (header.learning_rate != 1.0) {
      return absl::InvalidArgumentError(absl::StrCat("state for ", kKind, ": learning rate ",
                                                     header.learning_rate, ", FedDyn's is 1"));
    }
    steps_ = header.steps;
    h_ = std::move(h);
    return absl::OkStatus();
  }

 private:
  static constexpr char kKind[] = "server_optimizer.feddyn";
  size_t dim_;
  double alpha_;
  std::vector<double> h_;
};

enum class Rule { kAdam, kYogi, kAdagrad };

class Adaptive : public ServerOptimizer {
 public:
  Adaptive(Rule rule, size_t dim, double learning_rate, double beta1, double beta2, double tau)
      : ServerOptimizer(learning_rate),
        rule_(rule),
        dim_(dim),
        beta1_(beta1),
        beta2_(beta2),
        tau_(tau),
        m_(dim, 0.0),
        v_(dim, tau * tau) {}

  std::string name() const override {
    switch (rule_) {
      case Rule::kAdam:
        return "adam";
      case Rule::kYogi:
        return "yogi";
      case Rule::kAdagrad:
        return "adagrad";
    }
    return "unknown";
  }
  size_t dim() const override { return dim_; }

  absl::Status Apply(absl::Span<const double> delta, absl::Span<float> global) override {
    RETURN_IF_ERROR(CheckSizes(dim_, delta, global));
    // Pass 1 computes every new value without writing, so an overflow leaves all untouched.
    for (size_t i = 0; i < dim_; ++i) {
      double m, v;
      float x;
      Step(i, delta[i], global[i], &m, &v, &x);
      if (!std::isfinite(m) || !std::isfinite(v) || !std::isfinite(x)) return Overflow(i);
    }
    for (size_t i = 0; i < dim_; ++i) Step(i, delta[i], global[i], &m_[i], &v_[i], &global[i]);
    ++steps_;
    return absl::OkStatus();
  }

  std::string SaveState() const override {
    StateWriter writer(Kind());
    PutStateHeader(writer, dim_, learning_rate_, steps_);
    writer.PutF64Array(m_);
    writer.PutF64Array(v_);
    return writer.Finish();
  }

  absl::Status LoadState(absl::string_view state) override {
    ASSIGN_OR_RETURN(StateReader reader, StateReader::Open(state, Kind()));
    ASSIGN_OR_RETURN(const StateHeader header, GetStateHeader(reader, Kind(), dim_));
    std::vector<double> m, v;
    RETURN_IF_ERROR(reader.GetF64Array("m", dim_, &m));
    RETURN_IF_ERROR(reader.GetF64Array("v", dim_, &v));
    RETURN_IF_ERROR(reader.Finish());
    for (size_t i = 0; i < dim_; ++i) {
      if (!std::isfinite(m[i]) || !(v[i] >= 0) || !std::isfinite(v[i])) {
        return absl::InvalidArgumentError(
            absl::StrCat("state for ", Kind(), ": invalid moment at index ", i));
      }
    }
    learning_rate_ = header.learning_rate;
    steps_ = header.steps;
    m_ = std::move(m);
    v_ = std::move(v);
    return absl::OkStatus();
  }

 private:
  std::string Kind() const { return absl::StrCat("server_optimizer.", name()); }

  void Step(size_t i, double d, float x, double* m_out, double* v_out, float* x_out) const {
    const double m = beta1_ * m_[i] + (1 - beta1_) * d;
    const double d2 = d * d;
    double v = v_[i];
    switch (rule_) {
      case Rule::kAdam:
        v = beta2_ * v + (1 - beta2_) * d2;
        break;
      case Rule::kYogi: {
        const double diff = v - d2;
        const double sign = diff > 0 ? 1.0 : (diff < 0 ? -1.0 : 0.0);
        v = v - (1 - beta2_) * d2 * sign;
        break;
      }
      case Rule::kAdagrad:
        v = v + d2;
        break;
    }
    *m_out = m;
    *v_out = v;
    *x_out = static_cast<float>(x + learning_rate_ * m / (std::sqrt(v) + tau_));
  }

  Rule rule_;
  size_t dim_;
  double beta1_, beta2_, tau_;
  std::vector<double> m_, v_;
};

absl::Status CheckAdaptive(size_t dim, double lr, double beta1, double beta2, double tau) {
  RETURN_IF_ERROR(CheckDim(dim));
  RETURN_IF_ERROR(CheckPositive("learning_rate", lr));
  RETURN_IF_ERROR(CheckUnitInterval("beta1", beta1));
  RETURN_IF_ERROR(CheckUnitInterval("beta2", beta2));
  RETURN_IF_ERROR(CheckPositive("tau", tau));
  return absl::OkStatus();
}

}  // namespace

absl::Status ServerOptimizer::SetLearningRate(double learning_rate) {
  RETURN_IF_ERROR(CheckPositive("learning_rate", learning_rate));
  learning_rate_ = learning_rate;
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<ServerOptimizer>> CreateServerSgd(const SgdOptions& options) {
  RETURN_IF_ERROR(CheckDim(options.dim));
  RETURN_IF_ERROR(CheckPositive("learning_rate", options.learning_rate));
  RETURN_IF_ERROR(CheckUnitInterval("momentum", options.momentum));
  return std::unique_ptr<ServerOptimizer>(std::make_unique<Sgd>(options));
}

absl::StatusOr<std::unique_ptr<ServerOptimizer>> CreateServerFedDyn(const FedDynOptions& options) {
  RETURN_IF_ERROR(CheckDim(options.dim));
  RETURN_IF_ERROR(CheckPositive("alpha", options.alpha));
  return std::unique_ptr<ServerOptimizer>(std::make_unique<FedDyn>(options));
}

absl::StatusOr<std::unique_ptr<ServerOptimizer>> CreateServerAdam(const AdamOptions& o) {
  RETURN_IF_ERROR(CheckAdaptive(o.dim, o.learning_rate, o.beta1, o.beta2, o.tau));
  return std::unique_ptr<ServerOptimizer>(
      std::make_unique<Adaptive>(Rule::kAdam, o.dim, o.learning_rate, o.beta1, o.beta2, o.tau));
}

absl::StatusOr<std::unique_ptr<ServerOptimizer>> CreateServerYogi(const YogiOptions& o) {
  RETURN_IF_ERROR(CheckAdaptive(o.dim, o.learning_rate, o.beta1, o.beta2, o.tau));
  return std::unique_ptr<ServerOptimizer>(
      std::make_unique<Adaptive>(Rule::kYogi, o.dim, o.learning_rate, o.beta1, o.beta2, o.tau));
}

absl::StatusOr<std::unique_ptr<ServerOptimizer>> CreateServerAdagrad(const AdagradOptions& o) {
  // Adagrad has no beta2; validate a placeholder 0 so the shared checks apply.
  RETURN_IF_ERROR(CheckAdaptive(o.dim, o.learning_rate, o.beta1, 0.0, o.tau));
  return std::unique_ptr<ServerOptimizer>(
      std::make_unique<Adaptive>(Rule::kAdagrad, o.dim, o.learning_rate, o.beta1, 0.0, o.tau));
}

}  // namespace edgefl::aggregation
