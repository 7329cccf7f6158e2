// Compute-thread settings shared by the binaries.
#ifndef EDGEFL_COMMON_THREADS_H_
#define EDGEFL_COMMON_THREADS_H_

namespace edgefl {

// Sets OpenBLAS's thread count at run time when OpenBLAS is the loaded BLAS (looked up with
// dlsym, so there is no link dependency and no effect with another BLAS). Returns true if set.
// OPENBLAS_NUM_THREADS is read when the library loads, before main(), so a call is needed.
bool SetBlasThreads(int threads);

}  // namespace edgefl

#endif  // EDGEFL_COMMON_THREADS_H_
