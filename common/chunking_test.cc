#include "common/chunking.h"

#include <string>

#include "common/sha256.h"
#include "gtest/gtest.h"

namespace edgefl {
namespace {

std::string Payload(size_t size) {
  std::string data(size, '\0');
  uint32_t x = 12345;
  for (char& c : data) {
    x = x * 1664525u + 1013904223u;
    c = static_cast<char>(x >> 24);
  }
  return data;
}

TEST(ChunkAssembler, SplitsAndReassemblesLargePayload) {
  const std::string payload = Payload(10 * (1 << 20) + 12345);  // 10 MiB and a partial chunk
  ChunkAssembler assembler(64 << 20);
  ASSERT_TRUE(assembler.Start(payload.size(), Sha256::Of(payload)).ok());
  int chunks = 0;
  for (size_t offset = 0; offset < payload.size(); offset += kDefaultChunkBytes) {
    const std::string_view chunk = std::string_view(payload).substr(offset, kDefaultChunkBytes);
    ASSERT_TRUE(assembler.Add(offset, chunk).ok()) << offset;
    ++chunks;
  }
  EXPECT_EQ(chunks, 11);
  EXPECT_EQ(assembler.received(), payload.size());
  std::string out;
  ASSERT_TRUE(assembler.Finish(&out).ok());
  EXPECT_EQ(out.size(), payload.size());
  EXPECT_TRUE(out == payload);
}

TEST(ChunkAssembler, RejectsWrongOffsetAndOrder) {
  const std::string payload = Payload(3000);
  ChunkAssembler assembler(1 << 20);
  ASSERT_TRUE(assembler.Start(payload.size(), Sha256::Of(payload)).ok());
  // The second chunk first.
  EXPECT_EQ(assembler.Add(1000, std::string_view(payload).substr(1000, 1000)).code(),
            absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(assembler.Add(0, std::string_view(payload).substr(0, 1000)).ok());
  // A repeated chunk.
  EXPECT_EQ(assembler.Add(0, std::string_view(payload).substr(0, 1000)).code(),
            absl::StatusCode::kInvalidArgument);
  // A gap.
  EXPECT_EQ(assembler.Add(2000, std::string_view(payload).substr(2000)).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(assembler.received(), 1000u);
  // The stream can still complete correctly.
  ASSERT_TRUE(assembler.Add(1000, std::string_view(payload).substr(1000)).ok());
  std::string out;
  ASSERT_TRUE(assembler.Finish(&out).ok());
  EXPECT_EQ(out, payload);
}

TEST(ChunkAssembler, RejectsOversizedAndEmptyChunks) {
  const std::string payload = Payload(kMaxChunkBytes + 1);
  ChunkAssembler assembler(16 << 20);
  ASSERT_TRUE(assembler.Start(payload.size(), Sha256::Of(payload)).ok());
  absl::Status status = assembler.Add(0, payload);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find("exceeds"), absl::string_view::npos) << status;
  EXPECT_EQ(assembler.Add(0, "").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(assembler.received(), 0u);
  // Exactly kMaxChunkBytes is accepted.
  EXPECT_TRUE(assembler.Add(0, std::string_view(payload).substr(0, kMaxChunkBytes)).ok());
}

TEST(ChunkAssembler, RejectsOverrun) {
  const std::string payload = Payload(1500);
  ChunkAssembler assembler(1 << 20);
  ASSERT_TRUE(assembler.Start(1000, Sha256::Of(payload.substr(0, 1000))).ok());
  ASSERT_TRUE(assembler.Add(0, std::string_view(payload).substr(0, 600)).ok());
  EXPECT_EQ(assembler.Add(600, std::string_view(payload).substr(600, 600)).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(assembler.received(), 600u);
}

TEST(ChunkAssembler, RejectsShortPayload) {
  const std::string payload = Payload(2000);
  ChunkAssembler assembler(1 << 20);
  ASSERT_TRUE(assembler.Start(payload.size(), Sha256::Of(payload)).ok());
  ASSERT_TRUE(assembler.Add(0, std::string_view(payload).substr(0, 1999)).ok());
  std::string out = "untouched";
  EXPECT_EQ(assembler.Finish(&out).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(out, "untouched");
}

TEST(ChunkAssembler, BadDigestIsDataLoss) {
  std::string payload = Payload(5000);
  ChunkAssembler assembler(1 << 20);
  ASSERT_TRUE(assembler.Start(payload.size(), Sha256::Of(payload)).ok());
  payload[4321] ^= 1;  // corrupted in transit
  ASSERT_TRUE(assembler.Add(0, payload).ok());
  std::string out = "untouched";
  EXPECT_EQ(assembler.Finish(&out).code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(out, "untouched");
}

TEST(ChunkAssembler, RejectsTotalAboveMaximumAndBadDigestLength) {
  ChunkAssembler assembler(1000);
  const std::string digest = Sha256::Of("x");
  EXPECT_EQ(assembler.Start(1001, digest).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(assembler.Add(0, "x").code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(assembler.Start(10, digest.substr(0, 31)).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(assembler.Start(1000, digest).ok());
}

TEST(ChunkAssembler, EmptyPayload) {
  ChunkAssembler assembler(1000);
  ASSERT_TRUE(assembler.Start(0, Sha256::Of("")).ok());
  std::string out = "x";
  ASSERT_TRUE(assembler.Finish(&out).ok());
  EXPECT_EQ(out, "");
}

TEST(ChunkAssembler, StartResetsPreviousTransfer) {
  const std::string a = Payload(100), b = Payload(50);
  ChunkAssembler assembler(1000);
  ASSERT_TRUE(assembler.Start(a.size(), Sha256::Of(a)).ok());
  ASSERT_TRUE(assembler.Add(0, a.substr(0, 40)).ok());
  ASSERT_TRUE(assembler.Start(b.size(), Sha256::Of(b)).ok());
  EXPECT_EQ(assembler.received(), 0u);
  ASSERT_TRUE(assembler.Add(0, b).ok());
  std::string out;
  ASSERT_TRUE(assembler.Finish(&out).ok());
  EXPECT_EQ(out, b);
}

}  // namespace
}  // namespace edgefl
