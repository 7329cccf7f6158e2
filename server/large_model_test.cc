// A 100 MB model travels both ways through the real gRPC service: chunked download with its
// digest checked, chunked upload folded into the aggregate (in-process server on 127.0.0.1).
#include <thread>

#include "aggregation/strategy.h"
#include "client/coordinator_client.h"
#include "server/config.h"
#include "gtest/gtest.h"
#include "server/client_registry.h"
#include "server/coordinator_service.h"
#include "server/grpc_server.h"
#include "server/round_scheduler.h"

namespace edgefl::server {
namespace {

TEST(LargeModel, HundredMegabytesTravelBothWays) {
  constexpr int64_t kFloats = 25 * 1000 * 1000;  // 100 MB of float32
  proto::ModelSpec spec;
  spec.set_model("big");
  auto* t = spec.add_tensors();
  t->set_name("w");
  t->add_shape(kFloats);

  proto::ExperimentConfig config;
  config.set_rounds(1);
  config.mutable_sampling()->set_min_clients(1);
  config.set_deadline_seconds(120);
  FillDefaults(&config);
  ClientRegistry registry(ClientRegistry::Options(), Clock::Real());
  RoundScheduler::Options opts;
  opts.config = config;
  opts.spec = spec;
  opts.weights.assign(kFloats, 0.5f);
  opts.weights[12345] = -2.0f;
  std::vector<float> final_model;
  auto scheduler = RoundScheduler::Create(
      std::move(opts), &registry, *aggregation::CreateFedAvg(kFloats),
      [&](const proto::RoundRecord&, std::shared_ptr<const std::vector<float>> model,
          std::shared_ptr<const std::vector<float>>) {
        final_model = *model;
      },
      Clock::Real());
  ASSERT_TRUE(scheduler.ok());
  CoordinatorService service(CoordinatorService::Options(), spec, &registry, scheduler->get());
  GrpcServerOptions server_options;
  server_options.listen = "127.0.0.1:0";  // plaintext, a free port
  absl::StatusOr<StartedGrpcServer> server = StartGrpcServer(server_options, {&service});
  ASSERT_TRUE(server.ok()) << server.status();
  const int port = server->port;
  absl::Status run_status;
  std::thread runner([&] { run_status = (*scheduler)->Run(); });

  client::CoordinatorClient::Options co;
  co.target = absl::StrCat("127.0.0.1:", port);
  co.insecure = true;
  auto rpc = client::CoordinatorClient::Create(co);
  auto joined = rpc->Join(proto::JoinRequest());
  ASSERT_TRUE(joined.ok()) << joined.status();
  absl::StatusOr<client::CoordinatorClient::CheckInResult> task;
  for (int i = 0; i < 10; ++i) {  // bounded: the round opens as soon as the client has joined
    task = rpc->CheckIn(joined->client_id(), -1, absl::Seconds(30));
    if (!task.ok() || task->kind == client::CoordinatorClient::CheckInResult::Kind::kTask) break;
  }
  ASSERT_TRUE(task.ok()) << task.status();
  ASSERT_EQ(task->kind, client::CoordinatorClient::CheckInResult::Kind::kTask);
  ASSERT_EQ(task->payload.size(), kFloats * 4u);
  const float* got = reinterpret_cast<const float*>(task->payload.data());
  EXPECT_EQ(got[0], 0.5f);
  EXPECT_EQ(got[12345], -2.0f);

  // Upload a 100 MB delta of +1 everywhere.
  std::vector<float> delta(kFloats, 1.0f);
  proto::ReportHeader header;
  header.set_client_id(joined->client_id());
  header.set_round(task->task.round());
  header.set_attempt(task->task.attempt());
  header.set_model_version(task->task.model_version());
  header.set_num_samples(7);
  *header.mutable_spec() = spec;
  header.set_codec("dense");
  uint64_t sent = 0;
  auto report = rpc->Report(
      header, std::string_view(reinterpret_cast<const char*>(delta.data()), delta.size() * 4),
      absl::Now() + absl::Seconds(60), &sent);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(sent, kFloats * 4u);
  runner.join();
  ASSERT_TRUE(run_status.ok()) << run_status;
  ASSERT_EQ(final_model.size(), static_cast<size_t>(kFloats));
  EXPECT_EQ(final_model[0], 1.5f);
  EXPECT_EQ(final_model[12345], -1.0f);
  server->server->Shutdown();
}

}  // namespace
}  // namespace edgefl::server
