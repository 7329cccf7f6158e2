// Splitting a payload into chunks and reassembling it with a SHA-256 check.
#ifndef EDGEFL_COMMON_CHUNKING_H_
#define EDGEFL_COMMON_CHUNKING_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/status.h"

namespace edgefl {

// Default chunk size on the wire (1 MiB), well under gRPC's message limits.
inline constexpr size_t kDefaultChunkBytes = 1 << 20;
// The largest chunk a receiver accepts.
inline constexpr size_t kMaxChunkBytes = 4 << 20;

// Reassembles a payload announced as `total_bytes` with digest `sha256` (32 raw bytes).
// Not thread-safe.
class ChunkAssembler {
 public:
  // `max_total_bytes` bounds what a sender may announce (RESOURCE_EXHAUSTED / INVALID_ARGUMENT
  // from Start when exceeded).
  explicit ChunkAssembler(uint64_t max_total_bytes) : max_total_bytes_(max_total_bytes) {}

  // INVALID_ARGUMENT if total_bytes exceeds the maximum or the digest is not 32 bytes.
  absl::Status Start(uint64_t total_bytes, std::string_view sha256);
  // Chunks must arrive in order: INVALID_ARGUMENT when `offset` is not the number of bytes received
  // so far, when the chunk is empty or larger than kMaxChunkBytes, or when it would run past the
  // announced total.
  absl::Status Add(uint64_t offset, std::string_view data);
  // INVALID_ARGUMENT when fewer bytes than announced arrived; DATA_LOSS when the digest differs.
  // On success the payload is moved into `*out`.
  absl::Status Finish(std::string* out);

  uint64_t received() const { return buffer_.size(); }

 private:
  uint64_t max_total_bytes_;
  uint64_t total_ = 0;
  std::string expected_sha_;
  std::string buffer_;
  bool started_ = false;
};

}  // namespace edgefl

#endif  // EDGEFL_COMMON_CHUNKING_H_
