// The device's update pipeline: delta -> (error-feedback residual) -> sparsify -> quantize ->
// encode, under the round's uplink chain; and the downlink side that rebuilds the global model
// from a full download or from an encoded delta against the model the device already holds.
#ifndef EDGEFL_CLIENT_UPDATE_PIPELINE_H_
#define EDGEFL_CLIENT_UPDATE_PIPELINE_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "compression/error_feedback.h"
#include "protos/edgefl.pb.h"

namespace edgefl::client {

struct EncodedUpdate {
  std::string codec;   // "dense" (raw float32) or the canonical chain
  std::string bytes;
  std::vector<float> dense;  // the delta itself, when a dense update was encoded from an rvalue

  // The bytes to upload: `dense` viewed as raw float32 when it is set, else `bytes`.
  std::string_view payload() const {
    return dense.empty() ? std::string_view(bytes)
                         : std::string_view(reinterpret_cast<const char*>(dense.data()),
                                            dense.size() * sizeof(float));
  }
};

// Not thread-safe; one per client process.
class UpdatePipeline {
 public:
  // `state_file` keeps the error-feedback residual across restarts ("" = memory only).
  explicit UpdatePipeline(std::string state_file) : state_file_(std::move(state_file)) {}

  // Loads a residual saved by an earlier run. A missing file is fine; a corrupt one (bad digest
  // or format) is discarded and reported as DATA_LOSS so the caller can warn.
  absl::Status Load();

  // Encodes `delta` (new weights - the model the task trained from, in spec order) under the
  // task's uplink chain. With "ef" in the chain the residual is reset first when it is older than
  // the task's ef_max_staleness allows or has another size, added to the delta, and replaced by
  // what this encoding leaves out; Commit or Rollback must follow. INVALID_ARGUMENT for a chain
  // that does not parse or a delta of the wrong size or with NaN/Inf.
  absl::StatusOr<EncodedUpdate> Encode(const proto::Task& task, absl::Span<const float> delta,
                                       uint64_t seed);
  // The same, consuming `delta` so that at most one copy of the update is alive: a dense update
  // keeps the vector itself (EncodedUpdate::dense, no copy); for other chains it is freed once
  // encoded.
  absl::StatusOr<EncodedUpdate> Encode(const proto::Task& task, std::vector<float>&& delta,
                                       uint64_t seed);
  // The server accepted the last encoded update: keep the new residual and save it atomically.
  absl::Status Commit();
  // The last update was not delivered: restore the residual from before Encode.
  void Rollback();

  // Rebuilds the model of `task` from its downloaded payload into `*model`. For a full download
  // (base_version -1) that is the payload itself; for a delta the payload is decoded and added to
  // `*model`, which must hold version task.base_version() (FAILED_PRECONDITION otherwise, with
  // `*model` unchanged). INVALID_ARGUMENT for a malformed payload.
  static absl::Status ApplyDownload(const proto::Task& task, const std::string& payload,
                                    int64_t held_version, std::vector<float>* model);

  // The residual, for tests (nullptr when no chain with "ef" has run).
  const compression::ErrorFeedback* residual() const { return ef_.get(); }

 private:
  std::string state_file_;
  std::unique_ptr<compression::ErrorFeedback> ef_;
  std::optional<compression::ErrorFeedback> before_;  // for Rollback
  bool pending_ = false;
};

}  // namespace edgefl::client

#endif  // EDGEFL_CLIENT_UPDATE_PIPELINE_H_
