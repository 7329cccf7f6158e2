// Update filters: the first stage of the aggregation pipeline, applied to each dense update before
// it reaches a combiner. Norms are L2 over the whole update, computed in double.
#ifndef EDGEFL_AGGREGATION_FILTERS_H_
#define EDGEFL_AGGREGATION_FILTERS_H_

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace edgefl::aggregation {

// sqrt(sum x_i^2) in double. Non-finite input gives a non-finite result.
double L2Norm(absl::Span<const float> x);

struct FilterResult {
  // The update's L2 norm before the filter touched it.
  double norm = 0;
  // Whether the filter scaled the update.
  bool clipped = false;
};

// Not thread-safe: the caller serializes calls on one filter.
class UpdateFilter {
 public:
  virtual ~UpdateFilter() = default;
  virtual std::string name() const = 0;
  // Checks and possibly rewrites `update` in place. INVALID_ARGUMENT if it holds NaN/Inf or the
  // filter rejects it (the status then carries a reason, common/status_reason.h); a rejected
  // update is left unchanged.
  virtual absl::StatusOr<FilterResult> Apply(absl::Span<float> update) = 0;
};

// Norm bound: a server-side sanity limit on how far one client may move the model.
class NormBoundFilter : public UpdateFilter {
 public:
  enum class Mode {
    // Refuse an update with norm > max_norm (reason "update_norm", counted as rejected.update_norm).
    kReject,
    // Scale an update with norm > max_norm down to norm max_norm.
    kClip,
  };
  struct Options {
    // Largest allowed L2 norm; finite > 0. No default that fits every model: 0 is refused.
    double max_norm = 0;
    // Default kReject: an oversized update is more likely a fault or an attack than a signal.
    Mode mode = Mode::kReject;
  };
  // INVALID_ARGUMENT naming aggregation.filters.max_norm for a bad bound.
  static absl::StatusOr<std::unique_ptr<NormBoundFilter>> Create(const Options& options);

  std::string name() const override { return "norm_bound"; }
  absl::StatusOr<FilterResult> Apply(absl::Span<float> update) override;

 private:
  explicit NormBoundFilter(const Options& options) : options_(options) {}
  Options options_;
};

// DP clipping (Abadi et al. 2016; McMahan et al. 2018 DP-FedAvg): update *= min(1, C / ||update||),
// so every contribution has norm <= C (up to float rounding of the scaled values: the result's
// norm is within a relative 1e-6 of C). Never rejects on norm. C can be changed between rounds by
// adaptive clipping (dp.h).
class DpClipFilter : public UpdateFilter {
 public:
  struct Options {
    // Clip norm C; finite > 0. Default 1.0 (a common starting point; tune per model or use
    // adaptive clipping).
    double clip_norm = 1.0;
  };
  static absl::StatusOr<std::unique_ptr<DpClipFilter>> Create(const Options& options);

  std::string name() const override { return "dp_clip"; }
  absl::StatusOr<FilterResult> Apply(absl::Span<float> update) override;

  double clip_norm() const { return clip_norm_; }
  // INVALID_ARGUMENT unless finite > 0.
  absl::Status SetClipNorm(double clip_norm);

 private:
  explicit DpClipFilter(double clip_norm) : clip_norm_(clip_norm) {}
  double clip_norm_;
};

}  // namespace edgefl::aggregation

#endif  // EDGEFL_AGGREGATION_FILTERS_H_
