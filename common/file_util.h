// Whole-file I/O with crash-safe writes.
#ifndef EDGEFL_COMMON_FILE_UTIL_H_
#define EDGEFL_COMMON_FILE_UTIL_H_

#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace edgefl {

// The one errno -> absl::Status mapping of edgefl: "<message>: <strerror(err)>" with the code
// absl::ErrnoToStatusCode(err) picks. The codes callers rely on:
//   ENOENT                      NOT_FOUND
//   EACCES, EPERM, EROFS        PERMISSION_DENIED
//   EEXIST                      ALREADY_EXISTS
//   ENOTDIR, EISDIR, ENOTEMPTY  FAILED_PRECONDITION
//   ENOSPC, EDQUOT, EMFILE      RESOURCE_EXHAUSTED
//   EINTR, EAGAIN               UNAVAILABLE
//   EINVAL, ENAMETOOLONG        INVALID_ARGUMENT
//   EIO, unlisted values        UNKNOWN
// Never OK: err == 0 (a call that failed without setting errno) gives INTERNAL.
absl::Status ErrnoToStatus(int err, absl::string_view message);

// Reads the whole file. NOT_FOUND if it does not exist, other codes with errno text otherwise.
absl::StatusOr<std::string> ReadFile(const std::string& path);

// Writes `data` to `path` atomically: a temp file in the same directory, fsync, rename over `path`,
// fsync of the directory. After a crash `path` holds either the old or the new content, never a
// mix. The file gets permission bits `mode` (before the umask; 0600 for secrets: the temp file is
// created with them, so the content is never readable by others, not even briefly). Errors carry
// `path` and the errno text ("cannot write <path>: No space left on device"); on any error the
// temp file is removed and `path` keeps its old content.
absl::Status WriteFileAtomically(const std::string& path, std::string_view data, int mode = 0644);

// Reads a file that holds a secret (a private key, the server secret, a token). Refuses it with
// FAILED_PRECONDITION, naming `what`, the path and its mode, when it is not a regular file or its
// permission bits let group or others read or write it (anything in 0066): "chmod 600" fixes
// that. One exception: a file owned by root, read by a non-root process, may be group-readable
// (0640 / 0440: a Kubernetes Secret volume with fsGroup). NOT_FOUND if missing. The mode is checked on the open descriptor (no race with a swap).
absl::StatusOr<std::string> ReadPrivateFile(const std::string& path, absl::string_view what);

// Appends one line (a '\n' is added) and fsyncs. Used for metrics.jsonl. A write or fsync that
// fails (ENOSPC on a full volume) truncates the file back to its length before the call, so no
// partial line is left behind.
absl::Status AppendLine(const std::string& path, std::string_view line);

// mkdir -p. OK if it exists already.
absl::Status MakeDirs(const std::string& path);

bool FileExists(const std::string& path);

}  // namespace edgefl

#endif  // EDGEFL_COMMON_FILE_UTIL_H_
