// Central differential privacy for federated averaging (DP-FedAvg, McMahan et al. 2018): clip each
// update to norm C (filters.h DpClipFilter), average the K clipped updates with a fixed
// denominator K, add Gaussian noise of std sigma * C / K to the mean; optionally adapt C to a
// quantile of the update norms (Andrew et al. 2021); account the privacy spent with the RDP of the
// sampled Gaussian mechanism (Mironov, Talwar, Zhang 2019).
//
// The DP guarantee needs the *unweighted* mean sum_k clip(d_k) / K (sensitivity C / K); a
// sample-weighted mean has a data-dependent sensitivity. That is the caller's choice of combiner.
#ifndef EDGEFL_AGGREGATION_DP_H_
#define EDGEFL_AGGREGATION_DP_H_

#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace edgefl::aggregation {

// Standard normal draws from std::mt19937_64 through the Box-Muller transform (written here, not
// std::normal_distribution, so the sequence depends only on the seed and the libm's log/sqrt/
// cos/sin, not on the standard library's distribution algorithm). Each pair of 64-bit words gives
// two normals: u1 = ((w1 >> 11) + 1) 2^-53 in (0, 1], u2 = (w2 >> 11) 2^-53 in [0, 1),
// z0 = sqrt(-2 ln u1) cos(2 pi u2), z1 = sqrt(-2 ln u1) sin(2 pi u2). Not thread-safe.
class GaussianSampler {
 public:
  explicit GaussianSampler(uint64_t seed) : engine_(seed) {}
  double Next();
  // The engine state (std::mt19937_64's standard text form) and the cached second draw.
  std::string SaveState() const;
  absl::Status LoadState(absl::string_view state);

 private:
  std::mt19937_64 engine_;
  bool has_spare_ = false;
  double spare_ = 0;
};

// Adds N(0, (noise_multiplier * clip_norm / num_updates)^2) to each coordinate of the mean of
// `num_updates` clipped updates. Not thread-safe.
class GaussianNoiseStage {
 public:
  struct Options {
    // sigma (z): noise std in units of the clip norm, finite >= 0 (0 adds nothing, no privacy).
    // Default 1.0.
    double noise_multiplier = 1.0;
    // Seed of the noise stream. Default 0; a real deployment should draw it from a secure
    // source and keep it secret (anyone who knows it can subtract the noise).
    uint64_t seed = 0;
  };
  static absl::StatusOr<std::unique_ptr<GaussianNoiseStage>> Create(const Options& options);

  // INVALID_ARGUMENT unless num_updates >= 1 and clip_norm finite > 0.
  absl::Status AddNoise(absl::Span<double> mean, int64_t num_updates, double clip_norm);
  // The same with this call's multiplier (a per-round schedule) instead of the configured one.
  absl::Status AddNoise(absl::Span<double> mean, int64_t num_updates, double clip_norm,
                        double noise_multiplier);
  double noise_multiplier() const { return noise_multiplier_; }

  // The noise stream's position: a resumed run draws the same noise as an uninterrupted one.
  std::string SaveState() const;
  // INVALID_ARGUMENT (state unchanged) for a corrupt, truncated or foreign blob.
  absl::Status LoadState(absl::string_view state);

 private:
  GaussianNoiseStage(double noise_multiplier, uint64_t seed)
      : noise_multiplier_(noise_multiplier), sampler_(seed) {}
  double noise_multiplier_;
  GaussianSampler sampler_;
};

// Adaptive clipping, Andrew et al. 2021 ("Differentially Private Learning with Adaptive
// Clipping"), geometric update: after a round with K clipped updates of which `num_within` had
// norm <= C,
//   b       = num_within / K
//   b_noisy = (num_within + N(0, count_noise_stddev^2)) / K   (so std count_noise_stddev / K)
//   C      <- C * exp(-learning_rate * (b_noisy - target_quantile))
// C converges to the target_quantile-quantile of the update norms. Not thread-safe.
class AdaptiveClipping {
 public:
  struct Options {
    // Starting C; finite > 0. Default 0.1 (Andrew et al.'s experiments start at 0.1).
    double initial_clip_norm = 0.1;
    // gamma: the norm quantile to track, in [0, 1]. Default 0.5 (the median, as in the paper).
    double target_quantile = 0.5;
    // eta_C: finite > 0. Default 0.2 (the paper's choice for the geometric update).
    double learning_rate = 0.2;
    // sigma_b: std of the noise on the count, finite >= 0. Default 0 (NOT private: the count
    // leaks). Andrew et al. suggest K / 20. The privacy cost is shared with the update noise:
    // see UpdateNoiseMultiplierWithAdaptiveClipping.
    double count_noise_stddev = 0.0;
    // Seed of the count noise. Default 0.
    uint64_t seed = 0;
  };
  // INVALID_ARGUMENT naming the field (aggregation.dp.adaptive_clipping.*).
  static absl::StatusOr<std::unique_ptr<AdaptiveClipping>> Create(const Options& options);

