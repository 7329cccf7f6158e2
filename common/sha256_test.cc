#include "common/sha256.h"

#include <string>

#include "gtest/gtest.h"

namespace edgefl {
namespace {

TEST(Sha256, KnownVectors) {
  // FIPS 180-2 / NIST test vectors.
  EXPECT_EQ(Sha256::HexOf(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(Sha256::HexOf("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(Sha256::HexOf("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  EXPECT_EQ(Sha256::HexOf(std::string(1000000, 'a')),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(Sha256, RawDigestIs32Bytes) {
  const std::string raw = Sha256::Of("abc");
  ASSERT_EQ(raw.size(), 32u);
  EXPECT_EQ(ToHex(raw), Sha256::HexOf("abc"));
  EXPECT_EQ(static_cast<unsigned char>(raw[0]), 0xba);
}

TEST(Sha256, IncrementalMatchesOneShot) {
  std::string data;
  for (int i = 0; i < 100000; ++i) data.push_back(static_cast<char>((i * 131) ^ (i >> 3)));
  for (size_t piece : {1u, 7u, 64u, 1000u, 65537u}) {
    Sha256 hasher;
    for (size_t pos = 0; pos < data.size(); pos += piece) {
      const size_t n = std::min(piece, data.size() - pos);
      if (pos % 2 == 0) {
        hasher.Update(std::string_view(data).substr(pos, n));
      } else {
        hasher.Update(data.data() + pos, n);
      }
    }
    hasher.Update("", 0);
    EXPECT_EQ(hasher.Finish(), Sha256::Of(data)) << "piece " << piece;
  }
}

TEST(Sha256, ToHexFormatsBytes) {
  EXPECT_EQ(ToHex(std::string("\x00\x0f\xf0\xff", 4)), "000ff0ff");
  EXPECT_EQ(ToHex(""), "");
}

}  // namespace
}  // namespace edgefl
