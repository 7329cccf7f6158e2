// A device that misbehaves against the coordinator's limits, through the real fl-server:
// many concurrent uploads from one device, a stalled upload, a flood of concurrent long polls.
// Each is refused or cut off with a clear status, counted, and costs the others nothing.
#include <grpcpp/grpcpp.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "common/sha256.h"
#include "protos/edgefl.grpc.pb.h"
#include "tests/e2e_util.h"

namespace edgefl::testing {
namespace {

std::unique_ptr<proto::Coordinator::Stub> Stub(int port) {
  grpc::ChannelArguments args;
  args.SetMaxSendMessageSize(64 << 20);
  args.SetMaxReceiveMessageSize(64 << 20);
  return proto::Coordinator::NewStub(grpc::CreateCustomChannel(
      absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials(), args));
}

void Authorize(grpc::ClientContext* ctx, const std::string& bearer) {
  ctx->AddMetadata("authorization", "Bearer " + bearer);
}

struct Device {
  std::string id, bearer;
  uint64_t model_bytes = 0;  // what Join said the model's dense size is
};

Device Join(proto::Coordinator::Stub* stub) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  proto::JoinRequest req;
  req.mutable_profile()->set_arch("x86_64");
  req.mutable_profile()->set_num_samples(100);
  proto::JoinResponse resp;
  EXPECT_TRUE(stub->Join(&ctx, req, &resp).ok());
  return {resp.client_id(), resp.session_token(), resp.model_bytes()};
}

// Long polls until a task comes (bounded).
bool GetTask(proto::Coordinator::Stub* stub, const Device& d, proto::Task* task) {
  for (int i = 0; i < 30; ++i) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    Authorize(&ctx, d.bearer);
    proto::CheckInRequest req;
    req.set_client_id(d.id);
    auto reader = stub->CheckIn(&ctx, req);
    proto::CheckInResponse msg;
    bool got = false;
    while (reader->Read(&msg)) {
      if (msg.has_task()) {
        *task = msg.task();
        got = true;
      }
    }
    if (reader->Finish().ok() && got) return true;
  }
  return false;
}

proto::ReportHeader HeaderFor(const Device& d, const proto::Task& task, const std::string& payload) {
  proto::ReportHeader h;
  h.set_client_id(d.id);
  h.set_round(task.round());
  h.set_attempt(task.attempt());
  h.set_model_version(task.model_version());
  h.set_num_samples(100);
  *h.mutable_spec() = task.spec();
  h.set_codec("dense");
  h.set_total_bytes(payload.size());
  h.set_sha256(Sha256::Of(payload));
  return h;
}

// One whole upload of `payload` (header, one chunk).
grpc::Status Upload(proto::Coordinator::Stub* stub, const Device& d, const proto::Task& task,
                    const std::string& payload) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  Authorize(&ctx, d.bearer);
  proto::ReportResponse resp;
  auto w = stub->Report(&ctx, &resp);
  proto::ReportRequest h;
  *h.mutable_header() = HeaderFor(d, task, payload);
  if (w->Write(h)) {
    proto::ReportRequest chunk;
    chunk.mutable_chunk()->set_data(payload);
    w->Write(chunk);
  }
  w->WritesDone();
  return w->Finish();
}

