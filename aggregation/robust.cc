#include "aggregation/robust.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "aggregation/kernels.h"
#include "common/status_macros.h"
#include "common/status_reason.h"

namespace edgefl::aggregation {
namespace {

constexpr char kField[] = "aggregation.robust.";

bool IsKrum(RobustRule rule) { return rule == RobustRule::kKrum || rule == RobustRule::kMultiKrum; }

// Coordinates per block when computing pairwise distances: all K rows of one block stay in cache.
constexpr size_t kDistanceBlock = 2048;

// Squared L2 distance of two float ranges in double, with four partial sums (a fixed order, so
// deterministic; it lets the compiler pipeline and vectorize the loop).
double SquaredDistance(const float* a, const float* b, size_t size) {
  double s[4] = {0, 0, 0, 0};
  size_t i = 0;
  for (; i + 4 <= size; i += 4) {
    for (int l = 0; l < 4; ++l) {
      const double d = static_cast<double>(a[i + l]) - static_cast<double>(b[i + l]);
      s[l] += d * d;
    }
  }
  for (; i < size; ++i) {
    const double d = static_cast<double>(a[i]) - static_cast<double>(b[i]);
    s[0] += d * d;
  }
  return (s[0] + s[1]) + (s[2] + s[3]);
}

}  // namespace

// static
constexpr size_t BufferedCombiner::kCoordinateBlock;

uint64_t BufferedCombiner::MemoryBound(const Options& options) {
  const uint64_t k = options.max_updates > 0 ? static_cast<uint64_t>(options.max_updates) : 0;
  uint64_t bytes = k * options.dim * sizeof(float);
  if (IsKrum(options.rule)) {
    bytes += k * k * sizeof(double) + k * sizeof(double);
  } else {
    bytes += k * kCoordinateBlock * sizeof(double);
  }
  return bytes;
}

std::string BufferedCombiner::name() const {
  switch (options_.rule) {
    case RobustRule::kMedian:
      return "median";
    case RobustRule::kTrimmedMean:
      return "trimmed_mean";
    case RobustRule::kKrum:
      return "krum";
    case RobustRule::kMultiKrum:
      return "multi_krum";
  }
  return "unknown";
}

absl::StatusOr<std::unique_ptr<BufferedCombiner>> BufferedCombiner::Create(const Options& options) {
  if (options.dim == 0) {
    return absl::InvalidArgumentError(absl::StrCat(kField, "dim must be > 0, got 0"));
  }
  if (options.max_updates <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(kField, "max_updates must be > 0, got ", options.max_updates));
  }
  if (options.rule == RobustRule::kTrimmedMean &&
      !(options.trim_beta >= 0 && options.trim_beta < 0.5)) {
    return absl::InvalidArgumentError(
        absl::StrCat(kField, "trim_beta must be in [0, 0.5), got ", options.trim_beta));
  }
  if (IsKrum(options.rule) && options.num_byzantine < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(kField, "num_byzantine must be >= 0, got ", options.num_byzantine));
  }
  if (options.rule == RobustRule::kMultiKrum && options.multi_krum_m < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        kField, "multi_krum_m must be >= 1 (or 0 for n - f), got ", options.multi_krum_m));
  }
  // Overflow-safe bound check: dim * max_updates * 4 must fit in 64 bits first.
  const uint64_t k = static_cast<uint64_t>(options.max_updates);
  if (options.dim > (uint64_t{1} << 62) / sizeof(float) / k) {
    return absl::InvalidArgumentError(absl::StrCat(kField, "max_updates (", k, ") x dim (",
                                                   options.dim, ") overflows the memory bound"));
  }
  const uint64_t bound = MemoryBound(options);
  if (bound > options.max_buffered_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        kField, "memory bound ", bound, " bytes (", k, " updates x ", options.dim * sizeof(float),
        " bytes per update", IsKrum(options.rule) ? " + pairwise distances" : "",
        ") exceeds max_buffered_bytes ", options.max_buffered_bytes));
  }
  return std::unique_ptr<BufferedCombiner>(new BufferedCombiner(options));
}

