#include "common/file_util.h"

#include <dirent.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "gtest/gtest.h"

namespace edgefl {
namespace {

std::string MakeTempDir() {
  std::string templ = ::testing::TempDir() + "/file_util_test.XXXXXX";
  char* dir = ::mkdtemp(templ.data());
  EXPECT_NE(dir, nullptr);
  return templ;
}

std::vector<std::string> ListDir(const std::string& dir) {
  std::vector<std::string> names;
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return names;
  while (dirent* e = ::readdir(d)) {
    std::string name = e->d_name;
    if (name != "." && name != "..") names.push_back(name);
  }
  ::closedir(d);
  return names;
}

bool Contains(absl::string_view haystack, absl::string_view needle) {
  return haystack.find(needle) != absl::string_view::npos;
}

// The codes file_util.h documents, for every errno edgefl's file code can meet.
TEST(FileUtil, ErrnoToStatusMapsTheDocumentedCodes) {
  const std::vector<std::pair<int, absl::StatusCode>> cases = {
      {ENOENT, absl::StatusCode::kNotFound},
      {EACCES, absl::StatusCode::kPermissionDenied},
      {EPERM, absl::StatusCode::kPermissionDenied},
      {EROFS, absl::StatusCode::kPermissionDenied},
      {EEXIST, absl::StatusCode::kAlreadyExists},
      {ENOTDIR, absl::StatusCode::kFailedPrecondition},
      {EISDIR, absl::StatusCode::kFailedPrecondition},
      {ENOTEMPTY, absl::StatusCode::kFailedPrecondition},
      {ENOSPC, absl::StatusCode::kResourceExhausted},
      {EDQUOT, absl::StatusCode::kResourceExhausted},
      {EMFILE, absl::StatusCode::kResourceExhausted},
      {EINTR, absl::StatusCode::kUnavailable},
      {EAGAIN, absl::StatusCode::kUnavailable},
      {EINVAL, absl::StatusCode::kInvalidArgument},
      {ENAMETOOLONG, absl::StatusCode::kInvalidArgument},
      {EIO, absl::StatusCode::kUnknown},
      {12345, absl::StatusCode::kUnknown},
  };
  for (const auto& [err, code] : cases) {
    const absl::Status s = ErrnoToStatus(err, "cannot open /x");
    EXPECT_EQ(s.code(), code) << "errno " << err << ": " << s;
    EXPECT_EQ(s.message(), std::string("cannot open /x: ") + std::strerror(err));
  }
}

TEST(FileUtil, ErrnoToStatusIsNeverOk) {
  const absl::Status s = ErrnoToStatus(0, "cannot create a scratch folder");
  EXPECT_EQ(s.code(), absl::StatusCode::kInternal) << s;
  EXPECT_TRUE(Contains(s.message(), "cannot create a scratch folder")) << s;
}

TEST(FileUtil, WriteFileAtomicallyCreatesAndReplaces) {
  const std::string dir = MakeTempDir();
  const std::string path = dir + "/model.bin";
  ASSERT_TRUE(WriteFileAtomically(path, "first version, longer than the second").ok());
  auto content = ReadFile(path);
  ASSERT_TRUE(content.ok()) << content.status();
  EXPECT_EQ(*content, "first version, longer than the second");

  ASSERT_TRUE(WriteFileAtomically(path, "second").ok());
  content = ReadFile(path);
  ASSERT_TRUE(content.ok());
  EXPECT_EQ(*content, "second");  // replaced, not overwritten in place

  const std::string binary("a\0b\0c", 5);
  ASSERT_TRUE(WriteFileAtomically(path, binary).ok());
  EXPECT_EQ(*ReadFile(path), binary);
}

TEST(FileUtil, WriteFileAtomicallyLeavesNoTempFiles) {
  const std::string dir = MakeTempDir();
  for (int i = 0; i < 20; ++i) {
    ASSERT_TRUE(WriteFileAtomically(dir + "/state.json", std::to_string(i)).ok());
  }
  ASSERT_TRUE(WriteFileAtomically(dir + "/other", "x").ok());
  std::vector<std::string> names = ListDir(dir);
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"other", "state.json"}));
}

// A write that runs out of room (RLIMIT_FSIZE stands in for a full volume: the kernel lets part of
// the write through, then fails it with EFBIG, as a full disk does with ENOSPC).
class FileSizeLimit {
 public:
  explicit FileSizeLimit(rlim_t bytes) {
    old_handler_ = std::signal(SIGXFSZ, SIG_IGN);
    ::getrlimit(RLIMIT_FSIZE, &old_);
    rlimit limit = old_;
    limit.rlim_cur = bytes;
    ::setrlimit(RLIMIT_FSIZE, &limit);
  }
  ~FileSizeLimit() {
    ::setrlimit(RLIMIT_FSIZE, &old_);
    std::signal(SIGXFSZ, old_handler_);
  }

 private:
  rlimit old_;
  void (*old_handler_)(int);
};

