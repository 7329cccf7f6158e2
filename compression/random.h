// Deterministic, seedable random numbers for the codecs (random-k selection and stochastic
// rounding). Results are reproducible across platforms: only integer arithmetic is used.
#ifndef EDGEFL_COMPRESSION_RANDOM_H_
#define EDGEFL_COMPRESSION_RANDOM_H_

#include <cstdint>

namespace edgefl::compression {

// SplitMix64 (Steele, Lea, Flood 2014): a tiny, fast generator with good statistical quality
// for this use. Value type; copyable; not thread-safe (each thread uses its own instance).
class SplitMix64 {
 public:
  explicit SplitMix64(uint64_t seed) : state_(seed) {}

  // The independent stream for (seed, tensor_index, purpose): the codecs use purpose 0 for
  // random-k selection and 1 for stochastic rounding, so the two never share draws.
  static SplitMix64 ForStream(uint64_t seed, uint64_t tensor_index, uint64_t purpose) {
    SplitMix64 mix(seed);
    uint64_t s = mix.Next();
    s ^= Mix(tensor_index * 0x9E3779B97F4A7C15ULL + 0x632BE59BD9B4E019ULL);
    s ^= Mix(purpose + 0xD1B54A32D192ED03ULL);
    return SplitMix64(s);
  }

  uint64_t Next() {
    state_ += 0x9E3779B97F4A7C15ULL;
    return Mix(state_);
  }

  // Uniform in [0, 1) with 24 random bits (exactly representable as float).
  float NextUnitFloat() { return static_cast<float>(Next() >> 40) * 0x1.0p-24f; }

  // Uniform in [0, 1) with 53 random bits.
  double NextUnitDouble() { return static_cast<double>(Next() >> 11) * 0x1.0p-53; }

 private:
  static uint64_t Mix(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
  }

  uint64_t state_;
};

}  // namespace edgefl::compression

#endif  // EDGEFL_COMPRESSION_RANDOM_H_
