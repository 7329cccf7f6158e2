#include "aggregation/kernels.h"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "aggregation/accumulator.h"
#include "gtest/gtest.h"

namespace edgefl::aggregation {
namespace {

std::vector<KernelIsa> AvailableIsas() {
  std::vector<KernelIsa> out;
  for (KernelIsa isa : {KernelIsa::kBaseline, KernelIsa::kAvx2}) {
    if (KernelIsaAvailable(isa)) out.push_back(isa);
  }
  return out;
}

size_t ScalarFirstNonFinite(const std::vector<float>& x) {
  for (size_t i = 0; i < x.size(); ++i) {
    if (!std::isfinite(x[i])) return i;
  }
  return x.size();
}

// The fold as the server did it before the kernels, one rounding per operation: the product is
// stored through a volatile so that no compiler can fuse it with the add.
void ReferenceFold(std::vector<double>* sum, const std::vector<float>& x, double weight) {
  for (size_t i = 0; i < x.size(); ++i) {
    volatile double product = weight * static_cast<double>(x[i]);
    (*sum)[i] = (*sum)[i] + product;
  }
}

float FromBits(uint32_t bits) {
  float f;
  std::memcpy(&f, &bits, sizeof(f));
  return f;
}

// Values that stress the exponent test: the largest finite floats, subnormals, zeros of both
// signs, and every kind of non-finite value (quiet/signalling NaN of both signs, +-Inf).
const std::vector<float>& EdgeFinite() {
  static const auto* v = new std::vector<float>{
      std::numeric_limits<float>::max(), -std::numeric_limits<float>::max(),
      std::numeric_limits<float>::denorm_min(), -std::numeric_limits<float>::min(), 0.0f, -0.0f,
      FromBits(0x7f7fffffu), FromBits(0x007fffffu)};
  return *v;
}
const std::vector<float>& NonFinite() {
  static const auto* v = new std::vector<float>{
      std::numeric_limits<float>::quiet_NaN(), -std::numeric_limits<float>::quiet_NaN(),
      std::numeric_limits<float>::signaling_NaN(), std::numeric_limits<float>::infinity(),
      -std::numeric_limits<float>::infinity(), FromBits(0x7f800001u), FromBits(0xffffffffu)};
  return *v;
}

TEST(Kernels, FirstNonFiniteMatchesAScalarScanAtEveryBlockPosition) {
  std::mt19937 rng(5);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (KernelIsa isa : AvailableIsas()) {
    SCOPED_TRACE(isa == KernelIsa::kAvx2 ? "avx2" : "baseline");
    for (size_t n : {size_t{0}, size_t{1}, size_t{7}, size_t{1023}, size_t{1024}, size_t{1025},
                     size_t{3000}, size_t{4096}}) {
      std::vector<float> x(n);
      for (float& v : x) v = normal(rng);
      for (size_t i = 0; i < n; i += 5) x[i] = EdgeFinite()[i % EdgeFinite().size()];
      ASSERT_EQ(FirstNonFiniteFor(isa, x), n) << n;
      // One bad value at block edges and random places; then two, the first one wins.
      std::vector<size_t> places = {0, n / 2, n - 1};
      for (size_t b = 1023; b + 1 < n; b += 1024) {
        places.push_back(b);
        places.push_back(b + 1);
      }
      for (int r = 0; r < 20 && n > 0; ++r) places.push_back(rng() % n);
      for (size_t p : places) {
        if (n == 0) break;
        for (float bad : NonFinite()) {
          std::vector<float> y = x;
          y[p] = bad;
          ASSERT_EQ(FirstNonFiniteFor(isa, y), p) << "n " << n << " at " << p;
          ASSERT_EQ(FirstNonFiniteFor(isa, y), ScalarFirstNonFinite(y));
          const size_t later = std::min(n - 1, p + 1 + rng() % 2000);
          y[later] = bad;
          ASSERT_EQ(FirstNonFiniteFor(isa, y), p);
        }
      }
    }
  }
}

TEST(Kernels, FoldWeightedIsBitIdenticalToAMultiplyThenAddOnEveryPath) {
  std::mt19937_64 rng(11);
  std::normal_distribution<float> normal(0.0f, 0.01f);
  std::uniform_real_distribution<double> weight(1.0, 5000.0);
  for (size_t n : {size_t{1}, size_t{3}, size_t{17}, size_t{1000}, size_t{65537}}) {
    std::vector<double> want(n);
    std::vector<std::vector<double>> got(AvailableIsas().size(), std::vector<double>(n));
    for (int k = 0; k < 30; ++k) {
      std::vector<float> x(n);
      for (size_t i = 0; i < n; ++i) {
        x[i] = (i % 11 == 0) ? EdgeFinite()[(i + k) % EdgeFinite().size()] * 1e-30f : normal(rng);
      }
      const double w = (k % 3 == 0) ? 1.0 / 3.0 : weight(rng);
      ReferenceFold(&want, x, w);
      for (size_t j = 0; j < got.size(); ++j) {
        FoldWeightedFor(AvailableIsas()[j], absl::MakeSpan(got[j]), x, w);
      }
    }
    for (size_t j = 0; j < got.size(); ++j) {
      EXPECT_EQ(std::memcmp(got[j].data(), want.data(), n * sizeof(double)), 0) << n << " " << j;
    }
  }
}

// The streaming weighted mean (FedAvg's combiner) over 100 random updates of a non-round size,
// folded in arrival order, holds exactly the bits of the one-by-one reference fold.
TEST(Kernels, AccumulatorOverManyUpdatesIsBitIdenticalToTheOneByOneFold) {
  constexpr size_t kDim = 100003;
  std::mt19937_64 rng(3);
  std::normal_distribution<float> normal(0.0f, 0.02f);
  std::vector<double> want(kDim);
  double total = 0;
  WeightedMeanAccumulator acc(kDim);
  for (int k = 0; k < 100; ++k) {
    std::vector<float> x(kDim);
    for (float& v : x) v = normal(rng);
    // Not integers: an integer weight times a float is exact in double, so fusing the multiply
    // into the add would go unnoticed.
    const double w = static_cast<double>(1 + rng() % 6000) / 7.0;
    ReferenceFold(&want, x, w);
    total += w;
    ASSERT_TRUE(acc.Add(x, w).ok());
  }
  ASSERT_EQ(acc.total_weight(), total);
  std::vector<double> got(kDim), expected(kDim);
  for (size_t i = 0; i < kDim; ++i) {
    got[i] = acc.MeanAt(i);
    expected[i] = want[i] / total;
  }
  EXPECT_EQ(std::memcmp(got.data(), expected.data(), kDim * sizeof(double)), 0);
}

}  // namespace
}  // namespace edgefl::aggregation
