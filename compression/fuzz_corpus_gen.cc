// Writes the fuzzer's seed corpus: one real encoding per chain in FuzzCorpusChains() over
// FuzzLayout(), deterministic (fixed seeds). Usage: fuzz_corpus_gen OUT_DIR
#include <cstdio>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "compression/fuzz_layout.h"
#include "compression/update_codec.h"

int main(int argc, char** argv) {
  using namespace edgefl::compression;
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s OUT_DIR\n", argv[0]);
    return 2;
  }
  const std::string dir = argv[1];
  const std::vector<TensorLayout> layout = FuzzLayout();
  std::mt19937_64 gen(2024);
  std::normal_distribution<float> dist(0.0f, 0.05f);
  std::vector<std::vector<float>> values;
  uint64_t total = 0;
  for (const TensorLayout& l : layout) {
    std::vector<float> v(l.numel);
    for (float& x : v) x = dist(gen);
    values.push_back(std::move(v));
    total += l.numel;
  }
  std::vector<TensorView> views;
  for (size_t t = 0; t < layout.size(); ++t) views.push_back({layout[t].name, values[t]});

  const std::vector<std::string> chains = FuzzCorpusChains();
  for (size_t i = 0; i < chains.size(); ++i) {
    auto spec = ParseChain(chains[i]);
    if (!spec.ok()) {
      std::fprintf(stderr, "%s\n", spec.status().ToString().c_str());
      return 1;
    }
    ErrorFeedback ef(total);
    auto enc = EncodeUpdate(*spec, views, &ef, /*seed=*/i);
    if (!enc.ok()) {
      std::fprintf(stderr, "%s\n", enc.status().ToString().c_str());
      return 1;
    }
    std::string name = chains[i];
    for (char& c : name) {
      if (c == '|') c = '_';
      if (c == ':') c = '-';
    }
    const std::string path = dir + "/seed_" + std::to_string(i) + "_" + name + ".bin";
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(enc->data(), static_cast<std::streamsize>(enc->size()));
    if (!out.good()) {
      std::fprintf(stderr, "cannot write %s\n", path.c_str());
      return 1;
    }
    std::printf("%s %zu bytes\n", path.c_str(), enc->size());
  }
  return 0;
}
