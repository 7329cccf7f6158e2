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
      access_(access == nullptr ? own_access_.get() : access) {
  hub_ = std::make_unique<PollHub>(
      [scheduler](const std::string& client_id, TaskGrant* grant) {
        return scheduler->TryTask(client_id, grant);
      },
      Clock::Real());
  scheduler_->SetChangeListener([hub = hub_.get()] { hub->Notify(); });
  stall_watch_ = std::thread([this] { StallWatch(); });
}

CoordinatorService::~CoordinatorService() {
  scheduler_->SetChangeListener(nullptr);
  hub_->Stop();
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  stall_watch_.join();
}

size_t CoordinatorService::pending_polls() const { return hub_->pending(); }

int CoordinatorService::reports_in_flight() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int>(uploads_.size());
}

absl::Status CoordinatorService::AdmitReport(const std::string& client_id,
                                             grpc::ServerContext* context,
                                             absl::Duration* retry_after) {
  absl::MutexLock lock(&mu_);
  const absl::Time now = absl::Now();
  // Devices refused lately and not admitted since: the queue a refused device waits behind.
  absl::erase_if(waiting_, [now](const auto& kv) { return now - kv.second > absl::Seconds(10); });
  auto refuse = [&](absl::Status status) {
    waiting_[client_id] = now;
    // About how long the uploads ahead of it take through max_concurrent_reports slots (the
    // device adds its own jitter), within [report_retry_after, 60 s].
    const double ahead = static_cast<double>(waiting_.size()) / options_.max_concurrent_reports;
    *retry_after = std::clamp(absl::Seconds(ahead * upload_seconds_ewma_),
                              options_.report_retry_after, absl::Seconds(60));
    return status;
  };
  for (const auto& [ctx, upload] : uploads_) {
    if (upload.client_id == client_id) {
      return refuse(WithReason(absl::ResourceExhaustedError(
                                   "this client already has an upload in flight; retry after it ends"),
                               "report_in_flight"));
    }
  }
  if (static_cast<int>(uploads_.size()) >= options_.max_concurrent_reports) {
    return refuse(WithReason(absl::ResourceExhaustedError(absl::StrCat(
                                 "the server is receiving ", uploads_.size(),
                                 " updates already; retry after the retry-after-ms trailer")),
                             "report_busy"));
  }
  waiting_.erase(client_id);
  uploads_[context] = Upload{client_id, now, now};
  return absl::OkStatus();
}

void CoordinatorService::ReleaseReport(grpc::ServerContext* context) {
  absl::MutexLock lock(&mu_);
  stalled_.erase(context);
  auto it = uploads_.find(context);
  if (it == uploads_.end()) return;
  const double took = absl::ToDoubleSeconds(absl::Now() - it->second.started);
  upload_seconds_ewma_ = 0.9 * upload_seconds_ewma_ + 0.1 * took;
  uploads_.erase(it);
}

void CoordinatorService::ProgressReport(grpc::ServerContext* context) {
  absl::MutexLock lock(&mu_);
  if (auto it = uploads_.find(context); it != uploads_.end()) it->second.last_progress = absl::Now();
}

bool CoordinatorService::Stalled(grpc::ServerContext* context) const {
  absl::MutexLock lock(&mu_);
  return stalled_.contains(context);
}

absl::Status CoordinatorService::StallStatus() const {
  return WithReason(absl::DeadlineExceededError(absl::StrCat(
                        "upload stalled: nothing received for ",
                        absl::FormatDuration(options_.report_stall_timeout), "; cancelled")),
                    "report_stalled");
}

void CoordinatorService::StallWatch() {
  absl::MutexLock lock(&mu_);
  while (!stopping_) {
    const absl::Time now = absl::Now();
    absl::Time next = now + options_.report_stall_timeout;
    for (auto it = uploads_.begin(); it != uploads_.end();) {
      const absl::Time due = it->second.last_progress + options_.report_stall_timeout;
      if (due > now) {
        next = std::min(next, due);
        ++it;
        continue;
      }
      EDGEFL_LOG_WARN("Report from ", it->second.client_id, ": nothing received for ",
                      absl::FormatDuration(options_.report_stall_timeout), "; cancelling it");
      // Its slot is free at once (the device may retry right away); the handler, woken by the
      // cancellation, finds it in stalled_ and counts it.
      it->first->TryCancel();
      stalled_.insert(it->first);
      uploads_.erase(it++);
    }
    auto stop = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stopping_; };
    mu_.AwaitWithDeadline(absl::Condition(&stop), next);
  }
}