TEST(FileUtil, WriteFileAtomicallyThatRunsOutOfRoomKeepsTheOldFileAndNoTemp) {
  const std::string dir = MakeTempDir();
  const std::string path = dir + "/checkpoint.pb";
  ASSERT_TRUE(WriteFileAtomically(path, "the last good checkpoint").ok());
  absl::Status status;
  {
    FileSizeLimit limit(100);
    status = WriteFileAtomically(path, std::string(4096, 'x'));
  }
  ASSERT_FALSE(status.ok());
  EXPECT_TRUE(Contains(status.message(), "cannot write " + path)) << status;
  EXPECT_TRUE(Contains(status.message(), "File too large")) << status;
  EXPECT_EQ(*ReadFile(path), "the last good checkpoint");
  EXPECT_EQ(ListDir(dir), std::vector<std::string>{"checkpoint.pb"});
}

TEST(FileUtil, AppendLineThatRunsOutOfRoomLeavesNoPartialLine) {
  const std::string dir = MakeTempDir();
  const std::string path = dir + "/metrics.jsonl";
  ASSERT_TRUE(AppendLine(path, "{\"round\":1}").ok());
  const std::string before = *ReadFile(path);
  absl::Status status;
  {
    FileSizeLimit limit(before.size() + 10);  // room for 10 bytes of the next line
    status = AppendLine(path, "{\"round\":2,\"padding\":\"" + std::string(200, 'p') + "\"}");
  }
  ASSERT_FALSE(status.ok());
  EXPECT_TRUE(Contains(status.message(), "cannot write " + path)) << status;
  EXPECT_EQ(*ReadFile(path), before);
  ASSERT_TRUE(AppendLine(path, "{\"round\":2}").ok());
  EXPECT_EQ(*ReadFile(path), before + "{\"round\":2}\n");
}

TEST(FileUtil, WriteFileAtomicallyReportsPathAndErrno) {
  const std::string dir = MakeTempDir();
  // A missing directory.
  const std::string missing = dir + "/no/such/dir/file";
  absl::Status status = WriteFileAtomically(missing, "x");
  EXPECT_FALSE(status.ok());
  EXPECT_TRUE(Contains(status.message(), missing)) << status;
  EXPECT_TRUE(Contains(status.message(), "No such file or directory")) << status;

  // A "directory" that is a regular file (works even when the test runs as root).
  ASSERT_TRUE(WriteFileAtomically(dir + "/plain", "x").ok());
  const std::string under_file = dir + "/plain/file";
  status = WriteFileAtomically(under_file, "x");
  EXPECT_FALSE(status.ok());
  EXPECT_TRUE(Contains(status.message(), under_file)) << status;
  EXPECT_TRUE(Contains(status.message(), "Not a directory")) << status;

  if (::geteuid() != 0) {
    const std::string ro = dir + "/readonly";
    ASSERT_EQ(::mkdir(ro.c_str(), 0555), 0);
    status = WriteFileAtomically(ro + "/file", "x");
    EXPECT_EQ(status.code(), absl::StatusCode::kPermissionDenied) << status;
    EXPECT_TRUE(Contains(status.message(), ro + "/file")) << status;
    EXPECT_TRUE(ListDir(ro).empty());
  }
  // The failed writes left nothing behind.
  EXPECT_EQ(ListDir(dir), std::vector<std::string>{"plain"});
}

TEST(FileUtil, ReadFileMissingIsNotFound) {
  const std::string path = MakeTempDir() + "/absent";
  auto content = ReadFile(path);
  ASSERT_FALSE(content.ok());
  EXPECT_EQ(content.status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(Contains(content.status().message(), path));
  EXPECT_FALSE(FileExists(path));
}

TEST(FileUtil, AppendLineAppends) {
  const std::string path = MakeTempDir() + "/metrics.jsonl";
  ASSERT_TRUE(AppendLine(path, "{\"round\":1}").ok());
  ASSERT_TRUE(AppendLine(path, "{\"round\":2}").ok());
  ASSERT_TRUE(AppendLine(path, "").ok());
  EXPECT_EQ(*ReadFile(path), "{\"round\":1}\n{\"round\":2}\n\n");
  EXPECT_FALSE(AppendLine(path + "/x", "y").ok());
}

TEST(FileUtil, MakeDirsCreatesNestedAndIsIdempotent) {
  const std::string base = MakeTempDir();
  const std::string deep = base + "/a/b//c/";
  ASSERT_TRUE(MakeDirs(deep).ok());
  struct stat st;
  ASSERT_EQ(::stat((base + "/a/b/c").c_str(), &st), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  EXPECT_TRUE(MakeDirs(deep).ok());
  EXPECT_TRUE(MakeDirs(base).ok());
  EXPECT_TRUE(FileExists(base + "/a/b/c"));

  ASSERT_TRUE(WriteFileAtomically(base + "/file", "x").ok());
  absl::Status status = MakeDirs(base + "/file/sub");
  EXPECT_FALSE(status.ok());
  EXPECT_TRUE(Contains(status.message(), base + "/file")) << status;
  EXPECT_FALSE(MakeDirs("").ok());
}

}  // namespace
}  // namespace edgefl
