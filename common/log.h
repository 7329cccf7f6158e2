// Minimal timestamped logging to stderr (absl log is not in Debian's Abseil 20220623).
#ifndef EDGEFL_COMMON_LOG_H_
#define EDGEFL_COMMON_LOG_H_

#include <string_view>

#include "absl/strings/str_cat.h"

namespace edgefl {

enum class LogLevel { kInfo, kWarning, kError };

// Writes "<ISO time> <I|W|E> <tag>] <message>\n" to stderr in one write (thread-safe).
void LogLine(LogLevel level, std::string_view message);
// Sets the tag printed on every line (e.g. "server", "client-3"). Call once at start.
void SetLogTag(std::string_view tag);

}  // namespace edgefl

#define EDGEFL_LOG_INFO(...) ::edgefl::LogLine(::edgefl::LogLevel::kInfo, ::absl::StrCat(__VA_ARGS__))
#define EDGEFL_LOG_WARN(...) \
  ::edgefl::LogLine(::edgefl::LogLevel::kWarning, ::absl::StrCat(__VA_ARGS__))
#define EDGEFL_LOG_ERROR(...) \
  ::edgefl::LogLine(::edgefl::LogLevel::kError, ::absl::StrCat(__VA_ARGS__))

#endif  // EDGEFL_COMMON_LOG_H_
