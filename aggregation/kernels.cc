#include "aggregation/kernels.h"

#include <cmath>
#include <cstdint>
#include <cstring>

#if defined(__x86_64__) && defined(__GNUC__)
#define EDGEFL_KERNELS_AVX2 1
#endif

namespace edgefl::aggregation {
namespace {

// Values per block of the finiteness check: 4 KiB of floats, one L1-resident pass.
constexpr size_t kCheckBlock = 1024;

// The bodies, inlined into one function per instruction set so that each is vectorised for it.
__attribute__((always_inline)) inline size_t FirstNonFiniteBody(const float* x, size_t n) {
  size_t i = 0;
  for (; i + kCheckBlock <= n; i += kCheckBlock) {
    uint32_t bad = 0;
    for (size_t j = 0; j < kCheckBlock; ++j) {
      uint32_t bits;
      std::memcpy(&bits, x + i + j, sizeof(bits));
      bad |= static_cast<uint32_t>((bits & 0x7f800000u) == 0x7f800000u);
    }
    if (bad != 0) break;  // the scalar scan below finds it inside this block
  }
  for (; i < n; ++i) {
    if (!std::isfinite(x[i])) return i;
  }
  return n;
}

__attribute__((always_inline)) inline void FoldWeightedBody(double* sum, const float* x, size_t n,
                                                            double weight) {
  for (size_t i = 0; i < n; ++i) sum[i] += weight * static_cast<double>(x[i]);
}

size_t FirstNonFiniteBaseline(const float* x, size_t n) { return FirstNonFiniteBody(x, n); }
void FoldWeightedBaseline(double* sum, const float* x, size_t n, double weight) {
  FoldWeightedBody(sum, x, n, weight);
}

#ifdef EDGEFL_KERNELS_AVX2
// "avx2" alone: FMA is a separate target feature, so nothing here can be fused.
__attribute__((target("avx2"))) size_t FirstNonFiniteAvx2(const float* x, size_t n) {
  return FirstNonFiniteBody(x, n);
}
__attribute__((target("avx2"))) void FoldWeightedAvx2(double* sum, const float* x, size_t n,
                                                      double weight) {
  FoldWeightedBody(sum, x, n, weight);
}
#endif

KernelIsa Best() {
  static const KernelIsa best =
      KernelIsaAvailable(KernelIsa::kAvx2) ? KernelIsa::kAvx2 : KernelIsa::kBaseline;
  return best;
}

}  // namespace

bool KernelIsaAvailable(KernelIsa isa) {
  switch (isa) {
    case KernelIsa::kBaseline:
      return true;
    case KernelIsa::kAvx2:
#ifdef EDGEFL_KERNELS_AVX2
      // libgcc also checks that the OS saves the AVX registers (XGETBV).
      return __builtin_cpu_supports("avx2");
#else
      return false;
#endif
  }
  return false;
}

size_t FirstNonFiniteFor(KernelIsa isa, absl::Span<const float> x) {
#ifdef EDGEFL_KERNELS_AVX2
  if (isa == KernelIsa::kAvx2) return FirstNonFiniteAvx2(x.data(), x.size());
#endif
  (void)isa;
  return FirstNonFiniteBaseline(x.data(), x.size());
}

void FoldWeightedFor(KernelIsa isa, absl::Span<double> sum, absl::Span<const float> x,
                     double weight) {
#ifdef EDGEFL_KERNELS_AVX2
  if (isa == KernelIsa::kAvx2) return FoldWeightedAvx2(sum.data(), x.data(), x.size(), weight);
#endif
  (void)isa;
  FoldWeightedBaseline(sum.data(), x.data(), x.size(), weight);
}

size_t FirstNonFinite(absl::Span<const float> x) { return FirstNonFiniteFor(Best(), x); }

void FoldWeighted(absl::Span<double> sum, absl::Span<const float> x, double weight) {
  FoldWeightedFor(Best(), sum, x, weight);
}

}  // namespace edgefl::aggregation
