#include "common/memory.h"

#include <malloc.h>
#include <sys/mman.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

namespace edgefl {

int64_t ReleaseIdleLibraryPages() {
  // smaps lists each mapping's header line followed by its counters; "Anonymous" counts the pages
  // this process has written (copy-on-write), which must never be dropped.
  std::ifstream smaps("/proc/self/smaps");
  std::string line;
  std::vector<std::pair<unsigned long, unsigned long>> ranges;
  bool candidate = false;
  unsigned long begin = 0, end = 0;
  while (std::getline(smaps, line)) {
    char perms[5] = {0};
    unsigned long b = 0, e = 0;
    if (std::sscanf(line.c_str(), "%lx-%lx %4s", &b, &e, perms) == 3) {
      begin = b;
      end = e;
      // Read-only or executable private mappings of shared libraries only: never writable data,
      // never anonymous memory.
      candidate = perms[1] != 'w' && perms[3] == 'p' && line.find(".so") != std::string::npos;
      continue;
    }
    long long kb = 0;
    if (candidate && std::sscanf(line.c_str(), "Anonymous: %lld", &kb) == 1) {
      // A mapping with copy-on-write pages (e.g. RELRO data, relocated at load time) keeps them.
      if (kb == 0) ranges.emplace_back(begin, end);
      candidate = false;
    }
  }
  int64_t released = 0;
  for (const auto& [b, e] : ranges) {
    // The pages are clean copies of the file: dropping them from this process's page tables loses
    // nothing, and a page still needed faults back in from the page cache. Unlike MADV_PAGEOUT
    // this also works for pages other processes map too (other clients, a local server).
    if (madvise(reinterpret_cast<void*>(b), e - b, MADV_DONTNEED) == 0) {
      released += static_cast<int64_t>(e - b);
    }
  }
  return released;
}

namespace {
int64_t StatusField(const char* key) {
  std::ifstream status("/proc/self/status");
  std::string line;
  const size_t n = std::strlen(key);
  while (std::getline(status, line)) {
    if (line.compare(0, n, key) == 0) {
      long long kb = 0;
      if (std::sscanf(line.c_str() + n, ": %lld", &kb) == 1) return kb * 1024;
    }
  }
  return 0;
}

// mallopt(param, value) unless the operator set glibc's own environment variable for it
// (MALLOC_MMAP_THRESHOLD_, MALLOC_TRIM_THRESHOLD_, MALLOC_ARENA_MAX): theirs wins.
void SetUnlessInEnvironment(int param, int value, const char* env) {
  if (std::getenv(env) == nullptr) mallopt(param, value);
}
}  // namespace

void TuneMallocForTraining() {
  SetUnlessInEnvironment(M_MMAP_THRESHOLD, static_cast<int>(kTrainingMmapThresholdBytes),
                         "MALLOC_MMAP_THRESHOLD_");
  SetUnlessInEnvironment(M_TRIM_THRESHOLD, 32 << 20, "MALLOC_TRIM_THRESHOLD_");
}

void TuneMallocForServing() {
  SetUnlessInEnvironment(M_MMAP_THRESHOLD, 4 << 20, "MALLOC_MMAP_THRESHOLD_");
  SetUnlessInEnvironment(M_TRIM_THRESHOLD, 4 << 20, "MALLOC_TRIM_THRESHOLD_");
  SetUnlessInEnvironment(M_ARENA_MAX, 2, "MALLOC_ARENA_MAX");
}

int64_t PeakRssBytes() { return StatusField("VmHWM"); }
int64_t CurrentRssBytes() { return StatusField("VmRSS"); }

}  // namespace edgefl