grpc::Status CoordinatorService::Reject(const absl::Status& status, const std::string& rpc) {
  const std::string reason = RejectionReason(status);
  scheduler_->CountRejection(reason);
  // A busy server refuses many uploads a second with a large fleet: those are counted always but
  // logged once per 10 s with how many were not.
  if (reason == "report_busy") {
    absl::MutexLock lock(&mu_);
    const absl::Time now = absl::Now();
    if (now - busy_logged_at_ < absl::Seconds(10)) {
      ++busy_unlogged_;
      return ToGrpcStatus(status);
    }
    EDGEFL_LOG_WARN(rpc, " rejected: ", StatusText(status), " (", busy_unlogged_,
                    " more such refusals in the last 10 s, not logged)");
    busy_logged_at_ = now;
    busy_unlogged_ = 0;
    return ToGrpcStatus(status);
  }
  // Messages never carry token text (server/tokens.h), so the status is safe to log.
  EDGEFL_LOG_WARN(rpc, " rejected: ", StatusText(status));
  return ToGrpcStatus(status);
}

int64_t CoordinatorService::finished_notices() const {
  absl::MutexLock lock(&mu_);
  return finished_notices_;
}

absl::StatusOr<PeerCredentials> CoordinatorService::CredentialsOf(
    const grpc::ServerContextBase* context) const {
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
  response->set_model_bytes(limits_.dense_bytes);
  response->set_session_token(grant->session_token);
  response->set_session_expires_unix_seconds(absl::ToUnixSeconds(grant->session_expires));
  const auto& p = request->profile();
  EDGEFL_LOG_INFO("client ", grant->client_id, " joined from ", context->peer(), " via ",
                  grant->how, " (", absl::CHexEscape(p.arch()), ", ", p.cores(), " cores, ",
                  p.num_samples(), " samples)");
  return grpc::Status::OK;
}

namespace {

void AppendVarint(uint64_t v, std::string* out) {
  while (v >= 0x80) {
    out->push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out->push_back(static_cast<char>(v));
}

size_t VarintSize(uint64_t v) {
  size_t n = 1;
  while (v >= 0x80) {
    v >>= 7;
    ++n;
  }
  return n;
}

grpc::ByteBuffer Serialize(const proto::CheckInResponse& msg) {
  grpc::Slice slice(msg.SerializeAsString());
  return grpc::ByteBuffer(&slice, 1);
}

}  // namespace

// The wire form of `CheckInResponse{chunk: {offset, data}}` whose data is `data`, a slice that
// points into a snapshot: the few framing bytes are written here, the data is referenced, not
// copied. Parses as the message protobuf would serialize (tested in coordinator_service_test).
grpc::ByteBuffer ChunkMessage(uint64_t offset, const grpc::Slice& data) {
  constexpr char kChunkTag = (2 << 3) | 2;   // CheckInResponse.chunk, length-delimited
  constexpr char kOffsetTag = (1 << 3) | 0;  // Chunk.offset, varint
  constexpr char kDataTag = (2 << 3) | 2;    // Chunk.data, length-delimited
  const uint64_t n = data.size();
  // proto3 leaves zero scalars and empty bytes out.
  const uint64_t body =
      (offset != 0 ? 1 + VarintSize(offset) : 0) + (n != 0 ? 1 + VarintSize(n) + n : 0);
  std::string head;
  head.push_back(kChunkTag);
  AppendVarint(body, &head);
  if (offset != 0) {
    head.push_back(kOffsetTag);
    AppendVarint(offset, &head);
  }
  if (n != 0) {
    head.push_back(kDataTag);
    AppendVarint(n, &head);
  }
  grpc::Slice slices[2] = {grpc::Slice(head), data};
  return grpc::ByteBuffer(slices, n == 0 ? 1 : 2);
}

// One CheckIn call. Lifecycle: the handler constructs it and calls Start, which either finishes
// at once (a refused request), answers at once (TryTask), or parks the poll in the hub. Exactly
// one answer is delivered (from Start or from the hub thread); after it, OnWriteDone drives the
// download one message at a time. Finish is called exactly once: by End, or by OnCancel when it
// wins the poll back from the hub. OnDone deletes the reactor.
class CoordinatorService::CheckInReactor : public grpc::ServerWriteReactor<grpc::ByteBuffer> {
 public:
  CheckInReactor(CoordinatorService* service, grpc::CallbackServerContext* context)
      : service_(service), context_(context) {}

