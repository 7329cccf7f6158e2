#include "common/file_util.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace edgefl {
namespace {

absl::Status ErrnoError(int err, absl::string_view what, const std::string& path) {
  return ErrnoToStatus(err, absl::StrCat(what, " ", path));
}

// Closes the descriptor on scope exit unless released.
class FdCloser {
 public:
  explicit FdCloser(int fd) : fd_(fd) {}
  ~FdCloser() {
    if (fd_ >= 0) ::close(fd_);
  }
  // Closes now and reports the error (close can surface delayed write errors).
  int Close() {
    int rc = ::close(fd_);
    fd_ = -1;
    return rc;
  }

 private:
  int fd_;
};

absl::Status WriteAll(int fd, std::string_view data, const std::string& path) {
  const char* p = data.data();
  size_t left = data.size();
  while (left > 0) {
    ssize_t n = ::write(fd, p, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoError(errno, "cannot write", path);
    }
    p += n;
    left -= static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

std::string DirName(const std::string& path) {
  size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

absl::Status FsyncDir(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return ErrnoError(errno, "cannot open directory", dir);
  FdCloser closer(fd);
  if (::fsync(fd) != 0) return ErrnoError(errno, "cannot fsync directory", dir);
  return absl::OkStatus();
}

}  // namespace

absl::Status ErrnoToStatus(int err, absl::string_view message) {
  if (err == 0) {
    return absl::InternalError(absl::StrCat(message, ": failed without an errno"));
  }
  return absl::ErrnoToStatus(err, message);
}

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoError(errno, "cannot open", path);
  FdCloser closer(fd);
  std::string out;
  struct stat st;
  if (::fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0) {
    out.reserve(static_cast<size_t>(st.st_size));
  }
  char buf[1 << 16];
  while (true) {
    ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoError(errno, "cannot read", path);
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

absl::Status WriteFileAtomically(const std::string& path, std::string_view data, int mode) {
  static std::atomic<uint64_t> counter{0};
  const std::string dir = DirName(path);
  const std::string tmp = absl::StrCat(path, ".tmp.", ::getpid(), ".", counter.fetch_add(1));
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, static_cast<mode_t>(mode));
  if (fd < 0) return ErrnoError(errno, "cannot create temp file for", path);
  FdCloser closer(fd);
  // Errors name `path` (the file the caller knows), not the temp file, which is removed.
  absl::Status status = WriteAll(fd, data, path);
  if (status.ok() && ::fsync(fd) != 0) status = ErrnoError(errno, "cannot fsync", path);
  if (status.ok() && closer.Close() != 0) status = ErrnoError(errno, "cannot close", path);
  if (status.ok() && ::rename(tmp.c_str(), path.c_str()) != 0) {
    status = ErrnoError(errno, absl::StrCat("cannot rename ", tmp, " to"), path);
  }
  if (!status.ok()) {
    ::unlink(tmp.c_str());
    return status;
  }
  return FsyncDir(dir);
}

absl::StatusOr<std::string> ReadPrivateFile(const std::string& path, absl::string_view what) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    absl::Status s = ErrnoError(errno, absl::StrCat("cannot open ", what), path);
    return s;
  }
  FdCloser closer(fd);
  struct stat st;
  if (::fstat(fd, &st) != 0) return ErrnoError(errno, absl::StrCat("cannot stat ", what), path);
  if (!S_ISREG(st.st_mode)) {
    return absl::FailedPreconditionError(absl::StrCat(what, " ", path, " is not a regular file"));
  }
  // Group read is fine on a root-owned file read by an unprivileged process through its group:
  // that is how Kubernetes mounts a Secret for a non-root pod with fsGroup (root, mode 0440),
  // and PostgreSQL's rule for its key files.
  const mode_t refused = (st.st_uid == 0 && ::geteuid() != 0) ? 0026 : 0066;
  if ((st.st_mode & refused) != 0) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "%s %s is accessible by group or others (mode %04o); refusing to use it: chmod 600 %s",
        what, path, st.st_mode & 07777, path));
  }
  std::string out;
  out.reserve(static_cast<size_t>(st.st_size));
  char buf[1 << 14];
  while (true) {
    ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoError(errno, absl::StrCat("cannot read ", what), path);
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

absl::Status AppendLine(const std::string& path, std::string_view line) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) return ErrnoError(errno, "cannot open", path);
  FdCloser closer(fd);
  std::string buf;
  buf.reserve(line.size() + 1);
  buf.append(line.data(), line.size());
  buf.push_back('\n');
  const off_t before = ::lseek(fd, 0, SEEK_END);
  // One write() so concurrent appenders (O_APPEND) do not interleave within a line.
  absl::Status status = WriteAll(fd, buf, path);
  if (status.ok() && ::fsync(fd) != 0) status = ErrnoError(errno, "cannot fsync", path);
  if (!status.ok()) {
    // A full volume can take part of the line: cut it off again, so the file still ends with a
    // whole line (the next append, or a resume, reads it as it was).
    if (before >= 0 && ::ftruncate(fd, before) == 0) ::fsync(fd);
    return status;
  }
  if (closer.Close() != 0) return ErrnoError(errno, "cannot close", path);
  return absl::OkStatus();
}

absl::Status MakeDirs(const std::string& path) {
  if (path.empty()) return absl::InvalidArgumentError("MakeDirs: empty path");
  std::string prefix;
  prefix.reserve(path.size());
  size_t pos = 0;
  while (pos <= path.size()) {
    size_t next = path.find('/', pos);
    if (next == std::string::npos) next = path.size();
    prefix = path.substr(0, next);
    pos = next + 1;
    if (prefix.empty() || prefix == "." || prefix == "..") continue;
    if (::mkdir(prefix.c_str(), 0755) != 0) {
      int err = errno;
      if (err == EEXIST) {
        struct stat st;
        if (::stat(prefix.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) continue;
        return absl::FailedPreconditionError(
            absl::StrCat("cannot create directory ", prefix, ": exists and is not a directory"));
      }
      return ErrnoError(err, "cannot create directory", prefix);
    }
  }
  return absl::OkStatus();
}

bool FileExists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

}  // namespace edgefl