TEST(Abuse, ParallelUploadsAndAStalledUploadAreRefusedCountedAndCostOthersNothing) {
  const std::string dir = MakeTempDir("edgefl-abuse");
  int port = 0;
  auto server = StartServer({"--model=mlp", "--rounds=1", "--min_clients=2", "--eval_samples=100",
                             "--deadline=120", "--upload_stall_seconds=2",
                             "--max_concurrent_uploads=2", "--out=" + dir + "/run"},
                            dir, "server.log", &port);
  ASSERT_GT(port, 0) << server->Log();
  auto stub = Stub(port);
  const Device rogue = Join(stub.get());
  const Device honest = Join(stub.get());
  proto::Task rogue_task, honest_task;
  ASSERT_TRUE(GetTask(stub.get(), rogue, &rogue_task));
  ASSERT_TRUE(GetTask(stub.get(), honest, &honest_task));
  int64_t params = 0;
  for (const auto& t : rogue_task.spec().tensors()) {
    int64_t n = 1;
    for (int64_t d : t.shape()) n *= d;
    params += n;
  }
  const std::string zeros(params * sizeof(float), '\0');
  // Join told each device the dense size, which its CheckIn deadline allows for downloading.
  EXPECT_EQ(rogue.model_bytes, zeros.size());

  // 1. The rogue opens an upload, sends its header and then nothing.
  grpc::ClientContext stalled_ctx;
  stalled_ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
  Authorize(&stalled_ctx, rogue.bearer);
  proto::ReportResponse stalled_resp;
  auto stalled = stub->Report(&stalled_ctx, &stalled_resp);
  proto::ReportRequest head;
  *head.mutable_header() = HeaderFor(rogue, rogue_task, zeros);
  ASSERT_TRUE(stalled->Write(head));

  // 2. Five more uploads of the same device at once: refused at once, with a retry hint.
  std::vector<std::thread> threads;
  absl::Mutex mu;
  std::vector<grpc::StatusCode> codes;
  std::vector<std::string> hints;
  for (int i = 0; i < 5; ++i) {
    threads.emplace_back([&] {
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
      Authorize(&ctx, rogue.bearer);
      proto::ReportResponse resp;
      auto w = stub->Report(&ctx, &resp);
      proto::ReportRequest h;
      *h.mutable_header() = HeaderFor(rogue, rogue_task, zeros);
      w->Write(h);
      w->WritesDone();
      const grpc::Status s = w->Finish();
      std::string hint;
      auto it = ctx.GetServerTrailingMetadata().find("retry-after-ms");
      if (it != ctx.GetServerTrailingMetadata().end()) hint.assign(it->second.data(), it->second.size());
      absl::MutexLock lock(&mu);
      codes.push_back(s.error_code());
      hints.push_back(hint);
    });
  }
  for (auto& t : threads) t.join();
  for (size_t i = 0; i < codes.size(); ++i) {
    EXPECT_EQ(codes[i], grpc::StatusCode::RESOURCE_EXHAUSTED);
    EXPECT_FALSE(hints[i].empty());
  }

  // 3. The honest device's upload goes through meanwhile (the rogue holds one slot of two).
  {
    const grpc::Status s = Upload(stub.get(), honest, honest_task, zeros);
    EXPECT_TRUE(s.ok()) << s.error_message();
  }

  // 4. The stalled upload is cut off by the server (upload_stall_seconds = 2), long before
  //    its own 60 s deadline.
  const absl::Time t0 = absl::Now();
  const grpc::Status cut = stalled->Finish();
  EXPECT_FALSE(cut.ok());
  EXPECT_LT(absl::Now() - t0, absl::Seconds(40)) << "the stalled upload was not cancelled";

  // 5. Its slot is free again: the rogue's proper upload closes the round.
  {
    const grpc::Status s = Upload(stub.get(), rogue, rogue_task, zeros);
    EXPECT_TRUE(s.ok()) << s.error_message();
  }
  ASSERT_EQ(server->Wait(absl::Seconds(120)), 0) << server->Log();
  const auto metrics = ReadJsonLines(dir + "/run/metrics.jsonl");
  ASSERT_EQ(metrics.size(), 1u);
  EXPECT_EQ(NumberField(metrics[0], "clients_reported"), 2);
  const auto& rejected = metrics[0].fields().at("rejected").struct_value().fields();
  ASSERT_TRUE(rejected.contains("report_in_flight")) << server->Log();
  EXPECT_EQ(rejected.at("report_in_flight").number_value(), 5);
  ASSERT_TRUE(rejected.contains("report_stalled")) << server->Log();
  EXPECT_EQ(rejected.at("report_stalled").number_value(), 1);
}

// Twenty concurrent long polls of one device: a device holds one poll, so each new one answers
// the previous "idle" at once; only the newest waits. Nothing piles up on the server.
TEST(Abuse, ConcurrentLongPollsOfOneDeviceSupersedeEachOther) {
  const std::string dir = MakeTempDir("edgefl-abuse-polls");
  int port = 0;
  // min_clients 2 with one device: no round opens, every poll has to wait.
  auto server = StartServer({"--model=mlp", "--rounds=1", "--min_clients=2", "--eval_samples=100",
                             "--poll_seconds=60", "--checkin_per_minute=1000",
                             "--out=" + dir + "/run"},
                            dir, "server.log", &port);
  ASSERT_GT(port, 0) << server->Log();
  auto stub = Stub(port);
  const Device d = Join(stub.get());
  constexpr int kPolls = 20;
  std::vector<std::unique_ptr<grpc::ClientContext>> contexts;
  std::atomic<int> idle{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < kPolls; ++i) {
    contexts.push_back(std::make_unique<grpc::ClientContext>());
    grpc::ClientContext* ctx = contexts.back().get();
    ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(90));
    Authorize(ctx, d.bearer);
    threads.emplace_back([&, ctx] {
      proto::CheckInRequest req;
      req.set_client_id(d.id);
      auto reader = stub->CheckIn(ctx, req);
      proto::CheckInResponse msg;
      bool got_idle = false;
      while (reader->Read(&msg)) got_idle = got_idle || msg.idle();
      if (reader->Finish().ok() && got_idle) ++idle;
    });
  }
  // Every poll but the newest is answered idle without waiting its 60 s.
  EXPECT_TRUE(WaitFor([&] { return idle.load() >= kPolls - 1; }, absl::Seconds(30)))
      << idle.load() << " of " << kPolls - 1;
  EXPECT_EQ(idle.load(), kPolls - 1);
  for (auto& c : contexts) c->TryCancel();
  for (auto& t : threads) t.join();
  server->Signal(SIGTERM);
  server->Wait(absl::Seconds(30));
}

}  // namespace
}  // namespace edgefl::testing