  void Start(const grpc::ByteBuffer* raw) {
    grpc::ByteBuffer copy(*raw);
    if (!grpc::SerializationTraits<proto::CheckInRequest>::Deserialize(&copy, &request_).ok()) {
      Finish(service_->Reject(absl::InvalidArgumentError("CheckIn request does not parse"),
                              "CheckIn"));
      return;
    }
    absl::StatusOr<std::string> caller = Admit();
    if (!caller.ok()) {
      Finish(service_->Reject(caller.status(), "CheckIn"));
      return;
    }
    TaskGrant grant;
    const PollOutcome now = service_->scheduler_->TryTask(*caller, &grant);
    if (now != PollOutcome::kIdle) {
      Answer(now, std::move(grant));
      return;
    }
    // Hold the poll a little shorter than the client's own deadline allows.
    absl::Time until = absl::Now() + service_->options_.checkin_poll;
    if (context_->deadline() != std::chrono::system_clock::time_point::max()) {
      until = std::min(until, absl::FromChrono(context_->deadline()) - absl::Seconds(2));
    }
    const uint64_t id = service_->hub_->Add(
        *caller, until, [this](PollOutcome outcome, TaskGrant g) { Answer(outcome, std::move(g)); });
    if (id == 0) {  // the hub has stopped: the server is going away
      Answer(PollOutcome::kIdle, TaskGrant());
      return;
    }
    poll_id_.store(id);
    // A cancellation that came before the id was stored found nothing to take back.
    if (context_->IsCancelled() && service_->hub_->Cancel(id)) {
      Finish(grpc::Status(grpc::StatusCode::CANCELLED, "cancelled"));
    }
  }

  void OnCancel() override {
    const uint64_t id = poll_id_.load();
    // Won back from the hub: no answer will come, so this is the one Finish. Otherwise an answer
    // is (being) delivered, its write fails and OnWriteDone finishes.
    if (id != 0 && service_->hub_->Cancel(id)) {
      Finish(grpc::Status(grpc::StatusCode::CANCELLED, "cancelled"));
    }
  }

  void OnWriteDone(bool ok) override {
    if (!ok) {
      End(grpc::Status(grpc::StatusCode::CANCELLED,
                       downloading_ ? "client went away mid-download" : "client went away"));
      return;
    }
    if (downloading_ && offset_ < payload_.size()) {
      WriteChunk();
      return;
    }
    End(grpc::Status::OK);
  }

  void OnDone() override { delete this; }

 private:
  // Authentication and validation, as every RPC: returns the authenticated client id.
  absl::StatusOr<std::string> Admit() {
    CoordinatorService& s = *service_;
    absl::StatusOr<PeerCredentials> creds = s.CredentialsOf(context_);
    if (!creds.ok()) return creds.status();
    absl::StatusOr<std::string> caller = s.access_->Authenticate(*creds);
    if (!caller.ok()) return caller.status();
    // A client fetches only its own task: the poll is keyed by the authenticated id.
    RETURN_IF_ERROR(CheckClientBinding(*caller, request_.client_id(), "CheckIn"));
    RETURN_IF_ERROR(ValidateCheckInRequest(request_));
    RETURN_IF_ERROR(s.access_->AdmitCheckIn(*caller));
    RETURN_IF_ERROR(s.registry_->Touch(*caller));
    // The device's refreshed state decides its eligibility from now on; a declined task is
    // counted and no longer waited for.
    if (request_.has_profile()) s.registry_->UpdateProfile(*caller, request_.profile()).IgnoreError();
    if (!request_.declined_reason().empty()) {
      s.scheduler_->Decline(*caller, request_.declined_round(), request_.declined_attempt(),
                            request_.declined_reason());
    }
    return caller;
  }

  // The poll's one answer.
  void Answer(PollOutcome outcome, TaskGrant grant) {
    proto::CheckInResponse msg;
    if (outcome == PollOutcome::kFinished) {
      {
        absl::MutexLock lock(&service_->mu_);
        ++service_->finished_notices_;
      }
      if (request_.want_final_model() && grant.model != nullptr) {
        SendTask(std::move(grant));
        return;
      }
      msg.set_finished(true);
    } else if (outcome == PollOutcome::kIdle) {
      msg.set_idle(true);
    } else {
      SendTask(std::move(grant));
      return;
    }
    out_ = Serialize(msg);
    StartWrite(&out_);
  }

  // A client that holds the delta's base version gets the (small) encoded delta, any other the
  // full reference model.
  void SendTask(TaskGrant grant) {
    grant_ = std::move(grant);
    const ModelSnapshot& model = *grant_.model;
    const bool use_delta = !model.delta_payload.empty() &&
                           request_.have_model_version() == model.delta_base_version;
    const std::string& payload = use_delta ? model.delta_payload : model.payload;
    proto::CheckInResponse msg;
    proto::Task* task = msg.mutable_task();
    *task = grant_.task;
    task->set_downlink_codec(use_delta ? model.downlink_codec : "dense");
    task->set_base_version(use_delta ? model.delta_base_version : -1);
    task->set_total_bytes(payload.size());
    task->set_sha256(use_delta ? model.delta_sha256 : model.sha256);
    // One slice over the snapshot's payload for the whole download; each chunk is a sub-slice
    // (a reference). The slice keeps the snapshot alive until gRPC has sent the last chunk.
    auto* keep = new std::shared_ptr<const ModelSnapshot>(grant_.model);
    payload_ = grpc::Slice(const_cast<char*>(payload.data()), payload.size(),
                           [](void* p) { delete static_cast<std::shared_ptr<const ModelSnapshot>*>(p); },
                           keep);
    // Traffic is counted as serialized messages, i.e. what goes on the wire above HTTP/2. The
    // final model, sent after the last round closed, is not counted in any round.
    count_ = !grant_.task.final_model();
    downloading_ = true;
    out_ = Serialize(msg);
    sent_ += out_.Length();
    StartWrite(&out_);
  }

