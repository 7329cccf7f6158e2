// The device side of the wire contract: every call has a deadline, models are reassembled and
// checked against their SHA-256, updates are chunked. gRPC stays inside this class.
#ifndef EDGEFL_CLIENT_COORDINATOR_CLIENT_H_
#define EDGEFL_CLIENT_COORDINATOR_CLIENT_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "protos/edgefl.grpc.pb.h"

namespace edgefl::client {

class CoordinatorClient {
 public:
  struct Options {
    std::string target = "localhost:50051";
    absl::Duration rpc_timeout = absl::Seconds(60);  // Join, and the floor for Report
    int max_message_mb = 16;
    size_t chunk_bytes = 1 << 20;                    // update chunk size on the uplink
    uint64_t max_model_bytes = 2ULL << 30;           // refuse to download larger models
  };

  struct CheckInResult {
    enum class Kind { kIdle, kFinished, kTask };
    Kind kind = Kind::kIdle;
    proto::Task task;
    std::string payload;      // the model, verified against task.sha256()
    uint64_t bytes_down = 0;  // payload bytes received
  };

  // Creates an insecure channel with keepalive and raised message limits. Thread-safe.
  static std::unique_ptr<CoordinatorClient> Create(const Options& options);

  // Errors are the server's status (NOT_FOUND for an unknown client, UNAVAILABLE when the server
  // is unreachable, DEADLINE_EXCEEDED, ...). A model whose digest or length does not match is
  // DATA_LOSS.
  absl::StatusOr<proto::JoinResponse> Join(const proto::JoinRequest& request);
  absl::StatusOr<CheckInResult> CheckIn(const std::string& client_id, int64_t have_version,
                                        absl::Duration timeout);
  // Fills header.total_bytes and header.sha256 from `payload` and streams it in chunks. The call's
  // deadline is `deadline` (at least rpc_timeout from now).
  absl::StatusOr<proto::ReportResponse> Report(proto::ReportHeader header,
                                               std::string_view payload, absl::Time deadline,
                                               uint64_t* bytes_up);

 private:
  explicit CoordinatorClient(const Options& options, std::shared_ptr<grpc::Channel> channel);
  Options options_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<proto::Coordinator::Stub> stub_;
};

}  // namespace edgefl::client

#endif  // EDGEFL_CLIENT_COORDINATOR_CLIENT_H_
