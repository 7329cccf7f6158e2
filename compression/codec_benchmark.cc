// Throughput of EncodeUpdate / DecodeUpdate per codec chain on the FedAvg CNN layout
// (1,663,370 floats). "bytes_per_second" counts float32 INPUT bytes (4 per model value), for
// encode and decode alike; the counters give the encoded size and its ratio to dense float32.
//
//   codec_benchmark [--benchmark_filter=...] [--benchmark_min_time=...]
#include <random>
#include <string>
#include <vector>

#include "benchmark/benchmark.h"
#include "compression/update_codec.h"

namespace edgefl::compression {
namespace {

const std::vector<TensorLayout>& CnnLayout() {
  static const auto* layout = new std::vector<TensorLayout>{
      {"conv1.weight", 800},   {"conv1.bias", 32}, {"conv2.weight", 51200}, {"conv2.bias", 64},
      {"fc1.weight", 1605632}, {"fc1.bias", 512},  {"fc2.weight", 5120},    {"fc2.bias", 10}};
  return *layout;
}

struct Delta {
  std::vector<std::vector<float>> values;
  std::vector<TensorView> views;
  uint64_t total = 0;
};

const Delta& CnnDelta() {
  static const Delta* delta = [] {
    auto* d = new Delta;
    std::mt19937_64 gen(1);
    std::normal_distribution<float> dist(0.0f, 0.01f);
    for (const TensorLayout& l : CnnLayout()) {
      std::vector<float> v(l.numel);
      for (float& x : v) x = dist(gen);
      d->values.push_back(std::move(v));
      d->total += l.numel;
    }
    for (size_t t = 0; t < CnnLayout().size(); ++t) {
      d->views.push_back({CnnLayout()[t].name, d->values[t]});
    }
    return d;
  }();
  return *delta;
}

void SetCounters(benchmark::State& state, size_t encoded_bytes, uint64_t total) {
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) *
                          static_cast<int64_t>(total * sizeof(float)));
  state.counters["encoded_bytes"] = static_cast<double>(encoded_bytes);
  state.counters["ratio_vs_fp32"] =
      static_cast<double>(encoded_bytes) / static_cast<double>(total * sizeof(float));
}

void BM_Encode(benchmark::State& state, const std::string& chain) {
  const ChainSpec spec = *ParseChain(chain);
  const Delta& d = CnnDelta();
  ErrorFeedback ef(d.total);
  size_t bytes = 0;
  uint64_t seed = 0;
  for (auto _ : state) {
    auto enc = EncodeUpdate(spec, d.views, &ef, seed++);
    if (!enc.ok()) {
      state.SkipWithError(std::string(enc.status().message()).c_str());
      return;
    }
    bytes = enc->size();
    benchmark::DoNotOptimize(enc->data());
  }
  SetCounters(state, bytes, d.total);
}

// The server path: validate, then fold into a double accumulator with a weight.
void BM_DecodeAccumulate(benchmark::State& state, const std::string& chain) {
  const ChainSpec spec = *ParseChain(chain);
  const Delta& d = CnnDelta();
  ErrorFeedback ef(d.total);
  const std::string enc = *EncodeUpdate(spec, d.views, &ef, 1);
  std::vector<double> sum(d.total, 0.0);
  const DecodeOptions options{spec};
  for (auto _ : state) {
    WeightedAddSink sink(absl::MakeSpan(sum), 0.5);
    absl::Status s = DecodeUpdate(enc, CnnLayout(), &sink, options);
    if (!s.ok()) {
      state.SkipWithError(std::string(s.message()).c_str());
      return;
    }
    benchmark::DoNotOptimize(sum.data());
  }
  SetCounters(state, enc.size(), d.total);
}

void BM_DecodeToDense(benchmark::State& state, const std::string& chain) {
  const ChainSpec spec = *ParseChain(chain);
  const Delta& d = CnnDelta();
  ErrorFeedback ef(d.total);
  const std::string enc = *EncodeUpdate(spec, d.views, &ef, 1);
  std::vector<float> out;
  for (auto _ : state) {
    absl::Status s = DecodeToDense(enc, CnnLayout(), &out);
    if (!s.ok()) {
      state.SkipWithError(std::string(s.message()).c_str());
      return;
    }
    benchmark::DoNotOptimize(out.data());
  }
  SetCounters(state, enc.size(), d.total);
}

const std::vector<std::string>& Chains() {
  static const auto* chains = new std::vector<std::string>{"dense",
                                                           "fp16",
                                                           "int8",
                                                           "int8:b256",
                                                           "int8:sr",
                                                           "q4",
                                                           "q4:b64",
                                                           "int8|ef",
                                                           "topk:0.01|int8|ef",
                                                           "topk:0.01|int8",
                                                           "topk:0.01|q4|ef",
                                                           "topk:0.005|q4|ef",
                                                           "topk:0.02|q4|ef",
                                                           "topk:0.1|int8|ef",
                                                           "randk:0.1",
                                                           "randk:0.1|int8",
                                                           "topk_global:0.01|int8|ef"};
  return *chains;
}

}  // namespace
}  // namespace edgefl::compression

int main(int argc, char** argv) {
  using namespace edgefl::compression;
  for (const std::string& chain : Chains()) {
    benchmark::RegisterBenchmark(("Encode/" + chain).c_str(), BM_Encode, chain)
        ->Unit(benchmark::kMillisecond);
    benchmark::RegisterBenchmark(("DecodeAccumulate/" + chain).c_str(), BM_DecodeAccumulate, chain)
        ->Unit(benchmark::kMillisecond);
    benchmark::RegisterBenchmark(("DecodeToDense/" + chain).c_str(), BM_DecodeToDense, chain)
        ->Unit(benchmark::kMillisecond);
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