  double clip_norm() const { return clip_norm_; }
  // One round's update; returns the new C. INVALID_ARGUMENT unless 1 <= K and
  // 0 <= num_within <= K (C unchanged).
  absl::StatusOr<double> Update(int64_t num_within, int64_t num_updates);

  std::string SaveState() const;
  absl::Status LoadState(absl::string_view state);

 private:
  AdaptiveClipping(const Options& options)
      : options_(options), clip_norm_(options.initial_clip_norm), sampler_(options.seed) {}
  Options options_;
  double clip_norm_;
  GaussianSampler sampler_;
};

// Andrew et al. 2021, Theorem 1: to spend the same privacy as noise multiplier z on the update
// alone while also releasing the count with noise std sigma_b, the update's noise multiplier
// becomes (z^-2 - (2 sigma_b)^-2)^(-1/2). INVALID_ARGUMENT unless z > 0 and sigma_b > 1 / (2z).
absl::StatusOr<double> UpdateNoiseMultiplierWithAdaptiveClipping(double z, double sigma_b);

// RDP of one step of the sampled Gaussian mechanism (Poisson sampling rate q, noise multiplier
// sigma = noise std / sensitivity) at order alpha > 1:
//   integer alpha:  A = sum_{k=0}^{alpha} C(alpha,k) (1-q)^(alpha-k) q^k exp((k^2-k)/(2 sigma^2))
//   other alpha:    the two-sided series of TF-Privacy's _compute_log_a_frac (Mironov et al.
//                   2019, Section 3.3), summed until both terms fall below exp(-30)
//   RDP = log(A) / (alpha - 1), all in log space (log-sum-exp). q = 0 gives 0, q = 1 gives
//   alpha / (2 sigma^2).
// INVALID_ARGUMENT unless q in [0, 1], sigma finite > 0, alpha finite > 1.
absl::StatusOr<double> SampledGaussianRdp(double q, double sigma, double alpha);

// Accumulates RDP over rounds (composition adds RDP order by order) and converts to
// (epsilon, delta). Not thread-safe.
class RdpAccountant {
 public:
  struct Options {
    // Orders alpha > 1, all distinct. Default: TF-Privacy's compute_dp_sgd_privacy grid,
    // 1 + x/10 for x = 1..99 (1.1 .. 10.9), the integers 12..63, and 128, 256, 512.
    std::vector<double> orders = DefaultOrders();
  };
  static std::vector<double> DefaultOrders();
  static absl::StatusOr<std::unique_ptr<RdpAccountant>> Create(const Options& options);

  // Composes `steps` rounds of the sampled Gaussian mechanism with rate q and noise multiplier
  // sigma. INVALID_ARGUMENT as SampledGaussianRdp or for steps < 0 (nothing is added then).
  absl::Status Compose(double q, double sigma, int64_t steps = 1);

  struct Epsilon {
    double epsilon = 0;
    double order = 0;  // the alpha attaining the minimum
  };
  // Balle et al. 2020 ("Hypothesis Testing Interpretations and Renyi Differential Privacy"),
  // as TF-Privacy's compute_eps:
  //   eps = min_alpha rdp(alpha) - (log(delta) + log(alpha)) / (alpha - 1) + log((alpha-1)/alpha),
  // floored at 0. INVALID_ARGUMENT unless delta in (0, 1).
  absl::StatusOr<Epsilon> GetEpsilon(double delta) const;
  // The classic conversion (Mironov 2017, Proposition 3): eps = min_alpha rdp +
  // log(1/delta)/(alpha-1). Never smaller than GetEpsilon.
  absl::StatusOr<Epsilon> GetEpsilonClassic(double delta) const;

  const std::vector<double>& orders() const { return orders_; }
  const std::vector<double>& rdp() const { return rdp_; }
  int64_t steps() const { return steps_; }

  // Orders, accumulated RDP and step count. LoadState refuses (INVALID_ARGUMENT, state unchanged)
  // a corrupt blob or one saved with different orders.
  std::string SaveState() const;
  absl::Status LoadState(absl::string_view state);

 private:
  explicit RdpAccountant(std::vector<double> orders)
      : orders_(std::move(orders)), rdp_(orders_.size(), 0.0) {}
  std::vector<double> orders_;
  std::vector<double> rdp_;
  int64_t steps_ = 0;
};

}  // namespace edgefl::aggregation

#endif  // EDGEFL_AGGREGATION_DP_H_
