#include "server/coordinator_service.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/chunking.h"
#include "common/grpc_status.h"
#include "common/log.h"
#include "common/model_layout.h"
#include "common/status_macros.h"
#include "common/status_reason.h"
#include "compression/chain.h"
#include "compression/update_codec.h"
#include "models/model_spec.h"

namespace edgefl::server {

std::string ReasonName(absl::StatusCode code) {
  return absl::AsciiStrToLower(absl::StatusCodeToString(code));
}

std::string RejectionReason(const absl::Status& status) {
  std::optional<std::string> reason = ReasonOf(status);
  return reason ? *reason : ReasonName(status.code());
}

CoordinatorService::CoordinatorService(const Options& options, const proto::ModelSpec& spec,
                                       ClientRegistry* registry, RoundScheduler* scheduler,
                                       AccessControl* access)
    : options_(options),
      limits_{spec, LayoutOf(spec),
              static_cast<uint64_t>(models::NumParameters(spec)) * sizeof(float)},
      registry_(registry),
      scheduler_(scheduler),
      own_access_(access == nullptr ? AccessControl::CreateOpen(registry, Clock::Real()) : nullptr),
      access_(access == nullptr ? own_access_.get() : access) {}

grpc::Status CoordinatorService::Reject(const absl::Status& status, const std::string& rpc) {
  scheduler_->CountRejection(RejectionReason(status));
  // Messages never carry token text (server/tokens.h), so the status is safe to log.
  EDGEFL_LOG_WARN(rpc, " rejected: ", StatusText(status));
  return ToGrpcStatus(status);
}

int64_t CoordinatorService::finished_notices() const {
  absl::MutexLock lock(&mu_);
  return finished_notices_;
}

absl::StatusOr<PeerCredentials> CoordinatorService::CredentialsOf(
    const grpc::ServerContext* context) const {
  PeerCredentials creds;
  creds.peer = context->peer();
  const auto& metadata = context->client_metadata();
  auto range = metadata.equal_range("authorization");
  if (range.first != range.second) {
    if (std::next(range.first) != range.second) {
      return TokenStatus(TokenError::kMalformed, "more than one authorization entry");
    }
    const grpc::string_ref value = range.first->second;
    absl::StatusOr<std::string> bearer = ParseBearer(absl::string_view(value.data(), value.size()));
    if (!bearer.ok()) return bearer.status();
    creds.bearer = std::move(*bearer);
  }
  std::shared_ptr<const grpc::AuthContext> auth = context->auth_context();
  if (auth != nullptr && auth->IsPeerAuthenticated()) {
    // The first Subject Alternative Name of the verified certificate, or its Common Name.
    std::vector<grpc::string_ref> identity = auth->GetPeerIdentity();
    if (!identity.empty()) creds.cert_identity.assign(identity[0].data(), identity[0].size());
  }
  return creds;
}

grpc::Status CoordinatorService::Join(grpc::ServerContext* context,
                                      const proto::JoinRequest* request,
                                      proto::JoinResponse* response) {
  absl::StatusOr<PeerCredentials> creds = CredentialsOf(context);
  if (!creds.ok()) return Reject(creds.status(), "Join");
  if (absl::Status s = ValidateJoinRequest(*request); !s.ok()) return Reject(s, "Join");
  absl::StatusOr<AccessControl::JoinGrant> grant = access_->Join(*creds, request->profile());
  if (!grant.ok()) return Reject(grant.status(), "Join");
  response->set_client_id(grant->client_id);
  response->set_lease_seconds(absl::ToDoubleSeconds(registry_->lease()));
  response->set_checkin_poll_seconds(absl::ToDoubleSeconds(options_.checkin_poll));
  response->set_session_token(grant->session_token);
  response->set_session_expires_unix_seconds(absl::ToUnixSeconds(grant->session_expires));
  const auto& p = request->profile();
  EDGEFL_LOG_INFO("client ", grant->client_id, " joined from ", context->peer(), " via ",
                  grant->how, " (", absl::CHexEscape(p.arch()), ", ", p.cores(), " cores, ",
                  p.num_samples(), " samples)");
  return grpc::Status::OK;
}

grpc::Status CoordinatorService::CheckIn(grpc::ServerContext* context,
                                         const proto::CheckInRequest* request,
                                         grpc::ServerWriter<proto::CheckInResponse>* writer) {
  absl::StatusOr<PeerCredentials> creds = CredentialsOf(context);
  if (!creds.ok()) return Reject(creds.status(), "CheckIn");
  absl::StatusOr<std::string> caller = access_->Authenticate(*creds);
  if (!caller.ok()) return Reject(caller.status(), "CheckIn");
  // A client fetches only its own task: the poll below is keyed by the authenticated id.
  if (absl::Status s = CheckClientBinding(*caller, request->client_id(), "CheckIn"); !s.ok()) {
    return Reject(s, "CheckIn");
  }
  if (absl::Status s = ValidateCheckInRequest(*request); !s.ok()) return Reject(s, "CheckIn");
  if (absl::Status s = access_->AdmitCheckIn(*caller); !s.ok()) return Reject(s, "CheckIn");
  if (absl::Status s = registry_->Touch(*caller); !s.ok()) return Reject(s, "CheckIn");
  // The device's refreshed state decides its eligibility from now on; a declined task is counted
  // and no longer waited for.
  if (request->has_profile()) registry_->UpdateProfile(*caller, request->profile()).IgnoreError();
  if (!request->declined_reason().empty()) {
    scheduler_->Decline(*caller, request->declined_round(), request->declined_attempt(),
                        request->declined_reason());
  }
  // Hold the poll a little shorter than the client's own deadline allows.
  absl::Duration wait = options_.checkin_poll;
  if (context->deadline() != std::chrono::system_clock::time_point::max()) {
    const absl::Duration left =
        absl::FromChrono(context->deadline() - std::chrono::system_clock::now());
    wait = std::min(wait, left - absl::Seconds(2));
  }
  TaskGrant grant;
  const PollOutcome outcome = scheduler_->WaitForTask(
      *caller, std::max(wait, absl::ZeroDuration()), [context] { return context->IsCancelled(); },
      &grant);
  proto::CheckInResponse msg;
  if (outcome == PollOutcome::kFinished) {
    {
      absl::MutexLock lock(&mu_);
      ++finished_notices_;
    }
    if (request->want_final_model() && grant.model != nullptr) {
      return SendTask(*request, grant, writer);
    }
    msg.set_finished(true);
    writer->Write(msg);
    return grpc::Status::OK;
  }
  if (outcome == PollOutcome::kIdle) {
    msg.set_idle(true);
    writer->Write(msg);
    return grpc::Status::OK;
  }
  return SendTask(*request, grant, writer);
}

grpc::Status CoordinatorService::SendTask(const proto::CheckInRequest& request,
                                          const TaskGrant& grant,
                                          grpc::ServerWriter<proto::CheckInResponse>* writer) {
  // A client that holds the delta's base version gets the (small) encoded delta, any other the
  // full reference model.
  const ModelSnapshot& model = *grant.model;
  const bool use_delta = !model.delta_payload.empty() &&
                         request.have_model_version() == model.delta_base_version;
  const std::string& payload = use_delta ? model.delta_payload : model.payload;
  proto::CheckInResponse msg;
  proto::Task* task = msg.mutable_task();
  *task = grant.task;
  task->set_downlink_codec(use_delta ? model.downlink_codec : "dense");
  task->set_base_version(use_delta ? model.delta_base_version : -1);
  task->set_total_bytes(payload.size());
  task->set_sha256(use_delta ? model.delta_sha256 : model.sha256);
  // Traffic is counted as serialized messages, i.e. what goes on the wire above HTTP/2. The final
  // model, sent after the last round closed, is not counted in any round.
  const bool count = !grant.task.final_model();
  uint64_t sent = msg.ByteSizeLong();
  if (!writer->Write(msg)) return grpc::Status(grpc::StatusCode::CANCELLED, "client went away");
  for (size_t off = 0; off < payload.size(); off += options_.chunk_bytes) {
    const size_t n = std::min(options_.chunk_bytes, payload.size() - off);
    proto::CheckInResponse chunk;
    chunk.mutable_chunk()->set_offset(off);
    chunk.mutable_chunk()->set_data(payload.data() + off, n);
    if (!writer->Write(chunk)) {
      if (count) scheduler_->AddBytesDown(grant.task.round(), sent);
      return grpc::Status(grpc::StatusCode::CANCELLED, "client went away mid-download");
    }
    sent += chunk.ByteSizeLong();
  }
  if (count) scheduler_->AddBytesDown(grant.task.round(), sent);
  return grpc::Status::OK;
}

grpc::Status CoordinatorService::Report(grpc::ServerContext* context,
                                        grpc::ServerReader<proto::ReportRequest>* reader,
                                        proto::ReportResponse* response) {
  int64_t round = -1;
  uint64_t bytes = 0;
  grpc::Status status = ReportImpl(context, reader, response, &round, &bytes);
  if (round >= 0 && bytes > 0) scheduler_->AddBytesUp(round, bytes);
  return status;
}

grpc::Status CoordinatorService::ReportImpl(grpc::ServerContext* context,
                                            grpc::ServerReader<proto::ReportRequest>* reader,
                                            proto::ReportResponse* response,
                                            int64_t* round_for_bytes, uint64_t* bytes_received) {
  // Authenticate before reading anything the caller sends.
  absl::StatusOr<PeerCredentials> creds = CredentialsOf(context);
  if (!creds.ok()) return Reject(creds.status(), "Report");
  absl::StatusOr<std::string> caller = access_->Authenticate(*creds);
  if (!caller.ok()) return Reject(caller.status(), "Report");
  proto::ReportRequest msg;
  if (!reader->Read(&msg) || !msg.has_header()) {
    return Reject(absl::InvalidArgumentError("a Report stream must start with a header"),
                  "Report");
  }
  const proto::ReportHeader header = msg.header();
  // A client reports only for itself; the scheduler then checks it was selected for this round,
  // has not reported yet, and reports against the open round's model.
  if (absl::Status s = CheckClientBinding(*caller, header.client_id(), "Report"); !s.ok()) {
    return Reject(s, "Report");
  }
  *round_for_bytes = header.round();
  *bytes_received += msg.ByteSizeLong();
  if (absl::Status s = registry_->Touch(*caller); !s.ok()) return Reject(s, "Report");
  if (absl::Status s = scheduler_->CheckReport(header); !s.ok()) return Reject(s, "Report");
  absl::StatusOr<ReportPlan> plan =
      ValidateReportHeader(header, limits_, scheduler_->current_uplink());
  // From here on a bad update (INVALID_ARGUMENT) also ends the client's attempt.
  if (!plan.ok()) return Reject(scheduler_->RefuseReport(header, plan.status()), "Report");
  if (absl::Status s = access_->ChargeUpdateBytes(*caller, header.round(), header.total_bytes());
      !s.ok()) {
    return Reject(s, "Report");
  }

  // Bound the number of payloads buffered at once, so server memory does not grow with clients.
  {
    absl::MutexLock lock(&mu_);
    auto has_room = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return reports_in_flight_ < options_.max_concurrent_reports;
    };
    if (!mu_.AwaitWithTimeout(absl::Condition(&has_room), absl::Seconds(60))) {
      return Reject(absl::ResourceExhaustedError("too many updates in flight; retry"), "Report");
    }
    ++reports_in_flight_;
  }
  struct Release {
    CoordinatorService* self;
    ~Release() {
      absl::MutexLock lock(&self->mu_);
      --self->reports_in_flight_;
    }
  } release{this};

