// The codec chain named in a round's config, e.g. "topk:0.01|int8|ef", "int8", "fp16",
// "randk:0.1", "q4", "dense".
//
// Grammar (stages separated by '|', ASCII whitespace around a stage is ignored, lowercase only):
//   chain       := "dense" | stage ("|" stage)*
//   stage       := sparsifier | quantizer | "ef"
//   sparsifier  := "topk:" FRACTION            keep the round(FRACTION * numel) largest
//                                              magnitudes of every tensor (see KeptCount)
//                | "topk_global:" (K | FRACTION) keep the K (or round(FRACTION * model size))
//                                              largest magnitudes over the whole update
//                | "randk:" FRACTION           keep round(FRACTION * numel) uniformly random
//                                              entries of every tensor (no rescaling)
//   quantizer   := "fp32"                      raw float32 (the default)
//                | "fp16" [":sr"]              IEEE binary16, round-to-nearest-even or stochastic
//                | ("int8" | "q4") {":b" B | ":sr"}
//                                              symmetric integer levels [-127,127] or [-7,7] with
//                                              one float32 scale per tensor, or per block of B
//                                              consecutive (kept) values; nearest or stochastic
//   "ef"                                       error feedback (the client keeps the residual)
//   FRACTION    := decimal in (0, 1];  K := decimal integer >= 1;  B := integer in [1, 2^24]
// Each kind of stage appears at most once, in any order; "dense" only stands alone (it means
// "no sparsifier, fp32, no ef", which is also what an empty ChainSpec is).
//
// ToString() gives the canonical form (sparsifier|quantizer[:bB][:sr]|ef, "fp32" omitted, "dense"
// when nothing is set); ParseChain(ToString(c)) == c for every valid c.
#ifndef EDGEFL_COMPRESSION_CHAIN_H_
#define EDGEFL_COMPRESSION_CHAIN_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace edgefl::compression {

enum class Sparsifier : uint8_t { kNone = 0, kTopK = 1, kTopKGlobal = 2, kRandK = 3 };

// The value codecs. The numeric values are the codec ids on the wire (see update_codec.h).
enum class Quantizer : uint8_t { kFp32 = 0, kFp16 = 1, kInt8 = 2, kQ4 = 3 };

inline constexpr uint32_t kMaxBlockSize = 1u << 24;

struct ChainSpec {
  Sparsifier sparsifier = Sparsifier::kNone;
  // kTopK / kRandK: the kept fraction in (0, 1]. kTopKGlobal: the fraction of the whole update
  // when global_k == 0.
  double fraction = 0.0;
  // kTopKGlobal only: an absolute number of kept entries (>= 1); 0 means "use fraction".
  uint64_t global_k = 0;

  Quantizer quantizer = Quantizer::kFp32;
  // kInt8 / kQ4 only: one scale per block of this many consecutive (kept) values of a tensor;
  // 0 means one scale for the whole tensor.
  uint32_t block_size = 0;
  // Stochastic (unbiased) rounding instead of round-to-nearest; kFp16 / kInt8 / kQ4 only.
  bool stochastic = false;

  bool error_feedback = false;

  // Canonical text; see the grammar above.
  std::string ToString() const;

  bool operator==(const ChainSpec& o) const {
    return sparsifier == o.sparsifier && fraction == o.fraction && global_k == o.global_k &&
           quantizer == o.quantizer && block_size == o.block_size && stochastic == o.stochastic &&
           error_feedback == o.error_feedback;
  }
  bool operator!=(const ChainSpec& o) const { return !(*this == o); }
};

// Parses a chain. INVALID_ARGUMENT, with a message naming the offending stage, for unknown
// stages, bad or out-of-range numbers, repeated stage kinds, options a quantizer does not take,
// or empty stages. Thread-safe (pure).
absl::StatusOr<ChainSpec> ParseChain(absl::string_view text);

// Checks the invariants ParseChain guarantees (ranges, options allowed per quantizer) on a spec
// built in code. INVALID_ARGUMENT on violation.
absl::Status ValidateChain(const ChainSpec& spec);

// Number of entries a fraction keeps out of n: round-half-away(fraction * n) clamped to [1, n];
// 0 when n == 0. Used by topk, randk and topk_global's fraction form, and checked by the decoder.
uint64_t KeptCount(double fraction, uint64_t n);

// Total entries topk_global keeps out of a model of `total` entries (0 for other sparsifiers).
uint64_t GlobalKeptCount(const ChainSpec& spec, uint64_t total);

// Bits per value on the wire for a quantizer: 32, 16, 8 or 4.
int QuantizerBits(Quantizer q);

}  // namespace edgefl::compression

#endif  // EDGEFL_COMPRESSION_CHAIN_H_
