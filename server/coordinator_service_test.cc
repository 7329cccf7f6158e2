#include "server/coordinator_service.h"

#include <string>

#include <grpcpp/impl/codegen/proto_utils.h>

#include "gtest/gtest.h"

namespace edgefl::server {
namespace {

// The zero-copy chunk must be the very message protobuf would have written.
TEST(ChunkMessage, ParsesAndSizesExactlyAsProtobufsOwnSerialization) {
  std::string payload(300000, '\0');
  for (size_t i = 0; i < payload.size(); ++i) payload[i] = static_cast<char>(i * 131 + 7);
  grpc::Slice whole(payload);
  const std::pair<size_t, size_t> cases[] = {
      {0, 1}, {0, 127}, {0, 128}, {5, 16384}, {127, 200000}, {128, 300000 - 128}, {299999, 1},
      {1u << 14, 0}};
  for (const auto& [offset, n] : cases) {
    SCOPED_TRACE(testing::Message() << "offset " << offset << " n " << n);
    grpc::ByteBuffer wire = ChunkMessage(offset, whole.sub(offset, offset + n));
    proto::CheckInResponse expected;
    expected.mutable_chunk()->set_offset(offset);
    expected.mutable_chunk()->set_data(payload.substr(offset, n));
    EXPECT_EQ(wire.Length(), expected.ByteSizeLong());
    grpc::Slice flat;
    ASSERT_TRUE(wire.DumpToSingleSlice(&flat).ok());
    EXPECT_EQ(std::string(reinterpret_cast<const char*>(flat.begin()), flat.size()),
              expected.SerializeAsString());
    proto::CheckInResponse parsed;
    ASSERT_TRUE(grpc::SerializationTraits<proto::CheckInResponse>::Deserialize(&wire, &parsed).ok());
    ASSERT_TRUE(parsed.has_chunk());
    EXPECT_EQ(parsed.chunk().offset(), offset);
    EXPECT_EQ(parsed.chunk().data(), payload.substr(offset, n));
  }
}

}  // namespace
}  // namespace edgefl::server
