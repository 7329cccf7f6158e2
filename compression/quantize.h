// Quantizers: pure functions from float spans to packed low-precision values and back.
//
// All functions are thread-compatible (no shared state) and never allocate. Pointer arguments
// must point at the documented number of elements; sizes are not re-checked (the callers in
// update_codec.cc validate them first).
//
// Reconstruction is bit-exact and platform independent: Dequantize* is the one definition of
// "what the receiver gets", used both by the decoder and by the encoder when it computes the
// error-feedback residual (this file is compiled with -ffp-contract=off so no FMA changes it).
#ifndef EDGEFL_COMPRESSION_QUANTIZE_H_
#define EDGEFL_COMPRESSION_QUANTIZE_H_

#include <cstddef>
#include <cstdint>

#include "absl/types/span.h"
#include "compression/random.h"

namespace edgefl::compression {

// ---- fp16 (IEEE 754 binary16) ----------------------------------------------------------------

inline constexpr float kHalfMax = 65504.0f;

// Round-to-nearest-even conversion. Finite values beyond +-65504 are saturated to +-65504
// (not Inf); NaN maps to a quiet NaN and +-Inf to +-Inf (the encoder rejects both earlier).
uint16_t FloatToHalf(float x);
// Exact widening conversion (every half is a float).
float HalfToFloat(uint16_t h);
// Stochastic rounding to one of the two halves around x (after saturating to +-65504), choosing
// the upper one with probability (x - lo) / (hi - lo) compared against `u` in [0, 1): unbiased,
// E[HalfToFloat(result)] == x up to the 2^-24 resolution of u.
uint16_t FloatToHalfStochastic(float x, float u);
// True for the bit patterns of +-Inf and NaN (exponent all ones): invalid on the wire.
inline bool HalfIsNonFinite(uint16_t h) { return (h & 0x7C00u) == 0x7C00u; }

// Encodes n values to little-endian binary16 (2 bytes each) at `out`. With rng != null rounding
// is stochastic and draws one number per value from *rng.
void EncodeHalf(const float* x, size_t n, SplitMix64* rng, uint8_t* out);
// Decodes n binary16 values. The caller has checked that none is non-finite.
void DecodeHalf(const uint8_t* in, size_t n, float* out);

// ---- symmetric integer quantization (int8 and 4-bit) -----------------------------------------
//
// Value i of a block with scale s is sent as an integer q in [-qmax, qmax] and received as
// float(q) * s (float multiply). qmax is 127 for int8 and 7 for q4. Scales are positive, finite
// and within [kMinScale, kMaxScale], so every reconstruction is finite.
// Deterministic rounding picks the nearest level (ties to even): |x - q*s| <= s/2 (plus float
// rounding of the division, < 2^-23 |x|), and x - q*s is exact in float (Sterbenz), which is what
// makes error feedback exact. Stochastic rounding picks floor or ceil of x/s with probabilities
// that make E[q*s] == x (to 2^-24 of a step).

inline constexpr float kMinScale = 0x1.0p-126f;  // FLT_MIN
inline constexpr float kMaxScale = 0x1.0p+121f;  // 127 * kMaxScale = 2^128 - 2^121 < FLT_MAX

inline constexpr int kInt8Max = 127;
inline constexpr int kInt4Max = 7;

// Number of scales for n values with the given block size (0 = one scale for all, or none when
// n == 0): ceil(n / block).
inline size_t NumScales(size_t n, uint32_t block) {
  if (n == 0) return 0;
  if (block == 0) return 1;
  return (n + block - 1) / block;
}

// scales[b] = clamp(max_{i in block b} |x_i| / qmax, kMinScale, kMaxScale); `scales` has
// NumScales(n, block) entries. x must be finite.
void ComputeScales(const float* x, size_t n, int qmax, uint32_t block, float* scales);

// q[i] = the level of x[i] in its block (see above). x must be finite; scales from ComputeScales
// (or any valid scales). With rng != null rounding is stochastic (one draw per value).
void QuantizeSymmetric(const float* x, size_t n, const float* scales, uint32_t block, int qmax,
                       SplitMix64* rng, int8_t* q);

// out[i] = float(q[i]) * scale of its block.
void DequantizeSymmetric(const int8_t* q, size_t n, const float* scales, uint32_t block,
                         float* out);

// Packs n 4-bit two's-complement values (each in [-8, 7]) two per byte, low nibble first;
// ceil(n/2) bytes, an unused high nibble is zero.
void PackInt4(const int8_t* q, size_t n, uint8_t* out);
// Inverse of PackInt4 (sign-extends each nibble).
void UnpackInt4(const uint8_t* in, size_t n, int8_t* out);

// Exact reconstruction for one block size / scale layout, starting at value `first` of a
// tensor's value sequence; used by the streaming decoder. Equivalent to DequantizeSymmetric on
// the sub-range.
void DequantizeSymmetricRange(const int8_t* q, size_t first, size_t n, const float* scales,
                              uint32_t block, float* out);

}  // namespace edgefl::compression

#endif  // EDGEFL_COMPRESSION_QUANTIZE_H_
