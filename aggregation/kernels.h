// The two inner loops every dense update goes through on the server: the finiteness check and
// the weighted fold into double sums. Plain loops the compiler vectorises, compiled twice on
// x86-64 (baseline SSE2 and AVX2, chosen once at run time from the CPU); the results are the
// same bits on every path and every target:
// - FirstNonFinite tests the float's exponent bits (all ones = NaN or Inf, exactly
//   !std::isfinite) in blocks without a branch per value, then finds the first bad index with a
//   scalar scan of the offending block.
// - FoldWeighted computes sum[i] += weight * double(x[i]) as a multiply then an add, in index
//   order: this file is compiled with -ffp-contract=off and AVX2 is enabled without FMA, so no
//   target fuses the two roundings into one (which would change the bits).
// Why it matters: a scalar std::isfinite loop (no early-exit loop is vectorised by GCC 12) was
// about half of the weighted mean's cost, more than the fold (combiner_benchmark, BM_Kernel/*).
#ifndef EDGEFL_AGGREGATION_KERNELS_H_
#define EDGEFL_AGGREGATION_KERNELS_H_

#include <cstddef>

#include "absl/types/span.h"

namespace edgefl::aggregation {

// The index of the first NaN or +-Inf in `x`, or x.size() when every value is finite.
size_t FirstNonFinite(absl::Span<const float> x);

// sum[i] += weight * static_cast<double>(x[i]) for every i; the caller ensures equal sizes.
void FoldWeighted(absl::Span<double> sum, absl::Span<const float> x, double weight);

// The instruction sets the kernels are built for, for tests and benchmarks.
enum class KernelIsa { kBaseline, kAvx2 };
// Whether `isa` runs on this CPU (kBaseline always; kAvx2 on x86-64 CPUs with AVX2).
bool KernelIsaAvailable(KernelIsa isa);
// The kernels for one instruction set; `isa` must be available.
size_t FirstNonFiniteFor(KernelIsa isa, absl::Span<const float> x);
void FoldWeightedFor(KernelIsa isa, absl::Span<double> sum, absl::Span<const float> x,
                     double weight);

}  // namespace edgefl::aggregation

#endif  // EDGEFL_AGGREGATION_KERNELS_H_