BufferedCombiner::BufferedCombiner(const Options& options) : options_(options) {
  const size_t k = static_cast<size_t>(options.max_updates);
  buffer_.reserve(k * options.dim);
  samples_.reserve(k);
  if (IsKrum(options.rule)) {
    distances_.reserve(k * k);
    scores_.reserve(k);
  } else {
    scratch_.reserve(k * kCoordinateBlock);
  }
}

void BufferedCombiner::Reset() {
  buffer_.clear();
  samples_.clear();
  scores_.clear();
  selected_.clear();
  count_ = 0;
}

absl::Status BufferedCombiner::Add(absl::Span<const float> update, uint64_t num_samples) {
  if (update.size() != options_.dim) {
    return absl::InvalidArgumentError(
        absl::StrCat("update has ", update.size(), " values, expected ", options_.dim));
  }
  if (num_samples == 0) return absl::InvalidArgumentError("update reports 0 training samples");
  if (count_ >= options_.max_updates) {
    return absl::ResourceExhaustedError(absl::StrCat(
        name(), " combiner already buffers its max_updates = ", options_.max_updates, " updates"));
  }
  if (const size_t i = FirstNonFinite(update); i < update.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("update holds a non-finite value (", update[i], ") at index ", i));
  }
  buffer_.insert(buffer_.end(), update.begin(), update.end());
  samples_.push_back(num_samples);
  ++count_;
  return absl::OkStatus();
}

absl::Status BufferedCombiner::Combine(absl::Span<double> out) {
  if (count_ == 0) return absl::FailedPreconditionError("no update to combine");
  if (out.size() != options_.dim) {
    return absl::InvalidArgumentError(
        absl::StrCat("output has ", out.size(), " values, expected ", options_.dim));
  }
  switch (options_.rule) {
    case RobustRule::kMedian:
      Median(out);
      return absl::OkStatus();
    case RobustRule::kTrimmedMean:
      TrimmedMean(out);
      return absl::OkStatus();
    case RobustRule::kKrum:
    case RobustRule::kMultiKrum:
      return Krum(out);
  }
  return absl::InternalError("unknown robust rule");
}

// Copies coordinates [begin, begin + width) of all n rows into scratch_ as width columns of n
// values each (column j at scratch_[j * n]), so the per-coordinate selection reads contiguous
// memory and each row is read sequentially.
void BufferedCombiner::GatherBlock(size_t begin, size_t width) {
  const int n = count_;
  for (int k = 0; k < n; ++k) {
    const float* row = Row(k) + begin;
    for (size_t j = 0; j < width; ++j) scratch_[j * n + k] = row[j];
  }
}

template <typename Reduce>
void BufferedCombiner::ReduceCoordinates(absl::Span<double> out, Reduce reduce) {
  const size_t n = static_cast<size_t>(count_);
  const size_t dim = options_.dim;
  scratch_.resize(n * kCoordinateBlock);
  for (size_t begin = 0; begin < dim; begin += kCoordinateBlock) {
    const size_t width = std::min(kCoordinateBlock, dim - begin);
    GatherBlock(begin, width);
    for (size_t j = 0; j < width; ++j) out[begin + j] = reduce(scratch_.data() + j * n);
  }
}

void BufferedCombiner::Median(absl::Span<double> out) {
  const int n = count_;
  const size_t upper = static_cast<size_t>(n) / 2;
  ReduceCoordinates(out, [n, upper](double* column) {
    std::nth_element(column, column + upper, column + n);
    const double hi = column[upper];
    if (n % 2 == 1) return hi;
    // nth_element leaves the `upper` smallest values in front: the lower middle is their max.
    const double lo = *std::max_element(column, column + upper);
    return (lo + hi) / 2;  // exact: two floats' sum and halving are exact in double
  });
}

