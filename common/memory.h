// Process memory helpers.
#ifndef EDGEFL_COMMON_MEMORY_H_
#define EDGEFL_COMMON_MEMORY_H_

#include <cstdint>

namespace edgefl {

// Drops the clean, file-backed pages of this process's read-only shared-library mappings
// (code and constants) from its page tables with madvise(MADV_DONTNEED). LibTorch's start-up
// touches tens of MiB of library pages it never needs again; pages still in use simply fault back
// in from the page cache, which keeps them. Mappings holding any copy-on-write page (RELRO data
// relocated at load time) are left alone, so no written byte is lost. (MADV_PAGEOUT, used before,
// skips every page another process maps too: with a local server or other clients on the host
// it released nothing.) Returns the bytes released. Thread-safe, but must not race with
// dlopen/dlclose of the same libraries.
int64_t ReleaseIdleLibraryPages();

// glibc malloc settings, measured on workload W (bench/fedavg_fmnist), instead of glibc's
// adaptive mmap threshold, which rises after the first large free and then keeps freed
// model-sized buffers in its heap arenas. Smaller blocks are reused from the heap without page
// faults. A 256 KiB threshold, used before, cost fl-client 4 s of page faults per 6,280 training
// images (+70% CPU: 2.2 M minor faults, a fresh zeroed page for every activation page of every
// batch; W's round time 50 -> 30 s without it). Call once at start-up, before other threads run.
// An operator's own MALLOC_MMAP_THRESHOLD_ / MALLOC_TRIM_THRESHOLD_ / MALLOC_ARENA_MAX
// environment variables win over these.

// Training: blocks under 8 MiB come from the heap, which keeps up to 32 MiB free at its top
// between batches (an 8 MiB trim threshold cost +20% CPU in page faults); ModelRunner hands the
// heap's free pages back after each round (malloc_trim), whatever this threshold. The threshold must stay above
// every parameter's gradient (fedavg_cnn's fc1: 6.4 MB; models/model_test checks every shipped
// model): at 4 MiB, fc1's gradient was a fresh mmap in every batch whenever the heap's free top
// was smaller than it, a page fault per 4 KiB, and W's clients spent 15-25% of their CPU in the
// kernel (3 rounds side by side, bench/malloc_threshold: client CPU 221 s at 4 MiB, 168 s at
// 8 MiB, -24%; a 10,231-image epoch's peak RSS +5 MiB).
inline constexpr int64_t kTrainingMmapThresholdBytes = int64_t{8} << 20;
void TuneMallocForTraining();

// For fl-server: model-sized allocations (4 MiB and more: models, updates) from mmap, given back
// on free; at most 2 heap arenas and 4 MiB kept free at each heap's top, so that chunk buffers
// freed by many gRPC threads are reused instead of parked in per-thread arenas (W: peak RSS
// 438 MiB with glibc's per-thread arenas and a 32 MiB trim threshold, 290 MiB with these).
void TuneMallocForServing();

// Peak and current resident set of this process in bytes (from /proc/self/status), 0 if unknown.
int64_t PeakRssBytes();
int64_t CurrentRssBytes();

}  // namespace edgefl

#endif  // EDGEFL_COMMON_MEMORY_H_
