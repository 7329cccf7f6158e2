// A client that speaks the wire protocol directly (no fl-client), for tests that send requests a
// well-behaved client never would. Keeps the session token a Join returns and sends it (or an
// explicit bearer) as "authorization: Bearer ..." metadata.
#ifndef EDGEFL_TESTS_ROGUE_CLIENT_H_
#define EDGEFL_TESTS_ROGUE_CLIENT_H_

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "protos/edgefl.grpc.pb.h"

namespace edgefl::testing {

class RogueClient {
 public:
  // Plaintext unless `creds` are given.
  explicit RogueClient(int port, std::shared_ptr<grpc::ChannelCredentials> creds = nullptr) {
    grpc::ChannelArguments args;
    args.SetMaxSendMessageSize(64 << 20);
    args.SetMaxReceiveMessageSize(64 << 20);
    stub_ = proto::Coordinator::NewStub(grpc::CreateCustomChannel(
        absl::StrCat("127.0.0.1:", port),
        creds != nullptr ? creds : grpc::InsecureChannelCredentials(), args));
  }

  // The bearer sent on the next calls (the session after a successful Join). "" sends none.
  std::string bearer;

  // Joins with `credential` as bearer when given (an enrollment token), else with `bearer`.
  grpc::Status Join(std::string* id, const std::string& credential = "",
                    proto::JoinResponse* out = nullptr) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    const std::string b = credential.empty() ? bearer : credential;
    if (!b.empty()) ctx.AddMetadata("authorization", "Bearer " + b);
    proto::JoinRequest req;
    req.mutable_profile()->set_arch("x86_64");
    proto::JoinResponse resp;
    grpc::Status s = stub_->Join(&ctx, req, &resp);
    *id = resp.client_id();
    if (s.ok()) bearer = resp.session_token();
    if (out != nullptr) *out = resp;
    return s;
  }

  // One CheckIn; returns the status and fills `task` when one came.
  grpc::Status CheckIn(const std::string& id, proto::Task* task, bool* got_task) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    Authorize(&ctx);
    proto::CheckInRequest req;
    req.set_client_id(id);
    auto reader = stub_->CheckIn(&ctx, req);
    proto::CheckInResponse msg;
    *got_task = false;
    while (reader->Read(&msg)) {
      if (msg.has_task()) {
        *task = msg.task();
        *got_task = true;
      }
    }
    return reader->Finish();
  }

  // Sends a header then `payload` in chunks of `chunk` bytes.
  grpc::Status Report(const proto::ReportHeader& header, const std::string& payload,
                      size_t chunk = 1 << 20) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
    Authorize(&ctx);
    proto::ReportResponse resp;
    auto writer = stub_->Report(&ctx, &resp);
    proto::ReportRequest msg;
    *msg.mutable_header() = header;
    writer->Write(msg);
    for (size_t off = 0; off < payload.size(); off += chunk) {
      proto::ReportRequest c;
      c.mutable_chunk()->set_offset(off);
      c.mutable_chunk()->set_data(payload.substr(off, chunk));
      if (!writer->Write(c)) break;
    }
    writer->WritesDone();
    return writer->Finish();
  }

 private:
  void Authorize(grpc::ClientContext* ctx) const {
    if (!bearer.empty()) ctx->AddMetadata("authorization", "Bearer " + bearer);
  }
  std::unique_ptr<proto::Coordinator::Stub> stub_;
};

}  // namespace edgefl::testing

#endif  // EDGEFL_TESTS_ROGUE_CLIENT_H_
