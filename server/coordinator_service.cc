#include "server/coordinator_service.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/chunking.h"
#include "common/grpc_status.h"
#include "common/log.h"
#include "common/model_layout.h"
#include "compression/chain.h"
#include "compression/update_codec.h"
#include "common/status_macros.h"
#include "models/model_spec.h"

namespace edgefl::server {

std::string ReasonName(absl::StatusCode code) {
  return absl::AsciiStrToLower(absl::StatusCodeToString(code));
}

CoordinatorService::CoordinatorService(const Options& options, const proto::ModelSpec& spec,
                                       ClientRegistry* registry, RoundScheduler* scheduler)
    : options_(options),
      spec_(spec),
      update_bytes_(static_cast<uint64_t>(models::NumParameters(spec)) * sizeof(float)),
      layout_(LayoutOf(spec)),
      registry_(registry),
      scheduler_(scheduler) {}

grpc::Status CoordinatorService::Reject(const absl::Status& status, const std::string& rpc) {
  scheduler_->CountRejection(ReasonName(status.code()));
  EDGEFL_LOG_WARN(rpc, " rejected: ", status.ToString());
  return ToGrpcStatus(status);
}

int64_t CoordinatorService::finished_notices() const {
  absl::MutexLock lock(&mu_);
  return finished_notices_;
}

grpc::Status CoordinatorService::Join(grpc::ServerContext* context,
                                      const proto::JoinRequest* request,
                                      proto::JoinResponse* response) {
  const auto& p = request->profile();
  if (p.arch().size() > 64 || p.hostname().size() > 256 || p.accelerator().size() > 64 ||
      p.cores() < 0) {
    return Reject(absl::InvalidArgumentError("device profile has out-of-range fields"), "Join");
  }
  absl::StatusOr<std::string> id = registry_->Join(p);
  if (!id.ok()) return Reject(id.status(), "Join");
  response->set_client_id(*id);
  response->set_lease_seconds(absl::ToDoubleSeconds(registry_->lease()));
  response->set_checkin_poll_seconds(absl::ToDoubleSeconds(options_.checkin_poll));
  EDGEFL_LOG_INFO("client ", *id, " joined from ", context->peer(), " (", p.arch(), ", ",
                  p.cores(), " cores, ", p.num_samples(), " samples)");
  return grpc::Status::OK;
}

grpc::Status CoordinatorService::CheckIn(grpc::ServerContext* context,
                                         const proto::CheckInRequest* request,
                                         grpc::ServerWriter<proto::CheckInResponse>* writer) {
  if (absl::Status s = registry_->Touch(request->client_id()); !s.ok()) {
    return Reject(s, "CheckIn");
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
      request->client_id(), std::max(wait, absl::ZeroDuration()),
      [context] { return context->IsCancelled(); }, &grant);
  proto::CheckInResponse msg;
  if (outcome == PollOutcome::kFinished) {
    msg.set_finished(true);
    writer->Write(msg);
    absl::MutexLock lock(&mu_);
    ++finished_notices_;
    return grpc::Status::OK;
  }
  if (outcome == PollOutcome::kIdle) {
    msg.set_idle(true);
    writer->Write(msg);
    return grpc::Status::OK;
  }
  // A client that holds the delta's base version gets the (small) encoded delta, any other the
  // full reference model.
  const ModelSnapshot& model = *grant.model;
  const bool use_delta = !model.delta_payload.empty() &&
                         request->have_model_version() == model.delta_base_version;
  const std::string& payload = use_delta ? model.delta_payload : model.payload;
  proto::Task* task = msg.mutable_task();
  *task = grant.task;
  task->set_downlink_codec(use_delta ? model.downlink_codec : "dense");
  task->set_base_version(use_delta ? model.delta_base_version : -1);
  task->set_total_bytes(payload.size());
  task->set_sha256(use_delta ? model.delta_sha256 : model.sha256);
  // Traffic is counted as serialized messages, i.e. what goes on the wire above HTTP/2.
  uint64_t sent = msg.ByteSizeLong();
  if (!writer->Write(msg)) return grpc::Status(grpc::StatusCode::CANCELLED, "client went away");
  for (size_t off = 0; off < payload.size(); off += options_.chunk_bytes) {
    const size_t n = std::min(options_.chunk_bytes, payload.size() - off);
    proto::CheckInResponse chunk;
    chunk.mutable_chunk()->set_offset(off);
    chunk.mutable_chunk()->set_data(payload.data() + off, n);
    if (!writer->Write(chunk)) {
      scheduler_->AddBytesDown(grant.task.round(), sent);
      return grpc::Status(grpc::StatusCode::CANCELLED, "client went away mid-download");
    }
    sent += chunk.ByteSizeLong();
  }
  scheduler_->AddBytesDown(grant.task.round(), sent);
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
  proto::ReportRequest msg;
  if (!reader->Read(&msg) || !msg.has_header()) {
    return Reject(absl::InvalidArgumentError("a Report stream must start with a header"),
                  "Report");
  }
  const proto::ReportHeader header = msg.header();
  *round_for_bytes = header.round();
  *bytes_received += msg.ByteSizeLong();
  if (absl::Status s = registry_->Touch(header.client_id()); !s.ok()) return Reject(s, "Report");
  if (absl::Status s = scheduler_->CheckReport(header); !s.ok()) return Reject(s, "Report");
  if (absl::Status s = models::CheckSpecMatches(spec_, header.spec()); !s.ok()) {
    return Reject(s, "Report");
  }
  // "dense" is raw float32; anything else must be the round's uplink chain.
  const bool dense = header.codec() == "dense";
  compression::ChainSpec chain;
  uint64_t max_bytes = update_bytes_;
  if (dense) {
    if (header.total_bytes() != update_bytes_) {
      return Reject(absl::InvalidArgumentError(absl::StrCat(
                        "a dense update of this model is ", update_bytes_, " bytes; header says ",
                        header.total_bytes())),
                    "Report");
    }
  } else {
    absl::StatusOr<compression::ChainSpec> parsed = compression::ParseChain(header.codec());
    if (!parsed.ok()) {
      return Reject(absl::InvalidArgumentError(absl::StrCat("update codec: ", parsed.status().message())),
                    "Report");
    }
    chain = *parsed;
    const std::string want = scheduler_->current_uplink();
    if (chain.ToString() != want) {
      return Reject(absl::InvalidArgumentError(absl::StrCat("update encoded as ", chain.ToString(),
                                                            "; this round takes ", want)),
                    "Report");
    }
    max_bytes = compression::MaxEncodedSizeBytes(chain, layout_);
    if (header.total_bytes() > max_bytes) {
      return Reject(absl::InvalidArgumentError(absl::StrCat(
                        "an update encoded as ", want, " is at most ", max_bytes,
                        " bytes; header says ", header.total_bytes())),
                    "Report");
    }
  }
  if (header.num_samples() == 0) {
    return Reject(absl::InvalidArgumentError("num_samples must be > 0"), "Report");
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

  ChunkAssembler assembler(max_bytes);
  if (absl::Status s = assembler.Start(header.total_bytes(), header.sha256()); !s.ok()) {
    return Reject(s, "Report");
  }
  while (reader->Read(&msg)) {
    if (!msg.has_chunk()) {
      return Reject(absl::InvalidArgumentError("a second header in one Report stream"), "Report");
    }
    *bytes_received += msg.ByteSizeLong();
    if (absl::Status s = assembler.Add(msg.chunk().offset(), msg.chunk().data()); !s.ok()) {
      return Reject(s, "Report");
    }
  }
  if (context->IsCancelled()) return grpc::Status(grpc::StatusCode::CANCELLED, "cancelled");
  std::string payload;
  if (absl::Status s = assembler.Finish(&payload); !s.ok()) return Reject(s, "Report");
  // Count the traffic before the update can close the round (the round's stats are taken then).
  scheduler_->AddBytesUp(header.round(), *bytes_received);
  *bytes_received = 0;
  absl::Status submitted;
  if (dense) {
    // The payload's heap buffer is suitably aligned; the wire format is little-endian float32.
    submitted = scheduler_->SubmitUpdate(
        header, absl::MakeConstSpan(reinterpret_cast<const float*>(payload.data()),
                                    payload.size() / sizeof(float)));
  } else {
    submitted = scheduler_->SubmitEncodedUpdate(header, payload, chain);
  }
  if (!submitted.ok()) return Reject(submitted, "Report");
  response->set_accepted(true);
  response->set_message(absl::StrCat("update for round ", header.round(), " accepted"));
  return grpc::Status::OK;
}

}  // namespace edgefl::server
