#include "common/log.h"

#include <unistd.h>

#include <string>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace edgefl {
namespace {
absl::Mutex tag_mu;
std::string* Tag() {
  static std::string* tag = new std::string("edgefl");
  return tag;
}
}  // namespace

void SetLogTag(std::string_view tag) {
  absl::MutexLock lock(&tag_mu);
  *Tag() = std::string(tag);
}

void LogLine(LogLevel level, std::string_view message) {
  const char letter = level == LogLevel::kInfo ? 'I' : level == LogLevel::kWarning ? 'W' : 'E';
  std::string tag;
  {
    absl::MutexLock lock(&tag_mu);
    tag = *Tag();
  }
  std::string line = absl::StrCat(
      absl::FormatTime("%Y-%m-%dT%H:%M:%E3S", absl::Now(), absl::LocalTimeZone()), " ",
      std::string(1, letter), " ", tag, "] ", std::string(message), "\n");
  // One write() keeps lines from different threads whole.
  ssize_t unused = ::write(STDERR_FILENO, line.data(), line.size());
  (void)unused;
}

}  // namespace edgefl
