#include "aggregation/dp.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <sstream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "aggregation/state_format.h"
#include "common/status_macros.h"

namespace edgefl::aggregation {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kPi = 3.14159265358979323846;
// std::mt19937_64's text form is 312 numbers of at most 20 digits plus an index.
constexpr size_t kMaxEngineText = 8192;

absl::Status Invalid(absl::string_view field, absl::string_view requirement, double value) {
  return absl::InvalidArgumentError(
      absl::StrCat("aggregation.dp.", field, " must be ", requirement, ", got ", value));
}

// log(exp(a) + exp(b)).
double LogAdd(double a, double b) {
  if (a == -kInf) return b;
  if (b == -kInf) return a;
  const double hi = std::max(a, b), lo = std::min(a, b);
  return hi + std::log1p(std::exp(lo - hi));
}

// log(exp(a) - exp(b)) for a >= b.
absl::StatusOr<double> LogSub(double a, double b) {
  if (b == -kInf) return a;
  if (a < b) return absl::InternalError("RDP series: log-space subtraction went negative");
  if (a == b) return -kInf;
  return std::log(std::expm1(a - b)) + b;
}

// log(erfc(x)), accurate where erfc underflows (TF-Privacy's _log_erfc fallback: the asymptotic
// series of log(erfc(x)) + log(x) + log(pi)/2 + x^2 at infinity).
double LogErfc(double x) {
  if (x < 25) return std::log(std::erfc(x));
  const double x2 = x * x;
  return -0.5 * std::log(kPi) - std::log(x) - x2 - 0.5 / x2 + 0.625 / (x2 * x2) -
         37.0 / 24.0 / (x2 * x2 * x2) + 353.0 / 64.0 / (x2 * x2 * x2 * x2);
}

// n * log_x with 0 * (-inf) = 0 (a factor x^0 = 1 even when x = 0).
double MulLog(double n, double log_x) { return n == 0 ? 0.0 : n * log_x; }

// log(exp(x) - 1) for x > 0, without overflow.
double LogExpm1(double x) {
  return x > 30 ? x + std::log1p(-std::exp(-x)) : std::log(std::expm1(x));
}

// log A for integer alpha. Since sum_k C(alpha,k) (1-q)^(alpha-k) q^k = 1,
//   A - 1 = sum_{k>=2} C(alpha,k) (1-q)^(alpha-k) q^k (exp((k^2-k)/(2 sigma^2)) - 1),
// a sum of non-negative terms (k = 0, 1 contribute 0); log A = log1p(A - 1) then keeps full
// relative precision even when A is within 1e-15 of 1 (tiny q, large sigma).
double LogAInteger(double q, double sigma, int alpha) {
  const double log_q = std::log(q), log_1mq = std::log1p(-q);
  double log_a_minus_1 = -kInf;
  double log_binom = 0;  // log C(alpha, k), built up k by k
  for (int k = 1; k <= alpha; ++k) {
    log_binom += std::log(static_cast<double>(alpha - k + 1)) - std::log(k);
    if (k < 2) continue;
    const double kk = k;
    const double term = log_binom + MulLog(alpha - k, log_1mq) + MulLog(k, log_q) +
                        LogExpm1((kk * kk - kk) / (2 * sigma * sigma));
    log_a_minus_1 = LogAdd(log_a_minus_1, term);
  }
  return LogAdd(0.0, log_a_minus_1);
}

absl::StatusOr<double> LogAFractional(double q, double sigma, double alpha) {
  const double log_q = std::log(q), log_1mq = std::log1p(-q);
  const double s2 = sigma * sigma;
  const double z0 = s2 * std::log(1 / q - 1) + 0.5;
  double log_a0 = -kInf, log_a1 = -kInf;
  double log_coef = 0;  // log |C(alpha, i)|
  bool coef_positive = true;
  constexpr int kMaxTerms = 1000000;
  for (int i = 0; i < kMaxTerms; ++i) {
    if (i > 0) {
      const double factor = (alpha - i + 1) / i;
      log_coef += std::log(std::abs(factor));
      if (factor < 0) coef_positive = !coef_positive;
    }
    const double j = alpha - i;
    const double log_t0 = log_coef + i * log_q + j * log_1mq;
    const double log_t1 = log_coef + j * log_q + i * log_1mq;
    const double log_e0 = std::log(0.5) + LogErfc((i - z0) / (std::sqrt(2.0) * sigma));
    const double log_e1 = std::log(0.5) + LogErfc((z0 - j) / (std::sqrt(2.0) * sigma));
    const double log_s0 = log_t0 + (static_cast<double>(i) * i - i) / (2 * s2) + log_e0;
    const double log_s1 = log_t1 + (j * j - j) / (2 * s2) + log_e1;
    if (coef_positive) {
      log_a0 = LogAdd(log_a0, log_s0);
      log_a1 = LogAdd(log_a1, log_s1);
    } else {
      ASSIGN_OR_RETURN(log_a0, LogSub(log_a0, log_s0));
      ASSIGN_OR_RETURN(log_a1, LogSub(log_a1, log_s1));
    }
    if (std::max(log_s0, log_s1) < -30) return LogAdd(log_a0, log_a1);
  }
  return absl::InternalError(
      absl::StrCat("RDP series for alpha ", alpha, " did not converge in ", kMaxTerms, " terms"));
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// GaussianSampler

double GaussianSampler::Next() {
  if (has_spare_) {
    has_spare_ = false;
    return spare_;
  }
  const double u1 = (static_cast<double>(engine_() >> 11) + 1.0) * 0x1.0p-53;  // (0, 1]
  const double u2 = static_cast<double>(engine_() >> 11) * 0x1.0p-53;          // [0, 1)
  const double r = std::sqrt(-2.0 * std::log(u1));
  spare_ = r * std::sin(2 * kPi * u2);
  has_spare_ = true;
  return r * std::cos(2 * kPi * u2);
}

std::string GaussianSampler::SaveState() const {
  std::ostringstream engine;
  engine << engine_;
  StateWriter writer("gaussian_sampler");
  writer.PutString(engine.str());
  writer.PutU64(has_spare_ ? 1 : 0);
  writer.PutF64(spare_);
  return writer.Finish();
}

absl::Status GaussianSampler::LoadState(absl::string_view state) {
  ASSIGN_OR_RETURN(StateReader reader, StateReader::Open(state, "gaussian_sampler"));
  ASSIGN_OR_RETURN(const std::string text, reader.GetString("engine", kMaxEngineText));
  ASSIGN_OR_RETURN(const uint64_t has_spare, reader.GetU64("has_spare"));
  ASSIGN_OR_RETURN(const double spare, reader.GetF64("spare"));
  RETURN_IF_ERROR(reader.Finish());
  std::istringstream in(text);
  std::mt19937_64 engine;
  in >> engine;
  if (in.fail() || has_spare > 1 || !std::isfinite(spare)) {
    return absl::InvalidArgumentError("state for gaussian_sampler: malformed engine state");
  }
  engine_ = engine;
  has_spare_ = has_spare == 1;
  spare_ = spare;
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------------
// GaussianNoiseStage

absl::StatusOr<std::unique_ptr<GaussianNoiseStage>> GaussianNoiseStage::Create(
    const Options& options) {
  if (!std::isfinite(options.noise_multiplier) || !(options.noise_multiplier >= 0)) {
    return Invalid("noise_multiplier", "finite and >= 0", options.noise_multiplier);
  }
  return std::unique_ptr<GaussianNoiseStage>(
      new GaussianNoiseStage(options.noise_multiplier, options.seed));
}

absl::Status GaussianNoiseStage::AddNoise(absl::Span<double> mean, int64_t num_updates,
                                          double clip_norm) {
  return AddNoise(mean, num_updates, clip_norm, noise_multiplier_);
}

absl::Status GaussianNoiseStage::AddNoise(absl::Span<double> mean, int64_t num_updates,
                                          double clip_norm, double noise_multiplier) {
  if (!std::isfinite(noise_multiplier) || !(noise_multiplier >= 0)) {
    return Invalid("noise_multiplier", "finite and >= 0", noise_multiplier);
  }
  if (num_updates < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("DP noise: num_updates must be >= 1, got ", num_updates));
  }
  if (!std::isfinite(clip_norm) || !(clip_norm > 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("DP noise: clip_norm must be finite and > 0, got ", clip_norm));
  }
  const double stddev = noise_multiplier * clip_norm / static_cast<double>(num_updates);
  if (stddev == 0) return absl::OkStatus();
  for (double& x : mean) x += stddev * sampler_.Next();
  return absl::OkStatus();
}

std::string GaussianNoiseStage::SaveState() const {
  StateWriter writer("dp.gaussian_noise");
  writer.PutString(sampler_.SaveState());
  return writer.Finish();
}

absl::Status GaussianNoiseStage::LoadState(absl::string_view state) {
  ASSIGN_OR_RETURN(StateReader reader, StateReader::Open(state, "dp.gaussian_noise"));
  ASSIGN_OR_RETURN(const std::string sampler, reader.GetString("sampler", 2 * kMaxEngineText));
  RETURN_IF_ERROR(reader.Finish());
  return sampler_.LoadState(sampler);
}

// ---------------------------------------------------------------------------------------------
// AdaptiveClipping

absl::StatusOr<std::unique_ptr<AdaptiveClipping>> AdaptiveClipping::Create(const Options& options) {
  if (!std::isfinite(options.initial_clip_norm) || !(options.initial_clip_norm > 0)) {
    return Invalid("adaptive_clipping.initial_clip_norm", "finite and > 0",
                   options.initial_clip_norm);
  }
  if (!(options.target_quantile >= 0 && options.target_quantile <= 1)) {
    return Invalid("adaptive_clipping.target_quantile", "in [0, 1]", options.target_quantile);
  }
  if (!std::isfinite(options.learning_rate) || !(options.learning_rate > 0)) {
    return Invalid("adaptive_clipping.learning_rate", "finite and > 0", options.learning_rate);
  }
  if (!std::isfinite(options.count_noise_stddev) || !(options.count_noise_stddev >= 0)) {
    return Invalid("adaptive_clipping.count_noise_stddev", "finite and >= 0",
                   options.count_noise_stddev);
  }
  return std::unique_ptr<AdaptiveClipping>(new AdaptiveClipping(options));
}

absl::StatusOr<double> AdaptiveClipping::Update(int64_t num_within, int64_t num_updates) {
  if (num_updates < 1 || num_within < 0 || num_within > num_updates) {
    return absl::InvalidArgumentError(absl::StrCat("adaptive clipping: need 0 <= num_within (",
                                                   num_within, ") <= num_updates (", num_updates,
                                                   ") and num_updates >= 1"));
  }
  double count = static_cast<double>(num_within);
  if (options_.count_noise_stddev > 0) count += options_.count_noise_stddev * sampler_.Next();
  const double b_noisy = count / static_cast<double>(num_updates);
  const double next =
      clip_norm_ * std::exp(-options_.learning_rate * (b_noisy - options_.target_quantile));
  if (!std::isfinite(next) || !(next > 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("adaptive clipping: clip norm would become ", next, "; kept ", clip_norm_));
  }
  clip_norm_ = next;
  return clip_norm_;
}

std::string AdaptiveClipping::SaveState() const {
  StateWriter writer("dp.adaptive_clipping");
  writer.PutF64(clip_norm_);
  writer.PutString(sampler_.SaveState());
  return writer.Finish();
}

absl::Status AdaptiveClipping::LoadState(absl::string_view state) {
  ASSIGN_OR_RETURN(StateReader reader, StateReader::Open(state, "dp.adaptive_clipping"));
  ASSIGN_OR_RETURN(const double clip_norm, reader.GetF64("clip_norm"));
  ASSIGN_OR_RETURN(const std::string sampler, reader.GetString("sampler", 2 * kMaxEngineText));
  RETURN_IF_ERROR(reader.Finish());
  if (!std::isfinite(clip_norm) || !(clip_norm > 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("state for dp.adaptive_clipping: invalid clip norm ", clip_norm));
  }
  GaussianSampler restored(0);
  RETURN_IF_ERROR(restored.LoadState(sampler));
  clip_norm_ = clip_norm;
  sampler_ = restored;
  return absl::OkStatus();
}

absl::StatusOr<double> UpdateNoiseMultiplierWithAdaptiveClipping(double z, double sigma_b) {
  if (!std::isfinite(z) || !(z > 0)) return Invalid("noise_multiplier", "finite and > 0", z);
  if (!std::isfinite(sigma_b) || !(sigma_b > 1 / (2 * z))) {
    return Invalid("adaptive_clipping.count_noise_stddev",
                   absl::StrCat("> 1 / (2 z) = ", 1 / (2 * z)), sigma_b);
  }
  return std::pow(std::pow(z, -2) - std::pow(2 * sigma_b, -2), -0.5);
}

// ---------------------------------------------------------------------------------------------
// RDP of the sampled Gaussian mechanism

absl::StatusOr<double> SampledGaussianRdp(double q, double sigma, double alpha) {
  if (!(q >= 0 && q <= 1)) return Invalid("sampling_rate", "in [0, 1]", q);
  if (!std::isfinite(sigma) || !(sigma > 0)) {
    return Invalid("noise_multiplier", "finite and > 0", sigma);
  }
  if (!std::isfinite(alpha) || !(alpha > 1)) return Invalid("rdp_order", "finite and > 1", alpha);
  if (q == 0) return 0.0;
  double log_a;
  if (alpha == std::floor(alpha) && alpha <= (1 << 20)) {
    log_a = LogAInteger(q, sigma, static_cast<int>(alpha));
  } else if (q == 1) {
    return alpha / (2 * sigma * sigma);  // plain Gaussian mechanism
  } else {
    ASSIGN_OR_RETURN(log_a, LogAFractional(q, sigma, alpha));
  }
  return log_a / (alpha - 1);
}

// ---------------------------------------------------------------------------------------------
// RdpAccountant

std::vector<double> RdpAccountant::DefaultOrders() {
  std::vector<double> orders;
  for (int x = 1; x < 100; ++x) orders.push_back(1 + x / 10.0);
  for (int a = 12; a < 64; ++a) orders.push_back(a);
  for (double a : {128.0, 256.0, 512.0}) orders.push_back(a);
  return orders;
}

absl::StatusOr<std::unique_ptr<RdpAccountant>> RdpAccountant::Create(const Options& options) {
  if (options.orders.empty()) {
    return absl::InvalidArgumentError("aggregation.dp.rdp_orders must not be empty");
  }
  std::vector<double> sorted = options.orders;
  std::sort(sorted.begin(), sorted.end());
  for (size_t i = 0; i < sorted.size(); ++i) {
    if (!std::isfinite(sorted[i]) || !(sorted[i] > 1)) {
      return Invalid("rdp_orders", "finite and > 1", sorted[i]);
    }
    if (i > 0 && sorted[i] == sorted[i - 1]) {
      return Invalid("rdp_orders", "distinct; repeated", sorted[i]);
    }
  }
  return std::unique_ptr<RdpAccountant>(new RdpAccountant(options.orders));
}

absl::Status RdpAccountant::Compose(double q, double sigma, int64_t steps) {
  if (steps < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("RDP accountant: steps must be >= 0, got ", steps));
  }
  std::vector<double> add(orders_.size());
  for (size_t j = 0; j < orders_.size(); ++j) {
    ASSIGN_OR_RETURN(const double rdp, SampledGaussianRdp(q, sigma, orders_[j]));
    add[j] = rdp * static_cast<double>(steps);
  }
  for (size_t j = 0; j < orders_.size(); ++j) rdp_[j] += add[j];
  steps_ += steps;
  return absl::OkStatus();
}

absl::StatusOr<RdpAccountant::Epsilon> RdpAccountant::GetEpsilon(double delta) const {
  if (!(delta > 0 && delta < 1)) return Invalid("delta", "in (0, 1)", delta);
  Epsilon best{kInf, 0};
  for (size_t j = 0; j < orders_.size(); ++j) {
    const double a = orders_[j];
    const double eps = rdp_[j] - (std::log(delta) + std::log(a)) / (a - 1) + std::log1p(-1 / a);
    if (eps < best.epsilon) best = {eps, a};
  }
  best.epsilon = std::max(0.0, best.epsilon);
  return best;
}

absl::StatusOr<RdpAccountant::Epsilon> RdpAccountant::GetEpsilonClassic(double delta) const {
  if (!(delta > 0 && delta < 1)) return Invalid("delta", "in (0, 1)", delta);
  Epsilon best{kInf, 0};
  for (size_t j = 0; j < orders_.size(); ++j) {
    const double a = orders_[j];
    const double eps = rdp_[j] + std::log(1 / delta) / (a - 1);
    if (eps < best.epsilon) best = {eps, a};
  }
  return best;
}

std::string RdpAccountant::SaveState() const {
  StateWriter writer("dp.rdp_accountant");
  writer.PutF64Array(orders_);
  writer.PutF64Array(rdp_);
  writer.PutU64(static_cast<uint64_t>(steps_));
  return writer.Finish();
}

absl::Status RdpAccountant::LoadState(absl::string_view state) {
  ASSIGN_OR_RETURN(StateReader reader, StateReader::Open(state, "dp.rdp_accountant"));
  std::vector<double> orders, rdp;
  RETURN_IF_ERROR(reader.GetF64Array("orders", orders_.size(), &orders));
  if (orders != orders_) {
    return absl::InvalidArgumentError(
        "state for dp.rdp_accountant: saved with different RDP orders");
  }
  RETURN_IF_ERROR(reader.GetF64Array("rdp", orders_.size(), &rdp));
  ASSIGN_OR_RETURN(const uint64_t steps, reader.GetU64("steps"));
  RETURN_IF_ERROR(reader.Finish());
  for (double r : rdp) {
    if (!(r >= 0) || std::isnan(r)) {
      return absl::InvalidArgumentError("state for dp.rdp_accountant: negative or NaN RDP");
    }
  }
  rdp_ = std::move(rdp);
  steps_ = static_cast<int64_t>(steps);
  return absl::OkStatus();
}

}  // namespace edgefl::aggregation
