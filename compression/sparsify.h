// Sparsifiers: pure functions that pick which entries of a float span are sent.
//
// All functions are thread-compatible (no shared state), allocate only their outputs, and return
// indices in strictly increasing order, so callers can encode them as deltas directly.
// Inputs must not contain NaN (EncodeUpdate rejects NaN/Inf before it calls these); with NaN the
// result is still well defined (NaN ranks above +-Inf) but meaningless.
#ifndef EDGEFL_COMPRESSION_SPARSIFY_H_
#define EDGEFL_COMPRESSION_SPARSIFY_H_

#include <cstdint>
#include <vector>

#include "absl/types/span.h"
#include "compression/random.h"

namespace edgefl::compression {

// Magnitude pruning / top-k: the indices of the min(k, x.size()) entries with the largest |x|.
// Ties at the threshold magnitude go to the lowest indices, so exactly k indices come back.
// x.size() must be < 2^32. O(n) expected time (nth_element on a copy of the magnitudes).
// `out` is overwritten; `scratch` (may be null) is reused to avoid allocation.
void TopKIndices(absl::Span<const float> x, uint64_t k, std::vector<uint32_t>* out,
                 std::vector<uint32_t>* scratch = nullptr);
std::vector<uint32_t> TopKIndices(absl::Span<const float> x, uint64_t k);

// Global top-k over several tensors seen as one concatenated vector: exactly min(k, total)
// indices overall, returned per tensor as tensor-local indices (out->size() == tensors.size()).
// Ties go to the lowest flat index. Each tensor must have < 2^32 entries.
void GlobalTopKIndices(absl::Span<const absl::Span<const float>> tensors, uint64_t k,
                       std::vector<std::vector<uint32_t>>* out);

// Random-k: min(k, n) distinct indices drawn uniformly without replacement from [0, n)
// (selection sampling, Knuth's Algorithm S: O(n) draws, output already sorted). Deterministic
// for a given rng state; advances `rng`. n must be < 2^32.
void RandomKIndices(uint64_t n, uint64_t k, SplitMix64& rng, std::vector<uint32_t>* out);

}  // namespace edgefl::compression

#endif  // EDGEFL_COMPRESSION_SPARSIFY_H_
