#include "common/chunking.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/sha256.h"

namespace edgefl {

absl::Status ChunkAssembler::Start(uint64_t total_bytes, std::string_view sha256) {
  started_ = false;
  buffer_.clear();
  total_ = 0;
  expected_sha_.clear();
  if (total_bytes > max_total_bytes_) {
    return absl::InvalidArgumentError(absl::StrCat("announced payload of ", total_bytes,
                                                   " bytes exceeds the maximum of ",
                                                   max_total_bytes_, " bytes"));
  }
  if (sha256.size() != 32) {
    return absl::InvalidArgumentError(
        absl::StrCat("sha256 digest must be 32 bytes, got ", sha256.size()));
  }
  total_ = total_bytes;
  expected_sha_ = std::string(sha256);
  buffer_.reserve(total_bytes);
  started_ = true;
  return absl::OkStatus();
}

absl::Status ChunkAssembler::Add(uint64_t offset, std::string_view data) {
  if (!started_) {
    return absl::FailedPreconditionError("chunk received before the payload was announced");
  }
  if (offset != buffer_.size()) {
    return absl::InvalidArgumentError(absl::StrCat("chunk at offset ", offset, ", expected offset ",
                                                   buffer_.size(), " (chunks must be in order)"));
  }
  if (data.empty()) return absl::InvalidArgumentError("empty chunk");
  if (data.size() > kMaxChunkBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "chunk of ", data.size(), " bytes exceeds the maximum of ", kMaxChunkBytes, " bytes"));
  }
  if (data.size() > total_ - buffer_.size()) {
    return absl::InvalidArgumentError(absl::StrCat("chunk of ", data.size(), " bytes at offset ",
                                                   offset, " runs past the announced total of ",
                                                   total_, " bytes"));
  }
  buffer_.append(data.data(), data.size());
  return absl::OkStatus();
}

absl::Status ChunkAssembler::Finish(std::string* out) {
  if (!started_) {
    return absl::FailedPreconditionError("Finish called before the payload was announced");
  }
  if (buffer_.size() != total_) {
    return absl::InvalidArgumentError(
        absl::StrCat("payload incomplete: received ", buffer_.size(), " of ", total_, " bytes"));
  }
  const std::string actual = Sha256::Of(buffer_);
  if (actual != expected_sha_) {
    return absl::DataLossError(absl::StrCat("payload sha256 mismatch: expected ",
                                            ToHex(expected_sha_), ", got ", ToHex(actual)));
  }
  *out = std::move(buffer_);
  buffer_.clear();
  started_ = false;
  return absl::OkStatus();
}

}  // namespace edgefl
