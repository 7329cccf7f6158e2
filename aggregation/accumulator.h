// Streaming weighted mean of model updates: memory O(model), independent of the number of clients.
#ifndef EDGEFL_AGGREGATION_ACCUMULATOR_H_
#define EDGEFL_AGGREGATION_ACCUMULATOR_H_

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "compression/chain.h"
#include "compression/update_codec.h"

namespace edgefl::aggregation {

// Accumulates sum_k w_k * x_k in double precision. Not thread-safe: the caller serializes Add.
class WeightedMeanAccumulator {
 public:
  explicit WeightedMeanAccumulator(size_t dim);

  // INVALID_ARGUMENT if x.size() != dim, weight is not finite and > 0, or x holds NaN/Inf (checked
  // before anything is added, so a rejected update leaves the sum untouched).
  absl::Status Add(absl::Span<const float> x, double weight);
  // Decodes an encoded update (compression/update_codec.h) straight into the sum, without a
  // dense copy: the whole encoding is validated against `layout` (and `chain`) first, so on any
  // error (INVALID_ARGUMENT naming the problem) the sum is untouched. `weight` as in Add.
  absl::Status AddEncoded(absl::string_view encoded,
                          absl::Span<const compression::TensorLayout> layout,
                          const compression::ChainSpec& chain, double weight);

  // Writes sum / total_weight into `out` (size dim). FAILED_PRECONDITION if nothing was added.
  absl::Status Mean(absl::Span<float> out) const;
  void Reset();
  // Divides the running sum by total_weight in place and returns it: the mean in double, with no
  // second O(dim) buffer. The accumulator then holds the mean, not a sum: Reset before adding
  // again. FAILED_PRECONDITION if nothing was added.
  absl::StatusOr<absl::Span<double>> MeanInPlace();

  // sum[index] / total_weight in double precision; the caller ensures count() > 0 and
  // index < dim(). Lets a strategy apply the mean without a second O(dim) buffer.
  double MeanAt(size_t index) const { return sum_[index] / total_weight_; }

  size_t dim() const { return sum_.size(); }
  // Bytes held by the running sum; constant for the accumulator's lifetime.
  size_t memory_bytes() const { return sum_.capacity() * sizeof(double); }
  int64_t count() const { return count_; }
  double total_weight() const { return total_weight_; }

 private:
  std::vector<double> sum_;
  double total_weight_ = 0;
  int64_t count_ = 0;
};

}  // namespace edgefl::aggregation

#endif  // EDGEFL_AGGREGATION_ACCUMULATOR_H_