void BufferedCombiner::TrimmedMean(absl::Span<double> out) {
  const int n = count_;
  const int trim = static_cast<int>(std::floor(options_.trim_beta * n));
  const int kept = n - 2 * trim;  // >= 1 because trim_beta < 0.5
  ReduceCoordinates(out, [n, trim, kept](double* column) {
    // Sorting fixes the summation order (ascending), so the result does not depend on the
    // order the updates arrived in.
    std::sort(column, column + n);
    double sum = 0;
    for (int k = trim; k < n - trim; ++k) sum += column[k];
    return sum / kept;
  });
}

absl::Status BufferedCombiner::Krum(absl::Span<double> out) {
  const int n = count_;
  const int f = options_.num_byzantine;
  if (n <= 2 * f + 2) {
    return WithReason(absl::FailedPreconditionError(
                          absl::StrCat(name(), " needs n > 2f + 2 updates: n = ", n, ", f = ", f,
                                       " (at least ", 2 * f + 3, " updates)")),
                      "krum_too_few_updates");
  }
  int m = 1;
  if (options_.rule == RobustRule::kMultiKrum) {
    m = options_.multi_krum_m == 0 ? n - f : options_.multi_krum_m;
  }
  if (m > n - f) {
    return WithReason(
        absl::FailedPreconditionError(absl::StrCat(name(), " needs multi_krum_m <= n - f: m = ", m,
                                                   ", n = ", n, ", f = ", f)),
        "krum_too_few_updates");
  }
  const size_t dim = options_.dim;
  // Pairwise squared distances in double, blocked over coordinates so each block of all n rows
  // stays in cache; the upper triangle is filled, then mirrored.
  distances_.assign(static_cast<size_t>(n) * n, 0.0);
  for (size_t begin = 0; begin < dim; begin += kDistanceBlock) {
    const size_t end = std::min(dim, begin + kDistanceBlock);
    for (int a = 0; a < n; ++a) {
      const float* ra = Row(a);
      for (int b = a + 1; b < n; ++b) {
        const float* rb = Row(b);
        distances_[static_cast<size_t>(a) * n + b] +=
            SquaredDistance(ra + begin, rb + begin, end - begin);
      }
    }
  }
  for (int a = 0; a < n; ++a) {
    for (int b = 0; b < a; ++b) {
      distances_[static_cast<size_t>(a) * n + b] = distances_[static_cast<size_t>(b) * n + a];
    }
  }
  // score(i) = sum of the n - f - 2 smallest distances to the others, summed smallest first.
  const int nearest = n - f - 2;
  scores_.assign(n, 0.0);
  std::vector<double> others;
  others.reserve(n);
  for (int a = 0; a < n; ++a) {
    others.clear();
    for (int b = 0; b < n; ++b) {
      if (b != a) others.push_back(distances_[static_cast<size_t>(a) * n + b]);
    }
    std::partial_sort(others.begin(), others.begin() + nearest, others.end());
    double score = 0;
    for (int j = 0; j < nearest; ++j) score += others[j];
    scores_[a] = score;
  }
  std::vector<int> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int x, int y) { return scores_[x] < scores_[y]; });
  selected_.assign(order.begin(), order.begin() + m);

  const bool weighted = options_.rule == RobustRule::kMultiKrum && options_.multi_krum_weighted;
  double total = 0;
  for (int k : selected_) total += weighted ? static_cast<double>(samples_[k]) : 1.0;
  for (size_t i = 0; i < dim; ++i) {
    double sum = 0;
    for (int k : selected_) {
      const double w = weighted ? static_cast<double>(samples_[k]) : 1.0;
      sum += w * static_cast<double>(Row(k)[i]);
    }
    out[i] = sum / total;
  }
  return absl::OkStatus();
}

}  // namespace edgefl::aggregation
