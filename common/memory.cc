#include "common/memory.h"

#include <sys/mman.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>

#ifndef MADV_PAGEOUT
#define MADV_PAGEOUT 21
#endif

namespace edgefl {

int64_t ReleaseIdleLibraryPages() {
  std::ifstream maps("/proc/self/maps");
  std::string line;
  int64_t advised = 0;
  while (std::getline(maps, line)) {
    unsigned long begin = 0, end = 0;
    char perms[5] = {0};
    if (std::sscanf(line.c_str(), "%lx-%lx %4s", &begin, &end, perms) != 3) continue;
    // Read-only or executable file mappings only: never writable data, never anonymous memory.
    if (perms[1] == 'w' || perms[3] != 'p') continue;
    if (line.find(".so") == std::string::npos) continue;
    if (madvise(reinterpret_cast<void*>(begin), end - begin, MADV_PAGEOUT) == 0) {
      advised += static_cast<int64_t>(end - begin);
    }
  }
  return advised;
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
}  // namespace

int64_t PeakRssBytes() { return StatusField("VmHWM"); }
int64_t CurrentRssBytes() { return StatusField("VmRSS"); }

}  // namespace edgefl
