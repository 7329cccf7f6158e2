#include "compression/quantize.h"

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace edgefl::compression {
namespace {

std::vector<float> RandomFloats(size_t n, uint64_t seed, float scale = 1.0f) {
  std::mt19937_64 gen(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> x(n);
  for (float& v : x) v = dist(gen);
  return x;
}

TEST(Fp16, EveryFiniteHalfRoundTrips) {
  for (uint32_t h = 0; h <= 0xFFFF; ++h) {
    const uint16_t hh = static_cast<uint16_t>(h);
    if (HalfIsNonFinite(hh)) continue;
    const float f = HalfToFloat(hh);
    ASSERT_TRUE(std::isfinite(f)) << h;
    EXPECT_EQ(FloatToHalf(f), hh) << "half 0x" << std::hex << h;
  }
  EXPECT_EQ(HalfToFloat(0x3C00), 1.0f);
  EXPECT_EQ(HalfToFloat(0xC000), -2.0f);
  EXPECT_EQ(HalfToFloat(0x0001), 0x1.0p-24f);  // smallest subnormal
  EXPECT_EQ(HalfToFloat(0x7BFF), 65504.0f);
  EXPECT_TRUE(std::isinf(HalfToFloat(0x7C00)));
  EXPECT_TRUE(std::isnan(HalfToFloat(0x7E00)));
}

TEST(Fp16, RoundsToNearestEvenAndSaturates) {
  std::mt19937_64 gen(7);
  std::uniform_real_distribution<float> mant(1.0f, 2.0f);
  std::uniform_int_distribution<int> ex(-30, 15);
  for (int i = 0; i < 200000; ++i) {
    const float x = std::ldexp(mant(gen), ex(gen)) * (i % 2 ? -1.0f : 1.0f);
    const uint16_t h = FloatToHalf(x);
    const double got = HalfToFloat(h);
    // The neighbours of the result are not closer to x.
    const uint16_t up = static_cast<uint16_t>(h + 1), down = static_cast<uint16_t>(h - 1);
    for (uint16_t n : {up, down}) {
      if (HalfIsNonFinite(n) || (n & 0x7FFF) == 0x7FFF || ((h & 0x7FFF) == 0 && n == down)) {
        continue;
      }
      const double other = HalfToFloat(n);
      ASSERT_LE(std::fabs(got - x), std::fabs(other - x)) << x;
      if (std::fabs(got - x) == std::fabs(other - x)) {
        ASSERT_EQ(h & 1, 0) << "tie not to even";
      }
    }
  }
  EXPECT_EQ(FloatToHalf(1e6f), 0x7BFF);
  EXPECT_EQ(FloatToHalf(-1e30f), 0xFBFF);
  EXPECT_EQ(FloatToHalf(65519.0f), 0x7BFF);
  EXPECT_EQ(FloatToHalf(1.0f + 0x1.0p-11f), 0x3C00);  // tie -> even
  EXPECT_EQ(FloatToHalf(1.0f + 0x1.8p-10f), 0x3C02);  // tie -> even (upward)
  EXPECT_EQ(FloatToHalf(0x1.0p-25f), 0x0000);         // half of the smallest subnormal -> 0
  EXPECT_EQ(FloatToHalf(0x1.8p-25f), 0x0001);
}

TEST(Fp16, StochasticRoundingIsUnbiased) {
  SplitMix64 rng(3);
  for (float x : {1.0001f, -3.14159f, 1e-6f, 65500.3f, 0.33333f}) {
    const int kDraws = 200000;
    double sum = 0;
    int distinct_up = 0;
    const float nearest = HalfToFloat(FloatToHalf(x));
    for (int i = 0; i < kDraws; ++i) {
      const float d = HalfToFloat(FloatToHalfStochastic(x, rng.NextUnitFloat()));
      sum += d;
      distinct_up += d != nearest;
    }
    const double mean = sum / kDraws;
    const double step = std::fabs(
        HalfToFloat(static_cast<uint16_t>(FloatToHalf(std::fabs(x)) + 1)) - std::fabs(nearest));
    EXPECT_NEAR(mean, x, 5 * step / std::sqrt(static_cast<double>(kDraws))) << x;
    EXPECT_GT(distinct_up, 0) << "never rounded the other way: " << x;
  }
  // A value that is exactly a half never moves.
  for (int i = 0; i < 100; ++i) {
    EXPECT_EQ(FloatToHalfStochastic(1.5f, rng.NextUnitFloat()), FloatToHalf(1.5f));
  }
}

void CheckDeterministicHalfStep(int qmax, uint32_t block) {
  const std::vector<float> x = RandomFloats(5000, 11 + qmax + block, 0.01f);
  std::vector<float> scales(NumScales(x.size(), block));
  ComputeScales(x.data(), x.size(), qmax, block, scales.data());
  std::vector<int8_t> q(x.size());
  QuantizeSymmetric(x.data(), x.size(), scales.data(), block, qmax, nullptr, q.data());
  std::vector<float> d(x.size());
  DequantizeSymmetric(q.data(), q.size(), scales.data(), block, d.data());
  const size_t b = block == 0 ? x.size() : block;
  for (size_t i = 0; i < x.size(); ++i) {
    const float s = scales[i / b];
    ASSERT_GE(q[i], -qmax);
    ASSERT_LE(q[i], qmax);
    // Half a step, plus the rounding of the float division (a few ulps of x).
    ASSERT_LE(std::fabs(x[i] - d[i]),
              0.5f * s + 4 * std::numeric_limits<float>::epsilon() * std::fabs(x[i]))
        << "i=" << i << " qmax=" << qmax << " block=" << block;
    // The residual is exact: d + (x - d) == x in float.
    ASSERT_EQ((x[i] - d[i]) + d[i], x[i]);
  }
  // The largest magnitude of each block hits the extreme level.
  for (size_t start = 0; start < x.size(); start += b) {
    int extreme = 0;
    for (size_t i = start; i < std::min(x.size(), start + b); ++i) {
      extreme = std::max(extreme, std::abs(static_cast<int>(q[i])));
    }
    EXPECT_EQ(extreme, qmax);
  }
}

TEST(IntQuant, DeterministicErrorWithinHalfStep) {
  for (int qmax : {kInt8Max, kInt4Max}) {
    for (uint32_t block : {0u, 1u, 7u, 64u, 256u, 4096u}) CheckDeterministicHalfStep(qmax, block);
  }
}

TEST(IntQuant, StochasticRoundingIsUnbiased) {
  // Fixed inputs, many independent draws: the mean reconstruction error goes to zero.
  for (int qmax : {kInt8Max, kInt4Max}) {
    const std::vector<float> x = RandomFloats(64, 5, 1.0f);
    std::vector<float> scales(1);
    ComputeScales(x.data(), x.size(), qmax, 0, scales.data());
    const float s = scales[0];
    const int kDraws = 20000;
    std::vector<double> err_sum(x.size(), 0.0);
    std::vector<int8_t> q(x.size());
    std::vector<float> d(x.size());
    SplitMix64 rng(99);
    for (int k = 0; k < kDraws; ++k) {
      QuantizeSymmetric(x.data(), x.size(), scales.data(), 0, qmax, &rng, q.data());
      DequantizeSymmetric(q.data(), q.size(), scales.data(), 0, d.data());
      for (size_t i = 0; i < x.size(); ++i) {
        // Never further than one step.
        ASSERT_LT(std::fabs(d[i] - x[i]), s * (1 + 1e-6f));
        err_sum[i] += static_cast<double>(d[i]) - x[i];
      }
    }
    double worst = 0, total = 0;
    for (size_t i = 0; i < x.size(); ++i) {
      worst = std::max(worst, std::fabs(err_sum[i] / kDraws));
      total += err_sum[i];
    }
    // Per element: error std <= s/2, so the mean of 20000 draws is within ~5 * s/(2*141).
    EXPECT_LT(worst, 5 * 0.5 * s / std::sqrt(static_cast<double>(kDraws))) << qmax;
    EXPECT_LT(std::fabs(total / (kDraws * x.size())), 0.002 * s) << qmax;
    // Deterministic rounding of the same inputs is biased for some element (sanity check that
    // the test can tell the difference).
    QuantizeSymmetric(x.data(), x.size(), scales.data(), 0, qmax, nullptr, q.data());
    DequantizeSymmetric(q.data(), q.size(), scales.data(), 0, d.data());
    double det_worst = 0;
    for (size_t i = 0; i < x.size(); ++i)
      det_worst = std::max(det_worst, std::fabs(double(d[i]) - x[i]));
    EXPECT_GT(det_worst, worst);
  }
}

TEST(IntQuant, ZeroAndTinyAndHugeBlocks) {
  const std::vector<float> zeros(10, 0.0f);
  float scale = -1;
  ComputeScales(zeros.data(), zeros.size(), kInt8Max, 0, &scale);
  EXPECT_EQ(scale, kMinScale);
  std::vector<int8_t> q(10, 5);
  QuantizeSymmetric(zeros.data(), zeros.size(), &scale, 0, kInt8Max, nullptr, q.data());
  for (int8_t v : q) EXPECT_EQ(v, 0);

  const std::vector<float> tiny = {1e-44f, -3e-42f, 1e-39f, 0.0f};  // subnormals
  ComputeScales(tiny.data(), tiny.size(), kInt4Max, 0, &scale);
  EXPECT_EQ(scale, kMinScale);
  std::vector<int8_t> qt(tiny.size());
  std::vector<float> dt(tiny.size());
  QuantizeSymmetric(tiny.data(), tiny.size(), &scale, 0, kInt4Max, nullptr, qt.data());
  DequantizeSymmetric(qt.data(), qt.size(), &scale, 0, dt.data());
  for (size_t i = 0; i < tiny.size(); ++i) {
    EXPECT_LE(std::fabs(tiny[i] - dt[i]), 0.5f * scale);
    EXPECT_EQ((tiny[i] - dt[i]) + dt[i], tiny[i]);
  }

  const std::vector<float> huge = {3e38f, -3.4e38f, 1.0f};
  ComputeScales(huge.data(), huge.size(), kInt8Max, 0, &scale);
  EXPECT_EQ(scale, kMaxScale);
  std::vector<int8_t> qh(huge.size());
  std::vector<float> dh(huge.size());
  QuantizeSymmetric(huge.data(), huge.size(), &scale, 0, kInt8Max, nullptr, qh.data());
  DequantizeSymmetric(qh.data(), qh.size(), &scale, 0, dh.data());
  for (size_t i = 0; i < huge.size(); ++i) {
    EXPECT_TRUE(std::isfinite(dh[i]));
    EXPECT_EQ((huge[i] - dh[i]) + dh[i], huge[i]);
  }
}

TEST(IntQuant, RangeDequantizeMatchesWhole) {
  const std::vector<float> x = RandomFloats(1000, 21);
  for (uint32_t block : {0u, 3u, 64u}) {
    std::vector<float> scales(NumScales(x.size(), block));
    ComputeScales(x.data(), x.size(), kInt8Max, block, scales.data());
    std::vector<int8_t> q(x.size());
    QuantizeSymmetric(x.data(), x.size(), scales.data(), block, kInt8Max, nullptr, q.data());
    std::vector<float> whole(x.size()), part(x.size());
    DequantizeSymmetric(q.data(), q.size(), scales.data(), block, whole.data());
    for (size_t first = 0; first < x.size(); first += 130) {
      const size_t n = std::min<size_t>(130, x.size() - first);
      DequantizeSymmetricRange(q.data() + first, first, n, scales.data(), block,
                               part.data() + first);
    }
    EXPECT_EQ(std::memcmp(whole.data(), part.data(), whole.size() * 4), 0) << block;
  }
}

TEST(Int4Pack, RoundTripsEveryLevelAndOddLengths) {
  std::vector<int8_t> q;
  for (int v = -8; v <= 7; ++v) q.push_back(static_cast<int8_t>(v));
  q.push_back(3);  // odd length
  std::vector<uint8_t> packed((q.size() + 1) / 2, 0xFF);
  PackInt4(q.data(), q.size(), packed.data());
  EXPECT_EQ(packed.back() >> 4, 0) << "unused nibble must be zero";
  std::vector<int8_t> back(q.size());
  UnpackInt4(packed.data(), q.size(), back.data());
  EXPECT_EQ(back, q);
  EXPECT_EQ(packed[0], 0x98);  // -8 (0x8) low, -7 (0x9) high
}

TEST(NumScales, Formula) {
  EXPECT_EQ(NumScales(0, 0), 0u);
  EXPECT_EQ(NumScales(0, 64), 0u);
  EXPECT_EQ(NumScales(5, 0), 1u);
  EXPECT_EQ(NumScales(64, 64), 1u);
  EXPECT_EQ(NumScales(65, 64), 2u);
}

}  // namespace
}  // namespace edgefl::compression
