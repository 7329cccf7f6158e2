#include "client/coordinator_client.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/chunking.h"
#include "common/grpc_status.h"
#include "common/sha256.h"

namespace edgefl::client {
namespace {
void SetDeadline(grpc::ClientContext* ctx, absl::Time deadline) {
  ctx->set_deadline(absl::ToChronoTime(deadline));
}
}  // namespace

std::unique_ptr<CoordinatorClient> CoordinatorClient::Create(const Options& options) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(options.max_message_mb << 20);
  args.SetMaxSendMessageSize(options.max_message_mb << 20);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 30000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10000);
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  // Reconnect quickly after a server restart (gRPC's own backoff otherwise grows to 120 s).
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 2000);
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 200);
  auto channel =
      grpc::CreateCustomChannel(options.target, grpc::InsecureChannelCredentials(), args);
  return std::unique_ptr<CoordinatorClient>(new CoordinatorClient(options, std::move(channel)));
}

CoordinatorClient::CoordinatorClient(const Options& options,
                                     std::shared_ptr<grpc::Channel> channel)
    : options_(options),
      channel_(std::move(channel)),
      stub_(proto::Coordinator::NewStub(channel_)) {}

absl::StatusOr<proto::JoinResponse> CoordinatorClient::Join(const proto::JoinRequest& request) {
  grpc::ClientContext ctx;
  SetDeadline(&ctx, absl::Now() + options_.rpc_timeout);
  proto::JoinResponse response;
  grpc::Status s = stub_->Join(&ctx, request, &response);
  if (!s.ok()) return FromGrpcStatus(s);
  return response;
}

absl::StatusOr<CoordinatorClient::CheckInResult> CoordinatorClient::CheckIn(
    const std::string& client_id, int64_t have_version, absl::Duration timeout) {
  grpc::ClientContext ctx;
  SetDeadline(&ctx, absl::Now() + timeout);
  proto::CheckInRequest request;
  request.set_client_id(client_id);
  request.set_have_model_version(have_version);
  std::unique_ptr<grpc::ClientReader<proto::CheckInResponse>> reader =
      stub_->CheckIn(&ctx, request);
  CheckInResult result;
  proto::CheckInResponse msg;
  bool have_first = reader->Read(&msg);
  absl::Status stream_error;
  if (have_first) {
    if (msg.has_task()) {
      result.kind = CheckInResult::Kind::kTask;
      result.task = msg.task();
      ChunkAssembler assembler(options_.max_model_bytes);
      stream_error = assembler.Start(result.task.total_bytes(), result.task.sha256());
      while (stream_error.ok() && reader->Read(&msg)) {
        if (!msg.has_chunk()) {
          stream_error = absl::DataLossError("unexpected message inside a model stream");
          break;
        }
        result.bytes_down += msg.chunk().data().size();
        stream_error = assembler.Add(msg.chunk().offset(), msg.chunk().data());
      }
      if (stream_error.ok()) {
        grpc::Status s = reader->Finish();
        if (!s.ok()) return FromGrpcStatus(s);
        stream_error = assembler.Finish(&result.payload);
      }
      if (!stream_error.ok()) {
        ctx.TryCancel();
        return absl::DataLossError(absl::StrCat("model download: ", stream_error.message()));
      }
      return result;
    }
    result.kind = msg.finished() ? CheckInResult::Kind::kFinished : CheckInResult::Kind::kIdle;
    while (reader->Read(&msg)) {
    }
  }
  grpc::Status s = reader->Finish();
  if (!s.ok()) return FromGrpcStatus(s);
  if (!have_first) return absl::UnavailableError("CheckIn stream ended without a message");
  return result;
}

absl::StatusOr<proto::ReportResponse> CoordinatorClient::Report(proto::ReportHeader header,
                                                                std::string_view payload,
                                                                absl::Time deadline,
                                                                uint64_t* bytes_up) {
  header.set_total_bytes(payload.size());
  header.set_sha256(Sha256::Of(payload));
  grpc::ClientContext ctx;
  SetDeadline(&ctx, std::max(deadline, absl::Now() + options_.rpc_timeout));
  proto::ReportResponse response;
  std::unique_ptr<grpc::ClientWriter<proto::ReportRequest>> writer =
      stub_->Report(&ctx, &response);
  proto::ReportRequest msg;
  *msg.mutable_header() = std::move(header);
  bool ok = writer->Write(msg);
  uint64_t sent = 0;
  for (size_t off = 0; ok && off < payload.size(); off += options_.chunk_bytes) {
    const size_t n = std::min(options_.chunk_bytes, payload.size() - off);
    proto::ReportRequest chunk;
    chunk.mutable_chunk()->set_offset(off);
    chunk.mutable_chunk()->set_data(payload.data() + off, n);
    ok = writer->Write(chunk);
    if (ok) sent += n;
  }
  if (bytes_up != nullptr) *bytes_up = sent;
  writer->WritesDone();
  grpc::Status s = writer->Finish();
  if (!s.ok()) return FromGrpcStatus(s);
  return response;
}

}  // namespace edgefl::client
