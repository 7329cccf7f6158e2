// Time per aggregation of 100 updates of the FedAvg CNN (1,663,370 floats) through the streaming
// weighted mean and the buffered robust combiners. One iteration = fold/copy in all 100 updates
// and produce the combined update (double, as the server optimizer takes it). The counters give
// each combiner's memory bound (robust.h) or the accumulator's fixed memory.
//
// The machine is shared: by default each benchmark runs one iteration.
//   combiner_benchmark [--benchmark_filter=...]
#include <cstdint>
#include <random>
#include <vector>

#include "aggregation/accumulator.h"
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

BENCHMARK(BM_WeightedMean)->Unit(benchmark::kMillisecond)->Iterations(1);
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