  void WriteChunk() {
    const size_t n = std::min(service_->options_.chunk_bytes, payload_.size() - offset_);
    out_ = ChunkMessage(offset_, payload_.sub(offset_, offset_ + n));
    offset_ += n;
    sent_ += out_.Length();
    StartWrite(&out_);
  }

  void End(grpc::Status status) {
    if (downloading_ && count_) service_->scheduler_->AddBytesDown(grant_.task.round(), sent_);
    out_.Clear();
    payload_ = grpc::Slice();  // releases the snapshot
    Finish(status);
  }

  CoordinatorService* const service_;
  grpc::CallbackServerContext* const context_;
  proto::CheckInRequest request_;
  std::atomic<uint64_t> poll_id_{0};
  // The answer's state: written by the one thread that delivers the answer, then by OnWriteDone
  // (gRPC runs one reaction at a time after each StartWrite).
  TaskGrant grant_;
  grpc::ByteBuffer out_;  // the message being written (alive until OnWriteDone)
  grpc::Slice payload_;
  size_t offset_ = 0;
  bool downloading_ = false;
  bool count_ = false;
  uint64_t sent_ = 0;
};

grpc::ServerWriteReactor<grpc::ByteBuffer>* CoordinatorService::CheckIn(
    grpc::CallbackServerContext* context, const grpc::ByteBuffer* request) {
  auto* reactor = new CheckInReactor(this, context);
  reactor->Start(request);
  return reactor;
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
  // Bound the uploads received at once, so server memory and threads do not grow with clients
  // (admitted before the first message, so a stream that sends nothing is bounded too): a
  // refused one is told when to try again (the device retries within the round's deadline).
  absl::Duration retry_after;
  if (absl::Status s = AdmitReport(*caller, context, &retry_after); !s.ok()) {
    context->AddTrailingMetadata("retry-after-ms",
                                 absl::StrCat(absl::ToInt64Milliseconds(retry_after)));
    return Reject(s, "Report");
  }
  struct Release {
    CoordinatorService* self;
    grpc::ServerContext* context;
    ~Release() { self->ReleaseReport(context); }
  } release{this, context};
  proto::ReportRequest msg;
  if (!reader->Read(&msg) || !msg.has_header()) {
    if (Stalled(context)) return Reject(StallStatus(), "Report");
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
  if (scheduler_->IsRepeatOfAccepted(header)) {
    // The device did not hear that this very update was accepted: tell it again, unread.
    scheduler_->CountRepeatedReport();
    EDGEFL_LOG_INFO("Report from ", header.client_id(), " repeats its accepted update for round ",
                    header.round(), "; answered accepted again");
    response->set_accepted(true);
    response->set_message(absl::StrCat("update for round ", header.round(),
                                       " accepted already (a repeated upload)"));
    return grpc::Status::OK;
  }
  if (absl::Status s = scheduler_->CheckReport(header); !s.ok()) return Reject(s, "Report");
  absl::StatusOr<ReportPlan> plan =
      ValidateReportHeader(header, limits_, scheduler_->current_uplink());
  // From here on a bad update (INVALID_ARGUMENT) also ends the client's attempt.
  if (!plan.ok()) return Reject(scheduler_->RefuseReport(header, plan.status()), "Report");
  // Charged once admitted, so that a refused attempt does not count against the device's bytes.
  if (absl::Status s = access_->ChargeUpdateBytes(*caller, header.round(), header.total_bytes());
      !s.ok()) {
    return Reject(s, "Report");
  }

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
    ProgressReport(context);
    if (absl::Status s = assembler.Add(msg.chunk().offset(), msg.chunk().data()); !s.ok()) {
      return Reject(scheduler_->RefuseReport(header, s), "Report");
    }
  }
  if (context->IsCancelled()) {
    if (Stalled(context)) return Reject(StallStatus(), "Report");
    return grpc::Status(grpc::StatusCode::CANCELLED, "cancelled");
  }
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
