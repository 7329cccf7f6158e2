// Process memory helpers.
#ifndef EDGEFL_COMMON_MEMORY_H_
#define EDGEFL_COMMON_MEMORY_H_

#include <cstdint>

namespace edgefl {

// Asks the kernel to reclaim the clean, file-backed pages of this process's read-only mappings
// (shared-library code and constants) with madvise(MADV_PAGEOUT). LibTorch's start-up touches
// tens of MiB of library pages it never needs again; pages still in use simply fault back in from
// the page cache. Returns the bytes advised (0 where MADV_PAGEOUT is unsupported). Thread-safe.
int64_t ReleaseIdleLibraryPages();

// Peak and current resident set of this process in bytes (from /proc/self/status), 0 if unknown.
int64_t PeakRssBytes();
int64_t CurrentRssBytes();

}  // namespace edgefl

#endif  // EDGEFL_COMMON_MEMORY_H_
