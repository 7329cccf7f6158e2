#include "common/crypto.h"

#include <sys/stat.h>

#include <cstdlib>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/sha256.h"
#include "gtest/gtest.h"

namespace edgefl {
namespace {

// RFC 4231 test cases 1 and 2.
TEST(Crypto, HmacSha256MatchesRfc4231) {
  EXPECT_EQ(ToHex(HmacSha256(std::string(20, '\x0b'), "Hi There")),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
  EXPECT_EQ(ToHex(HmacSha256("Jefe", "what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
  EXPECT_EQ(HmacSha256("", "").size(), kHmacSha256Bytes);
}

TEST(Crypto, ConstantTimeEqualsAndHex) {
  EXPECT_TRUE(ConstantTimeEquals("abc", "abc"));
  EXPECT_FALSE(ConstantTimeEquals("abc", "abd"));
  EXPECT_FALSE(ConstantTimeEquals("abc", "ab"));
  EXPECT_TRUE(ConstantTimeEquals("", ""));
  EXPECT_EQ(*FromHex("00ff10"), std::string("\x00\xff\x10", 3));
  EXPECT_FALSE(FromHex("0").has_value());
  EXPECT_FALSE(FromHex("zz").has_value());
}

TEST(Crypto, RandomBytesDiffer) {
  auto a = RandomBytes(32);
  auto b = RandomBytes(32);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->size(), 32u);
  EXPECT_NE(*a, *b);
}

TEST(PrivateFile, RefusesGroupOrOtherAccessAndWritesPrivately) {
  std::string tmpl =
      absl::StrCat(std::getenv("TMPDIR") ? std::getenv("TMPDIR") : "/tmp", "/edgefl-priv-XXXXXX");
  const std::string dir = mkdtemp(tmpl.data());
  const std::string path = dir + "/key.pem";
  ASSERT_TRUE(WriteFileAtomically(path, "secret", 0600).ok());
  struct stat st;
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(*ReadPrivateFile(path, "key"), "secret");
  for (mode_t mode : {0640, 0604, 0620, 0644}) {
    ASSERT_EQ(chmod(path.c_str(), mode), 0);
    absl::StatusOr<std::string> r = ReadPrivateFile(path, "TLS private key");
    EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition) << mode;
    EXPECT_NE(r.status().message().find("TLS private key"), absl::string_view::npos);
    EXPECT_EQ(r.status().message().find("secret"), absl::string_view::npos);
  }
  ASSERT_EQ(chmod(path.c_str(), 0400), 0);
  EXPECT_TRUE(ReadPrivateFile(path, "key").ok());
  EXPECT_EQ(ReadPrivateFile(dir + "/missing", "key").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(ReadPrivateFile(dir, "key").status().code(), absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace edgefl