  ChunkAssembler assembler(plan->max_bytes);
  if (absl::Status s = assembler.Start(header.total_bytes(), header.sha256()); !s.ok()) {
    return Reject(scheduler_->RefuseReport(header, s), "Report");
  }
  while (reader->Read(&msg)) {
    if (!msg.has_chunk()) {
      return Reject(scheduler_->RefuseReport(
                        header, absl::InvalidArgumentError("a second header in one Report stream")),
                    "Report");
    }
    *bytes_received += msg.ByteSizeLong();
    if (absl::Status s = assembler.Add(msg.chunk().offset(), msg.chunk().data()); !s.ok()) {
      return Reject(scheduler_->RefuseReport(header, s), "Report");
    }
  }
  if (context->IsCancelled()) return grpc::Status(grpc::StatusCode::CANCELLED, "cancelled");
  std::string payload;
  if (absl::Status s = assembler.Finish(&payload); !s.ok()) {
    return Reject(scheduler_->RefuseReport(header, s), "Report");
  }
  // Count the traffic before the update can close the round (the round's stats are taken then).
  scheduler_->AddBytesUp(header.round(), *bytes_received);
  *bytes_received = 0;
  absl::Status submitted;
  if (plan->dense) {
    // The payload's heap buffer is suitably aligned; the wire format is little-endian float32.
    submitted = scheduler_->SubmitUpdate(
        header, absl::MakeConstSpan(reinterpret_cast<const float*>(payload.data()),
                                    payload.size() / sizeof(float)));
  } else {
    submitted = scheduler_->SubmitEncodedUpdate(header, payload, plan->chain);
  }
  if (!submitted.ok()) return Reject(submitted, "Report");
  response->set_accepted(true);
  response->set_message(absl::StrCat("update for round ", header.round(), " accepted"));
  return grpc::Status::OK;
}

}  // namespace edgefl::server
