// The gRPC Coordinator service: translates protos and call credentials to access-control,
// registry and scheduler calls, validates every request (server/request_validation.h), counts
// rejections, and streams models and updates in chunks. Holds no round or security policy.
#ifndef EDGEFL_SERVER_COORDINATOR_SERVICE_H_
#define EDGEFL_SERVER_COORDINATOR_SERVICE_H_

#include <cstdint>
#include <string>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "compression/update_codec.h"
#include "protos/edgefl.grpc.pb.h"
#include "server/access_control.h"
#include "server/client_registry.h"
#include "server/request_validation.h"
#include "server/round_scheduler.h"

namespace edgefl::server {

class CoordinatorService final : public proto::Coordinator::Service {
 public:
  struct Options {
    absl::Duration checkin_poll = absl::Seconds(20);  // long-poll hold time
    size_t chunk_bytes = 1 << 20;                     // model chunk size on the downlink
    int max_concurrent_reports = 4;                   // update payloads buffered at once
  };
  // `registry`, `scheduler` and `access` must outlive the service. A null `access` means open
  // enrollment without limits (AccessControl::CreateOpen). Thread-safe.
  CoordinatorService(const Options& options, const proto::ModelSpec& spec, ClientRegistry* registry,
                     RoundScheduler* scheduler, AccessControl* access = nullptr);

  grpc::Status Join(grpc::ServerContext* context, const proto::JoinRequest* request,
                    proto::JoinResponse* response) override;
  grpc::Status CheckIn(grpc::ServerContext* context, const proto::CheckInRequest* request,
                       grpc::ServerWriter<proto::CheckInResponse>* writer) override;
  grpc::Status Report(grpc::ServerContext* context,
                      grpc::ServerReader<proto::ReportRequest>* reader,
                      proto::ReportResponse* response) override;

  // Clients that were told the run is finished (for the shutdown grace period).
  int64_t finished_notices() const;

 private:
  grpc::Status Reject(const absl::Status& status, const std::string& rpc);
  // The caller's certificate identity, bearer token and address. UNAUTHENTICATED for malformed
  // authorization metadata.
  absl::StatusOr<PeerCredentials> CredentialsOf(const grpc::ServerContext* context) const;
  grpc::Status ReportImpl(grpc::ServerContext* context,
                          grpc::ServerReader<proto::ReportRequest>* reader,
                          proto::ReportResponse* response, int64_t* round_for_bytes,
                          uint64_t* bytes_received);
  // Streams a task and its model (the encoded delta when the client holds its base version, else
  // the full model) and counts the bytes against the task's round.
  grpc::Status SendTask(const proto::CheckInRequest& request, const TaskGrant& grant,
                        grpc::ServerWriter<proto::CheckInResponse>* writer);

  const Options options_;
  const ReportLimits limits_;
  ClientRegistry* const registry_;
  RoundScheduler* const scheduler_;
  std::unique_ptr<AccessControl> own_access_;  // when none was given
  AccessControl* const access_;

  mutable absl::Mutex mu_;
  int reports_in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t finished_notices_ ABSL_GUARDED_BY(mu_) = 0;
};

// Lower-case reason names for counting rejections ("invalid_argument", "not_found", ...).
std::string ReasonName(absl::StatusCode code);
// The reason a rejection is counted under: the one attached with WithReason
// (common/status_reason.h, e.g. "unauthenticated_expired", "update_norm"), else ReasonName.
std::string RejectionReason(const absl::Status& status);

}  // namespace edgefl::server

#endif  // EDGEFL_SERVER_COORDINATOR_SERVICE_H_
