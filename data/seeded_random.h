// Portable seeded shuffling for models/ (std::shuffle and std::uniform_int_distribution are
// implementation-defined, so the same seed could give other permutations on another standard
// library; these helpers depend only on std::mt19937_64, whose output is fixed by the standard).
#ifndef EDGEFL_DATA_SEEDED_RANDOM_H_
#define EDGEFL_DATA_SEEDED_RANDOM_H_

#include <cstdint>
#include <random>
#include <utility>
#include <vector>

namespace edgefl::data {

// Uniform integer in [0, n) for n >= 1, unbiased (rejection sampling).
inline uint64_t UniformBelow(uint64_t n, std::mt19937_64& rng) {
  const uint64_t limit = std::mt19937_64::max() - (std::mt19937_64::max() % n + 1) % n;
  uint64_t x;
  do {
    x = rng();
  } while (x > limit);
  return x % n;
}

// Fisher-Yates shuffle of `v` driven by `rng`.
template <typename T>
void SeededShuffle(std::vector<T>& v, std::mt19937_64& rng) {
  for (size_t i = v.size(); i > 1; --i) {
    using std::swap;
    swap(v[i - 1], v[UniformBelow(i, rng)]);
  }
}

// 0, 1, ..., n-1 in a random order drawn from `rng`.
inline std::vector<int64_t> SeededPermutation(int64_t n, std::mt19937_64& rng) {
  std::vector<int64_t> p(n > 0 ? n : 0);
  for (int64_t i = 0; i < n; ++i) p[i] = i;
  SeededShuffle(p, rng);
  return p;
}

}  // namespace edgefl::data

#endif  // EDGEFL_DATA_SEEDED_RANDOM_H_
