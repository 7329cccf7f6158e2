// Buffered (robust) combiners: coordinate-wise median, coordinate-wise trimmed mean, Krum and
// multi-Krum. Unlike the streaming WeightedMeanAccumulator they must see every update at once, so
// they buffer them.
//
// Memory bound (what memory_bound_bytes() reports; reserved at Create, touched as updates arrive):
//   buffer:  max_updates * dim * sizeof(float)            (bytes_per_update = dim * 4)
//   Krum / multi-Krum also hold the pairwise squared distances and scores:
//            max_updates^2 * sizeof(double) + max_updates * sizeof(double)
//   median / trimmed mean transpose blocks of kCoordinateBlock = 64 coordinates into a scratch
//            of max_updates * 64 * sizeof(double).
// plus O(max_updates) bytes of per-Combine bookkeeping (Krum's index order and one distance
// row), not counted. I.e. O(K x model). Create refuses a configuration whose bound exceeds
// max_buffered_bytes.
//
// Weighting: median, trimmed mean and Krum are unweighted (every update counts once, whatever its
// sample count), as Flower's aggregate_median / aggregate_trimmed_avg / aggregate_krum. Multi-Krum
// averages its selected updates unweighted (Blanchard et al.) or, with
// multi_krum_weighted = true, weighted by sample count (as Flower's aggregate_krum with
// to_keep > 0).
//
// All arithmetic on the combined value is in double; outputs are double so the server optimizer
// rounds to float once. Median and trimmed mean do not depend on the order updates were added in
// (each coordinate's values are sorted before summing); Krum's tie-break does (lowest index).
#ifndef EDGEFL_AGGREGATION_ROBUST_H_
#define EDGEFL_AGGREGATION_ROBUST_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace edgefl::aggregation {

enum class RobustRule {
  // Per coordinate, the median of the K values; for even K the mean of the two middle values.
  kMedian,
  // Per coordinate, sort the K values, drop k = floor(trim_beta * K) from each end (the same
  // int(beta * K) as scipy.stats.trim_mean, which Flower uses) and average the K - 2k left.
  kTrimmedMean,
  // Blanchard et al. 2017: score(i) = sum of the squared L2 distances from update i to its
  // n - f - 2 nearest other updates; output the update with the lowest score (ties: lowest index,
  // i.e. the earliest added). Requires n > 2f + 2.
  kKrum,
  // As kKrum, but output the average of the multi_krum_m lowest-scoring updates (ties as above).
  // Requires n > 2f + 2 and multi_krum_m <= n - f (multi_krum_m = 0 means m = n - f).
  kMultiKrum,
};

// Not thread-safe: the caller serializes all calls.
class BufferedCombiner {
 public:
  struct Options {
    RobustRule rule = RobustRule::kMedian;
    // Number of model parameters; > 0.
    size_t dim = 0;
    // Most updates one round may buffer; > 0. Usually the round's selected clients.
    int max_updates = 0;
    // Refuse to be created if memory_bound_bytes() would exceed this. Default 2 GiB.
    uint64_t max_buffered_bytes = uint64_t{2} << 30;
    // kTrimmedMean: fraction trimmed from each tail, in [0, 0.5). Default 0.1.
    double trim_beta = 0.1;
    // kKrum / kMultiKrum: assumed number of Byzantine updates f >= 0. Default 0.
    int num_byzantine = 0;
    // kMultiKrum: how many lowest-scoring updates to average, >= 1, or 0 for n - f (all but
    // the assumed Byzantine count, as El Mhamdi et al.'s multi-Krum). Default 1 (= Krum).
    int multi_krum_m = 1;
    // kMultiKrum: weight the average by sample count instead of uniformly. Default false.
    bool multi_krum_weighted = false;
  };

  // INVALID_ARGUMENT naming the field for a bad option, or naming both numbers when the memory
  // bound exceeds max_buffered_bytes.
  static absl::StatusOr<std::unique_ptr<BufferedCombiner>> Create(const Options& options);

  // Drops every buffered update (the buffer's memory is kept).
  void Reset();
  // Copies one dense update into the buffer. INVALID_ARGUMENT if update.size() != dim, it holds
  // NaN/Inf or num_samples == 0; RESOURCE_EXHAUSTED if max_updates are already buffered. On
  // error nothing is buffered.
  absl::Status Add(absl::Span<const float> update, uint64_t num_samples);
  // Writes the combined update (size dim) to `out`. FAILED_PRECONDITION if nothing was added or,
  // for Krum / multi-Krum, if n <= 2f + 2 or multi_krum_m > n - f (the message says which);
  // INVALID_ARGUMENT if out.size() != dim. The buffer is left as it was.
  absl::Status Combine(absl::Span<double> out);

  // For Krum / multi-Krum after a successful Combine: indices (in Add order) of the selected
  // updates, best score first; and every update's score. Empty for the other rules.
  const std::vector<int>& selected() const { return selected_; }
  const std::vector<double>& scores() const { return scores_; }

  int num_buffered() const { return count_; }
  size_t dim() const { return options_.dim; }
  uint64_t bytes_per_update() const { return options_.dim * sizeof(float); }
  // The bound stated at the top of this file, for these options.
  uint64_t memory_bound_bytes() const { return MemoryBound(options_); }
  static uint64_t MemoryBound(const Options& options);
  std::string name() const;

  // Coordinates the median / trimmed mean transpose at a time.
  static constexpr size_t kCoordinateBlock = 64;

 private:
  explicit BufferedCombiner(const Options& options);
  const float* Row(int k) const { return buffer_.data() + static_cast<size_t>(k) * options_.dim; }
  void GatherBlock(size_t begin, size_t width);
  // Calls reduce(column) for every coordinate, column = that coordinate's count_ values (in
  // scratch, which reduce may reorder), and stores its result in out[coordinate].
  template <typename Reduce>
  void ReduceCoordinates(absl::Span<double> out, Reduce reduce);
  void Median(absl::Span<double> out);
  void TrimmedMean(absl::Span<double> out);
  absl::Status Krum(absl::Span<double> out);

  Options options_;
  std::vector<float> buffer_;  // max_updates x dim, row k = k-th added update
  std::vector<uint64_t> samples_;
  std::vector<double> scratch_;
  std::vector<double> distances_;  // Krum: max_updates x max_updates
  std::vector<double> scores_;
  std::vector<int> selected_;
  int count_ = 0;
};

}  // namespace edgefl::aggregation

#endif  // EDGEFL_AGGREGATION_ROBUST_H_
