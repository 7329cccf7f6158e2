// The gRPC Coordinator service: translates protos and call credentials to access-control,
// registry and scheduler calls, validates every request (server/request_validation.h), counts
// rejections, and streams models and updates in chunks. Holds no round or security policy.
#ifndef EDGEFL_SERVER_COORDINATOR_SERVICE_H_
#define EDGEFL_SERVER_COORDINATOR_SERVICE_H_

#include <cstdint>
#include <memory>
#include <string>
#include <thread>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "compression/update_codec.h"
#include "protos/edgefl.grpc.pb.h"
#include "server/access_control.h"
#include "server/client_registry.h"
#include "server/poll_hub.h"
#include "server/request_validation.h"
#include "server/round_scheduler.h"

namespace edgefl::server {

// Join and Report are synchronous handlers (short, or bounded by admission control below);
// CheckIn uses gRPC's callback API: a waiting long poll holds no thread, only an entry in the
// PollHub (server/poll_hub.h), and the model download streams chunks that point into the one
// shared immutable ModelSnapshot of its version (no per-device copy of the model).
class CoordinatorService final
    : public proto::Coordinator::WithRawCallbackMethod_CheckIn<proto::Coordinator::Service> {
 public:
  struct Options {
    absl::Duration checkin_poll = absl::Seconds(20);  // long-poll hold time
    size_t chunk_bytes = 1 << 20;                     // model chunk size on the downlink
    // Uploads received at once (each buffers up to its update's size). One more is refused at
    // once with RESOURCE_EXHAUSTED and a "retry-after-ms" trailer (the device retries within the
    // round's deadline), so memory and threads do not grow with the number of devices.
    int max_concurrent_reports = 4;
    // The least hint in that trailer; it grows with the devices waiting (AdmitReport).
    absl::Duration report_retry_after = absl::Milliseconds(500);
    // An upload that receives nothing for this long is cancelled (counted as "report_stalled"),
    // so a stalled device cannot hold an upload slot.
    absl::Duration report_stall_timeout = absl::Seconds(30);
  };
  // `registry`, `scheduler` and `access` must outlive the service. A null `access` means open
  // enrollment without limits (AccessControl::CreateOpen). Thread-safe. Sets the scheduler's
  // change listener (RoundScheduler::SetChangeListener) and removes it when destroyed; destroy
  // the service only after the gRPC server that serves it has shut down.
  CoordinatorService(const Options& options, const proto::ModelSpec& spec, ClientRegistry* registry,
                     RoundScheduler* scheduler, AccessControl* access = nullptr);
  ~CoordinatorService() override;

  grpc::Status Join(grpc::ServerContext* context, const proto::JoinRequest* request,
                    proto::JoinResponse* response) override;
  // CheckInRequest in, CheckInResponse messages out (raw, so that model chunks can reference the
  // snapshot's memory). Answers at once when a task, the final model or "finished" is ready,
  // otherwise waits in the PollHub up to checkin_poll (and 2 s short of the caller's deadline).
  grpc::ServerWriteReactor<grpc::ByteBuffer>* CheckIn(grpc::CallbackServerContext* context,
                                                      const grpc::ByteBuffer* request) override;
  grpc::Status Report(grpc::ServerContext* context,
                      grpc::ServerReader<proto::ReportRequest>* reader,
                      proto::ReportResponse* response) override;

  // Clients that were told the run is finished (for the shutdown grace period).
  int64_t finished_notices() const;
  // CheckIn long polls waiting for a task now, and uploads being received now.
  size_t pending_polls() const;
  int reports_in_flight() const;

 private:
  class CheckInReactor;
  grpc::Status Reject(const absl::Status& status, const std::string& rpc);
  // The caller's certificate identity, bearer token and address. UNAUTHENTICATED for malformed
  // authorization metadata.
  absl::StatusOr<PeerCredentials> CredentialsOf(const grpc::ServerContextBase* context) const;
  grpc::Status ReportImpl(grpc::ServerContext* context,
                          grpc::ServerReader<proto::ReportRequest>* reader,
                          proto::ReportResponse* response, int64_t* round_for_bytes,
                          uint64_t* bytes_received);
  // Streams a task and its model (the encoded delta when the client holds its base version, else
  // the full model) and counts the bytes against the task's round.
  // Admits an upload of `client_id` or refuses it (RESOURCE_EXHAUSTED) when max_concurrent_reports
  // are being received or the client already has one in flight. On OK the caller must call
  // ReleaseReport(context) when the upload ends.
  // `retry_after` is the hint a refused device gets: about how long the uploads queued ahead of
  // it take (devices refused in the last 10 s / max_concurrent_reports x the mean upload time).
  absl::Status AdmitReport(const std::string& client_id, grpc::ServerContext* context,
                           absl::Duration* retry_after);
  void ReleaseReport(grpc::ServerContext* context);
  void ProgressReport(grpc::ServerContext* context);
  void StallWatch();
  // True when StallWatch cancelled this upload; StallStatus is what the device is told.
  bool Stalled(grpc::ServerContext* context) const;
  absl::Status StallStatus() const;

  const Options options_;
  const ReportLimits limits_;
  ClientRegistry* const registry_;
  RoundScheduler* const scheduler_;
  std::unique_ptr<AccessControl> own_access_;  // when none was given
  AccessControl* const access_;

  std::unique_ptr<PollHub> hub_;

  struct Upload {
    std::string client_id;
    absl::Time last_progress;
    absl::Time started;
  };
  mutable absl::Mutex mu_;
  absl::flat_hash_map<grpc::ServerContext*, Upload> uploads_ ABSL_GUARDED_BY(mu_);
  // Uploads StallWatch cancelled, until their handler returns (they hold no slot).
  absl::flat_hash_set<grpc::ServerContext*> stalled_ ABSL_GUARDED_BY(mu_);
  int64_t finished_notices_ ABSL_GUARDED_BY(mu_) = 0;
  absl::flat_hash_map<std::string, absl::Time> waiting_ ABSL_GUARDED_BY(mu_);  // refused, when
  double upload_seconds_ewma_ ABSL_GUARDED_BY(mu_) = 1.0;
  absl::Time busy_logged_at_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  int64_t busy_unlogged_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread stall_watch_;
};

// The wire form of CheckInResponse{chunk: {offset, data}} with `data` referenced, not copied (the
// downlink's zero-copy chunks). Parses exactly as protobuf's own serialization of that message.
grpc::ByteBuffer ChunkMessage(uint64_t offset, const grpc::Slice& data);

// Lower-case reason names for counting rejections ("invalid_argument", "not_found", ...).
std::string ReasonName(absl::StatusCode code);
// The reason a rejection is counted under: the one attached with WithReason
// (common/status_reason.h, e.g. "unauthenticated_expired", "update_norm"), else ReasonName.
std::string RejectionReason(const absl::Status& status);

}  // namespace edgefl::server

#endif  // EDGEFL_SERVER_COORDINATOR_SERVICE_H_
