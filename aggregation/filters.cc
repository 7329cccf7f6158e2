#include "aggregation/filters.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "aggregation/kernels.h"
#include "common/status_reason.h"

namespace edgefl::aggregation {
namespace {

absl::Status CheckNorm(absl::string_view field, double value) {
  if (!std::isfinite(value) || !(value > 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("aggregation.filters.", field, " must be finite and > 0, got ", value));
  }
  return absl::OkStatus();
}

absl::StatusOr<double> FiniteNorm(absl::Span<const float> update) {
  if (const size_t i = FirstNonFinite(update); i < update.size()) {
    return WithReason(absl::InvalidArgumentError(absl::StrCat("update holds a non-finite value (",
                                                              update[i], ") at index ", i)),
                      "non_finite");
  }
  return L2Norm(update);
}

// Scales `update` to norm `bound` when its norm exceeds it.
FilterResult ClipTo(absl::Span<float> update, double norm, double bound) {
  FilterResult result;
  result.norm = norm;
  if (norm > bound) {
    const double scale = bound / norm;
    for (float& x : update) x = static_cast<float>(static_cast<double>(x) * scale);
    result.clipped = true;
  }
  return result;
}

}  // namespace

double L2Norm(absl::Span<const float> x) {
  double sum = 0;
  for (float v : x) sum += static_cast<double>(v) * static_cast<double>(v);
  return std::sqrt(sum);
}

absl::StatusOr<std::unique_ptr<NormBoundFilter>> NormBoundFilter::Create(const Options& options) {
  absl::Status s = CheckNorm("max_norm", options.max_norm);
  if (!s.ok()) return s;
  return std::unique_ptr<NormBoundFilter>(new NormBoundFilter(options));
}

absl::StatusOr<FilterResult> NormBoundFilter::Apply(absl::Span<float> update) {
  absl::StatusOr<double> norm = FiniteNorm(update);
  if (!norm.ok()) return norm.status();
  if (options_.mode == Mode::kReject) {
    if (*norm > options_.max_norm) {
      return WithReason(absl::InvalidArgumentError(absl::StrCat(
                            "update L2 norm ", *norm, " exceeds max_l2_norm ", options_.max_norm)),
                        "update_norm");
    }
    FilterResult result;
    result.norm = *norm;
    return result;
  }
  return ClipTo(update, *norm, options_.max_norm);
}

absl::StatusOr<std::unique_ptr<DpClipFilter>> DpClipFilter::Create(const Options& options) {
  absl::Status s = CheckNorm("clip_norm", options.clip_norm);
  if (!s.ok()) return s;
  return std::unique_ptr<DpClipFilter>(new DpClipFilter(options.clip_norm));
}

absl::Status DpClipFilter::SetClipNorm(double clip_norm) {
  absl::Status s = CheckNorm("clip_norm", clip_norm);
  if (s.ok()) clip_norm_ = clip_norm;
  return s;
}

absl::StatusOr<FilterResult> DpClipFilter::Apply(absl::Span<float> update) {
  absl::StatusOr<double> norm = FiniteNorm(update);
  if (!norm.ok()) return norm.status();
  return ClipTo(update, *norm, clip_norm_);
}

}  // namespace edgefl::aggregation
