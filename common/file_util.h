// Whole-file I/O with crash-safe writes.
#ifndef EDGEFL_COMMON_FILE_UTIL_H_
#define EDGEFL_COMMON_FILE_UTIL_H_

#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace edgefl {

// Reads the whole file. NOT_FOUND if it does not exist, other codes with errno text otherwise.
absl::StatusOr<std::string> ReadFile(const std::string& path);

// Writes `data` to `path` atomically: a temp file in the same directory, fsync, rename over `path`,
// fsync of the directory. After a crash `path` holds either the old or the new content, never a
// mix. Errors carry the path and errno text.
absl::Status WriteFileAtomically(const std::string& path, std::string_view data);

// Appends one line (a '\n' is added) and fsyncs. Used for metrics.jsonl.
absl::Status AppendLine(const std::string& path, std::string_view line);

// mkdir -p. OK if it exists already.
absl::Status MakeDirs(const std::string& path);

bool FileExists(const std::string& path);

}  // namespace edgefl

#endif  // EDGEFL_COMMON_FILE_UTIL_H_
