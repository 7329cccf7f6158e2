#include "aggregation/state_format.h"

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace edgefl::aggregation {
namespace {

std::string Sample() {
  StateWriter writer("test.kind");
  writer.PutU64(42);
  writer.PutF64(-0.0);
  writer.PutF64Array({1.5, std::numeric_limits<double>::denorm_min(), -3e300});
  writer.PutString("abc");
  return writer.Finish();
}

TEST(StateFormat, RoundTripIsBitExact) {
  auto reader = StateReader::Open(Sample(), "test.kind");
  ASSERT_TRUE(reader.ok()) << reader.status();
  EXPECT_EQ(*reader->GetU64("a"), 42u);
  const double zero = *reader->GetF64("b");
  EXPECT_TRUE(zero == 0 && std::signbit(zero));
  std::vector<double> values;
  ASSERT_TRUE(reader->GetF64Array("c", 3, &values).ok());
  EXPECT_EQ(values, (std::vector<double>{1.5, std::numeric_limits<double>::denorm_min(), -3e300}));
  EXPECT_EQ(*reader->GetString("d", 10), "abc");
  EXPECT_TRUE(reader->Finish().ok());
}

TEST(StateFormat, EveryTruncationAndEveryBitFlipIsRefused) {
  const std::string blob = Sample();
  for (size_t n = 0; n < blob.size(); ++n) {
    EXPECT_EQ(StateReader::Open(blob.substr(0, n), "test.kind").status().code(),
              absl::StatusCode::kInvalidArgument)
        << n;
  }
  for (size_t i = 0; i < blob.size(); ++i) {
    for (int bit = 0; bit < 8; ++bit) {
      std::string bad = blob;
      bad[i] ^= static_cast<char>(1 << bit);
      EXPECT_FALSE(StateReader::Open(bad, "test.kind").ok()) << i << ":" << bit;
    }
  }
  EXPECT_FALSE(StateReader::Open(blob + '\0', "test.kind").ok());
}

TEST(StateFormat, WrongKindAndReadsPastTheEndRefused) {
  absl::Status s = StateReader::Open(Sample(), "other.kind").status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("test.kind"), std::string::npos) << s;

  auto reader = *StateReader::Open(Sample(), "test.kind");
  ASSERT_TRUE(reader.GetU64("a").ok());
  EXPECT_FALSE(reader.Finish().ok());  // bytes remain
  ASSERT_TRUE(reader.GetF64("b").ok());
  std::vector<double> values;
  EXPECT_EQ(reader.GetF64Array("c", 4, &values).code(), absl::StatusCode::kInvalidArgument);

  StateWriter writer("test.kind");
  writer.PutU64(uint64_t{1} << 60);  // an array count far beyond the payload
  auto huge = *StateReader::Open(writer.Finish(), "test.kind");
  EXPECT_EQ(huge.GetF64Array("c", uint64_t{1} << 60, &values).code(),
            absl::StatusCode::kInvalidArgument);
  auto huge_string = *StateReader::Open(writer.Finish(), "test.kind");
  EXPECT_EQ(huge_string.GetString("s", 1 << 20).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace edgefl::aggregation
