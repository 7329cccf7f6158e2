#include "compression/quantize.h"

#include <algorithm>
#include <cmath>

#include "common/float_bits.h"

namespace edgefl::compression {
namespace {

// Round-to-nearest-even for |r| < 2^22 without libm (vectorizes with plain SSE2 / NEON).
// Relies on IEEE semantics: this library is never built with -ffast-math.
inline float RoundNearestEven(float r) {
  constexpr float kMagic = 12582912.0f;  // 1.5 * 2^23
  return (r + kMagic) - kMagic;
}

// Half bit pattern of the next representable half above / below h (h finite).
inline uint16_t HalfNextUp(uint16_t h) {
  if ((h & 0x8000u) == 0) return static_cast<uint16_t>(h + 1);
  if (h == 0x8000u) return 0x0001u;
  return static_cast<uint16_t>(h - 1);
}
inline uint16_t HalfNextDown(uint16_t h) {
  if ((h & 0x8000u) != 0) return static_cast<uint16_t>(h + 1);
  if (h == 0) return 0x8001u;
  return static_cast<uint16_t>(h - 1);
}

inline float Saturate(float x, float limit) { return std::min(std::max(x, -limit), limit); }

}  // namespace

// After F. Giesen's float_to_half_fast3_rtne (public domain).
uint16_t FloatToHalf(float x) {
  uint32_t f = FloatToBits(x);
  const uint32_t sign = f & 0x80000000u;
  f ^= sign;
  uint16_t o;
  if (f > 0x7F800000u) {
    o = 0x7E00u;  // NaN
  } else if (f == 0x7F800000u) {
    o = 0x7C00u;  // Inf
  } else if (f >= 0x477FF000u) {
    o = 0x7BFFu;  // >= 65520 would round to Inf: saturate to 65504
  } else if (f < (113u << 23)) {
    // Subnormal half or zero: adding 0.5 aligns the 10 mantissa bits at the bottom of the float;
    // the FPU rounds to nearest even.
    const float magic = 0.5f;
    float a = BitsToFloat(f) + magic;
    o = static_cast<uint16_t>(FloatToBits(a) - FloatToBits(magic));
  } else {
    const uint32_t mant_odd = (f >> 13) & 1u;
    f += (static_cast<uint32_t>(15 - 127) << 23) + 0xFFFu;
    f += mant_odd;
    o = static_cast<uint16_t>(f >> 13);
  }
  return static_cast<uint16_t>(o | (sign >> 16));
}

// After F. Giesen's half_to_float (public domain).
float HalfToFloat(uint16_t h) {
  const uint32_t shifted_exp = 0x7C00u << 13;
  uint32_t o = (static_cast<uint32_t>(h) & 0x7FFFu) << 13;
  const uint32_t exp = shifted_exp & o;
  o += static_cast<uint32_t>(127 - 15) << 23;
  float result;
  if (exp == shifted_exp) {
    o += static_cast<uint32_t>(128 - 16) << 23;  // Inf / NaN
    result = BitsToFloat(o);
  } else if (exp == 0) {
    o += 1u << 23;  // zero / subnormal: renormalize
    result = BitsToFloat(o) - BitsToFloat(113u << 23);
  } else {
    result = BitsToFloat(o);
  }
  return BitsToFloat(FloatToBits(result) | ((static_cast<uint32_t>(h) & 0x8000u) << 16));
}

uint16_t FloatToHalfStochastic(float x, float u) {
  x = Saturate(x, kHalfMax);
  const uint16_t h = FloatToHalf(x);
  const float a = HalfToFloat(h);
  if (a == x) return h;
  uint16_t lo, hi;
  if (a < x) {
    lo = h;
    hi = HalfNextUp(h);
  } else {
    hi = h;
    lo = HalfNextDown(h);
  }
  const double lf = HalfToFloat(lo), hf = HalfToFloat(hi);
  const double p_up = (static_cast<double>(x) - lf) / (hf - lf);
  return static_cast<double>(u) < p_up ? hi : lo;
}

void EncodeHalf(const float* x, size_t n, SplitMix64* rng, uint8_t* out) {
  if (rng == nullptr) {
    for (size_t i = 0; i < n; ++i) {
      const uint16_t h = FloatToHalf(x[i]);
      out[2 * i] = static_cast<uint8_t>(h);
      out[2 * i + 1] = static_cast<uint8_t>(h >> 8);
    }
  } else {
    for (size_t i = 0; i < n; ++i) {
      const uint16_t h = FloatToHalfStochastic(x[i], rng->NextUnitFloat());
      out[2 * i] = static_cast<uint8_t>(h);
      out[2 * i + 1] = static_cast<uint8_t>(h >> 8);
    }
  }
}

void DecodeHalf(const uint8_t* in, size_t n, float* out) {
  for (size_t i = 0; i < n; ++i) {
    const uint16_t h = static_cast<uint16_t>(in[2 * i] | (in[2 * i + 1] << 8));
    out[i] = HalfToFloat(h);
  }
}

void ComputeScales(const float* x, size_t n, int qmax, uint32_t block, float* scales) {
  if (n == 0) return;
  const size_t b = block == 0 ? n : block;
  const float levels = static_cast<float>(qmax);
  for (size_t start = 0, s = 0; start < n; start += b, ++s) {
    const size_t end = std::min(n, start + b);
    float m = 0.0f;
    for (size_t i = start; i < end; ++i) m = std::max(m, std::fabs(x[i]));
    float scale = m / levels;
    scales[s] = std::min(std::max(scale, kMinScale), kMaxScale);
  }
}

void QuantizeSymmetric(const float* x, size_t n, const float* scales, uint32_t block, int qmax,
                       SplitMix64* rng, int8_t* q) {
  if (n == 0) return;
  const size_t b = block == 0 ? n : block;
  const float fmax = static_cast<float>(qmax);
  for (size_t start = 0, s = 0; start < n; start += b, ++s) {
    const size_t end = std::min(n, start + b);
    const float scale = scales[s];
    if (rng == nullptr) {
      for (size_t i = start; i < end; ++i) {
        // Division (not multiplication by 1/scale) keeps the nearest-level guarantee exact.
        float r = RoundNearestEven(Saturate(x[i] / scale, fmax));
        q[i] = static_cast<int8_t>(static_cast<int>(r));
      }
    } else {
      for (size_t i = start; i < end; ++i) {
        const float r = Saturate(x[i] / scale, fmax);
        float fl = RoundNearestEven(r);
        if (fl > r) fl -= 1.0f;                // floor(r)
        const float frac = r - fl;             // in [0, 1)
        const float u = rng->NextUnitFloat();  // in [0, 1)
        float level = fl + (u < frac ? 1.0f : 0.0f);
        level = Saturate(level, fmax);
        q[i] = static_cast<int8_t>(static_cast<int>(level));
      }
    }
  }
}

void DequantizeSymmetricRange(const int8_t* q, size_t first, size_t n, const float* scales,
                              uint32_t block, float* out) {
  if (n == 0) return;
  if (block == 0) {
    const float scale = scales[0];
    for (size_t i = 0; i < n; ++i) out[i] = static_cast<float>(q[i]) * scale;
    return;
  }
  size_t i = 0;
  while (i < n) {
    const size_t pos = first + i;
    const size_t s = pos / block;
    const size_t run = std::min<size_t>(n - i, (s + 1) * static_cast<size_t>(block) - pos);
    const float scale = scales[s];
    for (size_t j = 0; j < run; ++j) out[i + j] = static_cast<float>(q[i + j]) * scale;
    i += run;
  }
}

void DequantizeSymmetric(const int8_t* q, size_t n, const float* scales, uint32_t block,
                         float* out) {
  DequantizeSymmetricRange(q, 0, n, scales, block, out);
}

void PackInt4(const int8_t* q, size_t n, uint8_t* out) {
  const size_t pairs = n / 2;
  for (size_t i = 0; i < pairs; ++i) {
    out[i] = static_cast<uint8_t>((static_cast<uint8_t>(q[2 * i]) & 0x0Fu) |
                                  ((static_cast<uint8_t>(q[2 * i + 1]) & 0x0Fu) << 4));
  }
  if (n % 2 != 0) out[pairs] = static_cast<uint8_t>(q[n - 1]) & 0x0Fu;
}

void UnpackInt4(const uint8_t* in, size_t n, int8_t* out) {
  const size_t pairs = n / 2;
  for (size_t i = 0; i < pairs; ++i) {
    const uint8_t b = in[i];
    out[2 * i] = static_cast<int8_t>(static_cast<int8_t>(b << 4) >> 4);
    out[2 * i + 1] = static_cast<int8_t>(static_cast<int8_t>(b) >> 4);
  }
  if (n % 2 != 0) {
    out[n - 1] = static_cast<int8_t>(static_cast<int8_t>(in[pairs] << 4) >> 4);
  }
}

}  // namespace edgefl::compression
