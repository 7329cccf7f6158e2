// Time per aggregation of 100 updates of the FedAvg CNN (1,663,370 floats) through the streaming
// weighted mean and the buffered robust combiners. One iteration = fold/copy in all 100 updates
// and produce the combined update (double, as the server optimizer takes it). The counters give
// each combiner's memory bound (robust.h) or the accumulator's fixed memory.
//
// BM_Kernel/* split the weighted mean's per-update work into its two passes (the finiteness check
// and the fold, aggregation/kernels.h), per instruction set, next to the scalar std::isfinite scan
// the check replaced: 100 updates each, no accumulator around them.
//
// The machine is shared: by default each benchmark runs one iteration; take the best of a few
// runs (e.g. --benchmark_repetitions=5).
//   combiner_benchmark [--benchmark_filter=...]
#include <cmath>
#include <algorithm>
#include <cstdint>
#include <random>
#include <vector>

#include "aggregation/accumulator.h"
#include "aggregation/kernels.h"
#include "aggregation/robust.h"
#include "benchmark/benchmark.h"

namespace edgefl::aggregation {
namespace {

constexpr size_t kDim = 1663370;
constexpr int kUpdates = 100;
constexpr size_t kStride = 20011;  // update k = pool[k * kStride, k * kStride + kDim)

// Distinct updates without 100 x 6.7 MB of source data: overlapping windows of one pool.
const std::vector<float>& Pool() {
  static const std::vector<float>* pool = [] {
    auto* p = new std::vector<float>(kDim + kUpdates * kStride);
    std::mt19937_64 rng(1);
    std::normal_distribution<float> normal(0.0f, 0.01f);
    for (float& x : *p) x = normal(rng);
    return p;
  }();
  return *pool;
}

absl::Span<const float> Update(int k) {
  return absl::MakeConstSpan(Pool().data() + static_cast<size_t>(k) * kStride, kDim);
}

void BM_WeightedMean(benchmark::State& state) {
  Pool();
  WeightedMeanAccumulator acc(kDim);
  std::vector<double> out(kDim);
  for (auto _ : state) {
    acc.Reset();
    for (int k = 0; k < kUpdates; ++k) {
      if (!acc.Add(Update(k), 100.0 + k).ok()) state.SkipWithError("Add failed");
    }
    for (size_t i = 0; i < kDim; ++i) out[i] = acc.MeanAt(i);
    benchmark::DoNotOptimize(out.data());
  }
  state.counters["memory_bytes"] = static_cast<double>(acc.memory_bytes());
  state.counters["updates"] = kUpdates;
}

// BM_WeightedMean with the caches flushed before each update (64 MiB written, not timed), as in
// a server whose sums were evicted by other work between two reports: the fold then streams the
// 13.3 MB of double sums from and to DRAM. BM_WeightedMean itself keeps the sums and the update
// pool (28 MB together) in a large L3.
void BM_WeightedMeanColdCache(benchmark::State& state) {
  Pool();
  WeightedMeanAccumulator acc(kDim);
  std::vector<double> out(kDim);
  std::vector<char> evict(size_t{64} << 20);
  for (auto _ : state) {
    acc.Reset();
    for (int k = 0; k < kUpdates; ++k) {
      state.PauseTiming();
      std::fill(evict.begin(), evict.end(), static_cast<char>(k));
      benchmark::ClobberMemory();
      state.ResumeTiming();
      if (!acc.Add(Update(k), 100.0 + k).ok()) state.SkipWithError("Add failed");
    }
    for (size_t i = 0; i < kDim; ++i) out[i] = acc.MeanAt(i);
    benchmark::DoNotOptimize(out.data());
  }
  state.counters["memory_bytes"] = static_cast<double>(acc.memory_bytes());
  state.counters["updates"] = kUpdates;
}

enum class KernelCase { kScalarIsfinite, kCheck, kFold };

// The finiteness check as it was before aggregation/kernels.h: GCC does not vectorise it.
__attribute__((noinline)) size_t ScalarFirstNonFinite(absl::Span<const float> x) {
  for (size_t i = 0; i < x.size(); ++i) {
    if (!std::isfinite(x[i])) return i;
  }
  return x.size();
}

// BM_WeightedMean as WeightedMeanAccumulator::Add was before aggregation/kernels.h (scalar check,
// then the fold loop as plain baseline code), in the same binary, so that before and after are
// measured under the same load.
void BM_WeightedMeanBefore(benchmark::State& state) {
  Pool();
  std::vector<double> sum(kDim);
  std::vector<double> out(kDim);
  for (auto _ : state) {
    std::fill(sum.begin(), sum.end(), 0.0);
    double total = 0;
    for (int k = 0; k < kUpdates; ++k) {
      const absl::Span<const float> x = Update(k);
      const double weight = 100.0 + k;
      if (ScalarFirstNonFinite(x) != x.size()) state.SkipWithError("non-finite");
      for (size_t i = 0; i < x.size(); ++i) sum[i] += weight * static_cast<double>(x[i]);
      total += weight;
    }
    for (size_t i = 0; i < kDim; ++i) out[i] = sum[i] / total;
    benchmark::DoNotOptimize(out.data());
  }
  state.counters["memory_bytes"] = static_cast<double>(kDim * sizeof(double));
  state.counters["updates"] = kUpdates;
}

void BM_Robust(benchmark::State& state, RobustRule rule) {
  Pool();
  BufferedCombiner::Options options;
  options.rule = rule;
  options.dim = kDim;
  options.max_updates = kUpdates;
  options.max_buffered_bytes = uint64_t{1} << 30;
  options.trim_beta = 0.1;
  options.num_byzantine = 10;
  options.multi_krum_m = 50;
  auto combiner = BufferedCombiner::Create(options);
  if (!combiner.ok()) {
    state.SkipWithError(combiner.status().ToString().c_str());
    return;
  }
  std::vector<double> out(kDim);
  for (auto _ : state) {
    (*combiner)->Reset();
    for (int k = 0; k < kUpdates; ++k) {
      if (!(*combiner)->Add(Update(k), 100 + k).ok()) state.SkipWithError("Add failed");
    }
    if (!(*combiner)->Combine(absl::MakeSpan(out)).ok()) state.SkipWithError("Combine failed");
    benchmark::DoNotOptimize(out.data());
  }
  state.counters["memory_bound_bytes"] = static_cast<double>((*combiner)->memory_bound_bytes());
  state.counters["updates"] = kUpdates;
}

void BM_Kernel(benchmark::State& state, KernelCase what, KernelIsa isa) {
  if (!KernelIsaAvailable(isa)) {
    state.SkipWithError("instruction set not available on this CPU");
    return;
  }
  Pool();
  std::vector<double> sum(kDim);
  size_t found = 0;
  for (auto _ : state) {
    for (int k = 0; k < kUpdates; ++k) {
      switch (what) {
        case KernelCase::kScalarIsfinite:
          found += ScalarFirstNonFinite(Update(k));
          break;
        case KernelCase::kCheck:
          found += FirstNonFiniteFor(isa, Update(k));
          break;
        case KernelCase::kFold:
          FoldWeightedFor(isa, absl::MakeSpan(sum), Update(k), 100.0 + k);
          break;
      }
    }
    benchmark::DoNotOptimize(found);
    benchmark::DoNotOptimize(sum.data());
  }
  if (what != KernelCase::kFold && found != kDim * kUpdates) state.SkipWithError("non-finite?");
  state.counters["updates"] = kUpdates;
}

BENCHMARK(BM_WeightedMean)->Unit(benchmark::kMillisecond)->Iterations(1);
BENCHMARK(BM_WeightedMeanBefore)->Unit(benchmark::kMillisecond)->Iterations(1);
BENCHMARK(BM_WeightedMeanColdCache)->Unit(benchmark::kMillisecond)->Iterations(1);
BENCHMARK_CAPTURE(BM_Kernel, scalar_isfinite_before, KernelCase::kScalarIsfinite,
                  KernelIsa::kBaseline)
    ->Unit(benchmark::kMillisecond)
    ->Iterations(1);
BENCHMARK_CAPTURE(BM_Kernel, check_baseline, KernelCase::kCheck, KernelIsa::kBaseline)
    ->Unit(benchmark::kMillisecond)
    ->Iterations(1);
BENCHMARK_CAPTURE(BM_Kernel, check_avx2, KernelCase::kCheck, KernelIsa::kAvx2)
    ->Unit(benchmark::kMillisecond)
    ->Iterations(1);
BENCHMARK_CAPTURE(BM_Kernel, fold_baseline, KernelCase::kFold, KernelIsa::kBaseline)
    ->Unit(benchmark::kMillisecond)
    ->Iterations(1);
BENCHMARK_CAPTURE(BM_Kernel, fold_avx2, KernelCase::kFold, KernelIsa::kAvx2)
    ->Unit(benchmark::kMillisecond)
    ->Iterations(1);
BENCHMARK_CAPTURE(BM_Robust, median, RobustRule::kMedian)
    ->Unit(benchmark::kMillisecond)
    ->Iterations(1);
BENCHMARK_CAPTURE(BM_Robust, trimmed_mean_beta_0_1, RobustRule::kTrimmedMean)
    ->Unit(benchmark::kMillisecond)
    ->Iterations(1);
BENCHMARK_CAPTURE(BM_Robust, multi_krum_f10_m50, RobustRule::kMultiKrum)
    ->Unit(benchmark::kMillisecond)
    ->Iterations(1);

}  // namespace
}  // namespace edgefl::aggregation

BENCHMARK_MAIN();
