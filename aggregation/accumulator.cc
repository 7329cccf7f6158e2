#include "aggregation/accumulator.h"

#include "aggregation/kernels.h"

#include "common/status_macros.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"

namespace edgefl::aggregation {

WeightedMeanAccumulator::WeightedMeanAccumulator(size_t dim) : sum_(dim, 0.0) {}

absl::Status WeightedMeanAccumulator::Add(absl::Span<const float> x, double weight) {
  if (x.size() != sum_.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("update has ", x.size(), " values, expected ", sum_.size()));
  }
  if (!std::isfinite(weight) || !(weight > 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("update weight must be finite and > 0, got ", weight));
  }
  // Validate everything before touching the sum so a rejected update leaves no trace.
  if (const size_t i = FirstNonFinite(x); i < x.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("update holds a non-finite value (", x[i], ") at index ", i));
  }
  FoldWeighted(absl::MakeSpan(sum_), x, weight);
  total_weight_ += weight;
  ++count_;
  return absl::OkStatus();
}

absl::Status WeightedMeanAccumulator::Mean(absl::Span<float> out) const {
  if (count_ == 0 || !(total_weight_ > 0)) {
    return absl::FailedPreconditionError("no update has been accumulated");
  }
  if (out.size() != sum_.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("output has ", out.size(), " values, expected ", sum_.size()));
  }
  for (size_t i = 0; i < sum_.size(); ++i) {
    out[i] = static_cast<float>(sum_[i] / total_weight_);
  }
  return absl::OkStatus();
}

absl::StatusOr<absl::Span<double>> WeightedMeanAccumulator::MeanInPlace() {
  if (count_ == 0 || !(total_weight_ > 0)) {
    return absl::FailedPreconditionError("no update has been accumulated");
  }
  for (double& v : sum_) v /= total_weight_;
  total_weight_ = 1;  // sum_ now holds the mean: MeanAt stays right
  return absl::MakeSpan(sum_);
}

void WeightedMeanAccumulator::Reset() {
  std::fill(sum_.begin(), sum_.end(), 0.0);
  total_weight_ = 0;
  count_ = 0;
}

absl::Status WeightedMeanAccumulator::AddEncoded(absl::string_view encoded,
                                               absl::Span<const compression::TensorLayout> layout,
                                               const compression::ChainSpec& chain,
                                               double weight) {
  if (!(std::isfinite(weight) && weight > 0)) {
    return absl::InvalidArgumentError(absl::StrCat("update weight must be finite and > 0, got ",
                                                   weight));
  }
  uint64_t total = 0;
  for (const auto& t : layout) total += t.numel;
  if (total != sum_.size()) {
    return absl::InvalidArgumentError(absl::StrCat("layout holds ", total, " values; expected ",
                                                   sum_.size()));
  }
  compression::WeightedAddSink sink(absl::MakeSpan(sum_), weight);
  compression::DecodeOptions options;
  options.expected_chain = chain;
  RETURN_IF_ERROR(compression::DecodeUpdate(encoded, layout, &sink, options));
  total_weight_ += weight;
  ++count_;
  return absl::OkStatus();
}

}  // namespace edgefl::aggregation
