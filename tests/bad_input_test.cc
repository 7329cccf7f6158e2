// End-to-end: a rogue client speaks the wire protocol directly to a real fl-server and sends every
// kind of bad input; each gets a clear status, is counted, and the global model stays unchanged.
#include <signal.h>

#include <grpcpp/grpcpp.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/model_layout.h"
#include "common/sha256.h"
#include "compression/chain.h"
#include "compression/update_codec.h"
#include "gtest/gtest.h"
#include "models/model_spec.h"
#include "protos/edgefl.grpc.pb.h"
#include "tests/e2e_util.h"
#include "tests/rogue_client.h"

namespace edgefl::testing {
namespace {

std::string Bytes(const std::vector<float>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(float));
}

// `n` rogue clients, each joined (its own session) and holding round 1's task. The server must
// run with --min_clients=n so that the round selects all of them.
struct Fleet {
  std::vector<std::unique_ptr<RogueClient>> clients;
  std::vector<std::string> ids;
  std::vector<proto::Task> tasks;
};

void JoinFleet(int port, int n, Fleet* fleet) {
  for (int i = 0; i < n; ++i) {
    fleet->clients.push_back(std::make_unique<RogueClient>(port));
    std::string id;
    ASSERT_TRUE(fleet->clients.back()->Join(&id).ok()) << i;
    fleet->ids.push_back(id);
  }
  fleet->tasks.resize(n);
  for (int i = 0; i < n; ++i) {
    bool got = false;
    ASSERT_TRUE(WaitFor(
        [&] { return fleet->clients[i]->CheckIn(fleet->ids[i], &fleet->tasks[i], &got).ok() && got; },
        absl::Seconds(60)))
        << i;
    EXPECT_EQ(fleet->tasks[i].round(), 1);
    EXPECT_EQ(fleet->tasks[i].model_version(), 0);
  }
}

// A bad update ends its client's part in the round's attempt (server/round_scheduler.h
// RefuseReport), so each such case comes from its own client; the refusals that are not about
// the update (another id, a stale version or round, a corrupted upload) come from the one client
// whose valid update is then taken. With every other client refused, the round closes on that
// update at once, not at its deadline.
TEST(BadInput, EveryBadUpdateIsRejectedAndTheModelIsUnchanged) {
  const std::string dir = MakeTempDir("edgefl-bad");
  auto init = models::InitialWeights("small_cnn", 7);
  ASSERT_TRUE(init.ok());
  ASSERT_TRUE(WriteFileAtomically(dir + "/init.f32", Bytes(*init)).ok());
  auto spec = models::SpecForModel("small_cnn");
  ASSERT_TRUE(spec.ok());

  constexpr int kBadClients = 8;  // one per case that ends an attempt, below
  int port = 0;
  // Stays up when done (until SIGTERM) so that /metrics can be read after the round.
  const int metrics_port = FreePort();
  ASSERT_GT(metrics_port, 0);
  auto server = StartServer({"--model=small_cnn", "--rounds=1",
                             absl::StrCat("--min_clients=", kBadClients + 1), "--set=quorum=0.1",
                             "--eval_samples=200", "--deadline=300", "--after_finish=serve",
                             absl::StrCat("--metrics_listen=127.0.0.1:", metrics_port),
                             "--init_weights=" + dir + "/init.f32", "--out=" + dir + "/run"},
                            dir, "server.log", &port);
  ASSERT_GT(port, 0) << server->Log();

  // A caller without a session cannot check in.
  {
    RogueClient nobody(port);
    proto::Task task;
    bool got = false;
    EXPECT_EQ(nobody.CheckIn("c-nobody", &task, &got).error_code(),
              grpc::StatusCode::UNAUTHENTICATED);
  }
  Fleet fleet;
  ASSERT_NO_FATAL_FAILURE(JoinFleet(port, kBadClients + 1, &fleet));
  const int good_client = kBadClients;
  RogueClient& rogue = *fleet.clients[good_client];
  const proto::Task& task = fleet.tasks[good_client];

  const int64_t n = models::NumParameters(*spec);
  const std::vector<float> zeros(n, 0.0f);
  proto::ReportHeader good;
  good.set_client_id(fleet.ids[good_client]);
  good.set_round(task.round());
  good.set_attempt(task.attempt());
  good.set_model_version(task.model_version());
  good.set_num_samples(100);
  *good.mutable_spec() = *spec;
  good.set_codec("dense");
  good.set_total_bytes(n * 4);
  good.set_sha256(Sha256::Of(Bytes(zeros)));

  struct Case {
    std::string name;
    proto::ReportHeader header;
    std::string payload;
    grpc::StatusCode want;
    size_t chunk = 1 << 20;
  };
  // Refusals that leave the client free to report.
  std::vector<Case> transient;
  {
    // The session binds the caller to its own id.
    Case c{"another client's id", good, Bytes(zeros), grpc::StatusCode::PERMISSION_DENIED};
    c.header.set_client_id("c-impostor");
    transient.push_back(c);
  }
  {
    Case c{"stale model version", good, Bytes(zeros), grpc::StatusCode::FAILED_PRECONDITION};
    c.header.set_model_version(5);
    transient.push_back(c);
  }
  {
    Case c{"wrong round", good, Bytes(zeros), grpc::StatusCode::FAILED_PRECONDITION};
    c.header.set_round(7);
    transient.push_back(c);
  }
  {
    std::vector<float> v = zeros;
    v[0] = 1.0f;  // payload differs from the digest in the header: a corrupted upload
    Case c{"bad checksum", good, Bytes(v), grpc::StatusCode::DATA_LOSS};
    transient.push_back(c);
  }
  // Bad updates: each ends its client's attempt.
  std::vector<Case> bad;
  {
    Case c{"wrong tensor name", good, Bytes(zeros), grpc::StatusCode::INVALID_ARGUMENT};
    c.header.mutable_spec()->mutable_tensors(0)->set_name("evil.weight");
    bad.push_back(c);
  }
  {
    Case c{"wrong shape", good, Bytes(zeros), grpc::StatusCode::INVALID_ARGUMENT};
    c.header.mutable_spec()->mutable_tensors(0)->set_shape(0, 3);
    bad.push_back(c);
  }
  for (float value : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity()}) {
    std::vector<float> v = zeros;
    v[n / 2] = value;
    Case c{std::isnan(value) ? "NaN value" : "Inf value", good, Bytes(v),
           grpc::StatusCode::INVALID_ARGUMENT};
    c.header.set_sha256(Sha256::Of(c.payload));
    bad.push_back(c);
  }
  {
    Case c{"oversized chunk", good, Bytes(zeros), grpc::StatusCode::INVALID_ARGUMENT};
    c.chunk = 5 << 20;
    // small_cnn is smaller than 5 MiB; pad the payload so a single chunk exceeds the limit.
    c.payload.resize(5 << 20, '\0');
    bad.push_back(c);
  }
  {
    Case c{"short payload", good, Bytes(zeros).substr(0, n * 2), grpc::StatusCode::INVALID_ARGUMENT};
    bad.push_back(c);
  }
  {
    Case c{"unsupported codec", good, Bytes(zeros), grpc::StatusCode::INVALID_ARGUMENT};
    c.header.set_codec("gzip");
    bad.push_back(c);
  }
  {
    Case c{"zero samples", good, Bytes(zeros), grpc::StatusCode::INVALID_ARGUMENT};
    c.header.set_num_samples(0);
    bad.push_back(c);
  }
  ASSERT_EQ(bad.size(), static_cast<size_t>(kBadClients));
  for (const Case& c : transient) {
    grpc::Status s = rogue.Report(c.header, c.payload, c.chunk);
    EXPECT_EQ(s.error_code(), c.want) << c.name << ": " << s.error_message();
    EXPECT_FALSE(s.error_message().empty()) << c.name;
  }
  for (int i = 0; i < kBadClients; ++i) {
    Case c = bad[i];
    c.header.set_client_id(fleet.ids[i]);
    grpc::Status s = fleet.clients[i]->Report(c.header, c.payload, c.chunk);
    EXPECT_EQ(s.error_code(), c.want) << c.name << ": " << s.error_message();
    EXPECT_FALSE(s.error_message().empty()) << c.name;
  }
  // A refused client is done for the attempt: not handed the task again, and even a valid
  // update from it is refused.
  {
    proto::Task again;
    bool got = true;
    ASSERT_TRUE(fleet.clients[0]->CheckIn(fleet.ids[0], &again, &got).ok());
    EXPECT_FALSE(got);
    proto::ReportHeader h = good;
    h.set_client_id(fleet.ids[0]);
    EXPECT_EQ(fleet.clients[0]->Report(h, Bytes(zeros)).error_code(),
              grpc::StatusCode::FAILED_PRECONDITION);
  }
  // The server is alive and still takes a valid (all-zero) update...
  grpc::Status ok = rogue.Report(good, Bytes(zeros));
  ASSERT_TRUE(ok.ok()) << ok.error_message();
  // ...but not a second update from the same client. (The same upload again is answered
  // "accepted": see ARepeatedUploadIsAnsweredAcceptedAndFoldedInOnce.)
  {
    proto::ReportHeader other = good;
    other.set_num_samples(101);
    EXPECT_EQ(rogue.Report(other, Bytes(zeros)).error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  }

  // The run is done when its model is written; Prometheus then shows the round's refusals.
  ASSERT_TRUE(WaitFor([&] { return !ReadFileOrEmpty(dir + "/run/model_final.f32").empty(); },
                      absl::Seconds(120)))
      << server->Log();
  const std::string scraped = ScrapeMetrics(metrics_port);
  EXPECT_NE(scraped.find(absl::StrCat("edgefl_server_clients_total{state=\"refused\"} ",
                                      kBadClients, "\n")),
            std::string::npos)
      << scraped;
  EXPECT_NE(scraped.find(absl::StrCat("edgefl_server_round_clients{state=\"refused\"} ",
                                      kBadClients, "\n")),
            std::string::npos)
      << scraped;
  server->Signal(SIGTERM);
  ASSERT_EQ(server->Wait(absl::Seconds(60)), 0) << server->Log();
  // global + mean(0) == global bit for bit: none of the bad updates reached the model.
  EXPECT_EQ(ReadFileOrEmpty(dir + "/run/model_final.f32"), Bytes(*init));
  auto metrics = ReadJsonLines(dir + "/run/metrics.jsonl");
  ASSERT_EQ(metrics.size(), 1u);
  EXPECT_EQ(NumberField(metrics[0], "clients_reported"), 1);
  EXPECT_EQ(NumberField(metrics[0], "clients_refused"), kBadClients);
  EXPECT_EQ(NumberField(metrics[0], "clients_failed"), kBadClients);
  EXPECT_EQ(NumberField(metrics[0], "attempts"), 1);
  // The round closed on the last update, not at its 300 s deadline.
  EXPECT_LT(NumberField(metrics[0], "round_seconds"), 150);
  // Every rejection before the round closed (the cases, the unknown CheckIn, the refused
  // client's second report) is counted; the duplicate came after the close.
  EXPECT_GE(NumberField(metrics[0], "rejected_total"),
            static_cast<double>(transient.size() + bad.size()) + 2);
}

// A device whose accepted upload's answer was lost sends it again: the server answers
// "accepted" again (so the device commits its error-feedback residual instead of rolling it
// back) and folds the update in once. Two clients send +0.25 and -0.25 everywhere with equal
// weights: once each, the mean is exactly 0 and the model ends bit for bit as it started; had
// the repeat been folded in again, the mean would be 0.25 / 3.
TEST(BadInput, ARepeatedUploadIsAnsweredAcceptedAndFoldedInOnce) {
  const std::string dir = MakeTempDir("edgefl-repeat");
  auto init = models::InitialWeights("small_cnn", 7);
  ASSERT_TRUE(init.ok());
  ASSERT_TRUE(WriteFileAtomically(dir + "/init.f32", Bytes(*init)).ok());
  auto spec = models::SpecForModel("small_cnn");
  ASSERT_TRUE(spec.ok());
  const int metrics_port = FreePort();
  ASSERT_GT(metrics_port, 0);
  int port = 0;
  auto server = StartServer({"--model=small_cnn", "--rounds=1", "--min_clients=2",
                             "--eval_samples=200", "--deadline=300", "--after_finish=serve",
                             absl::StrCat("--metrics_listen=127.0.0.1:", metrics_port),
                             "--init_weights=" + dir + "/init.f32", "--out=" + dir + "/run"},
                            dir, "server.log", &port);
  ASSERT_GT(port, 0) << server->Log();
  Fleet fleet;
  ASSERT_NO_FATAL_FAILURE(JoinFleet(port, 2, &fleet));
  const int64_t n = models::NumParameters(*spec);
  auto report = [&](int i, float value, uint64_t samples) {
    const std::string payload = Bytes(std::vector<float>(n, value));
    proto::ReportHeader h;
    h.set_client_id(fleet.ids[i]);
    h.set_round(fleet.tasks[i].round());
    h.set_attempt(fleet.tasks[i].attempt());
    h.set_model_version(fleet.tasks[i].model_version());
    h.set_num_samples(samples);
    *h.mutable_spec() = *spec;
    h.set_codec("dense");
    h.set_total_bytes(payload.size());
    h.set_sha256(Sha256::Of(payload));
    return fleet.clients[i]->Report(h, payload);
  };
  grpc::Status first = report(0, 0.25f, 100);
  ASSERT_TRUE(first.ok()) << first.error_message();
  grpc::Status repeat = report(0, 0.25f, 100);
  EXPECT_TRUE(repeat.ok()) << repeat.error_message();
  // Another update from the same client is still refused, as is the same bytes with another weight.
  EXPECT_EQ(report(0, 0.5f, 100).error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(report(0, 0.25f, 300).error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  grpc::Status second = report(1, -0.25f, 100);
  ASSERT_TRUE(second.ok()) << second.error_message();
  ASSERT_TRUE(WaitFor([&] { return !ReadFileOrEmpty(dir + "/run/model_final.f32").empty(); },
                      absl::Seconds(120)))
      << server->Log();
  // The update that closed the round, repeated after the close: still "accepted". No round is
  // open to count it in, so the counter keeps the one repeat of the round.
  grpc::Status late = report(1, -0.25f, 100);
  EXPECT_TRUE(late.ok()) << late.error_message();
  const std::string scraped = ScrapeMetrics(metrics_port);
  EXPECT_NE(scraped.find("\nedgefl_server_reports_repeated_total 1\n"), std::string::npos)
      << scraped;
  server->Signal(SIGTERM);
  ASSERT_EQ(server->Wait(absl::Seconds(60)), 0) << server->Log();
  EXPECT_EQ(ReadFileOrEmpty(dir + "/run/model_final.f32"), Bytes(*init));
  auto metrics = ReadJsonLines(dir + "/run/metrics.jsonl");
  ASSERT_EQ(metrics.size(), 1u);
  EXPECT_EQ(NumberField(metrics[0], "clients_reported"), 2);
  EXPECT_EQ(NumberField(metrics[0], "reports_repeated"), 1);
  EXPECT_NE(server->Log().find("repeats its accepted update"), std::string::npos);
}

TEST(BadInput, MalformedEncodingsAreRejectedAndTheModelIsUnchanged) {
  const std::string dir = MakeTempDir("edgefl-badenc");
  auto init = models::InitialWeights("small_cnn", 3);
  ASSERT_TRUE(init.ok());
  ASSERT_TRUE(WriteFileAtomically(dir + "/init.f32", Bytes(*init)).ok());
  auto spec = models::SpecForModel("small_cnn");
  ASSERT_TRUE(spec.ok());
  constexpr int kBadClients = 8;  // one per malformed encoding below: each ends its attempt
  int port = 0;
  auto server = StartServer({"--model=small_cnn", "--rounds=1",
                             absl::StrCat("--min_clients=", kBadClients + 1), "--set=quorum=0.1",
                             "--eval_samples=200", "--deadline=300",
                             "--set=client.uplink=topk:0.1|int8", "--init_weights=" + dir + "/init.f32",
                             "--out=" + dir + "/run"},
                            dir, "server.log", &port);
  ASSERT_GT(port, 0) << server->Log();
  Fleet fleet;
  ASSERT_NO_FATAL_FAILURE(JoinFleet(port, kBadClients + 1, &fleet));
  EXPECT_EQ(fleet.tasks[0].config().uplink(), "topk:0.1|int8");

  const auto layout = LayoutOf(*spec);
  const int64_t n = models::NumParameters(*spec);
  const std::vector<float> zeros(n, 0.0f);
  auto chain = compression::ParseChain("topk:0.1|int8");
  auto encoded = compression::EncodeUpdate(*chain, ViewsOf(layout, zeros), nullptr, 1);
  ASSERT_TRUE(encoded.ok()) << encoded.status();

  proto::ReportHeader good;
  good.set_round(fleet.tasks[0].round());
  good.set_attempt(fleet.tasks[0].attempt());
  good.set_model_version(fleet.tasks[0].model_version());
  good.set_num_samples(10);
  *good.mutable_spec() = *spec;
  good.set_codec("topk:0.1|int8");

  int next = 0;  // the next client to send a bad update
  auto report = [&](proto::ReportHeader h, const std::string& payload) {
    h.set_client_id(fleet.ids[next]);
    h.set_total_bytes(payload.size());
    h.set_sha256(Sha256::Of(payload));
    return fleet.clients[next++]->Report(h, payload);
  };
  // Another chain than the round's.
  {
    proto::ReportHeader h = good;
    h.set_codec("int8");
    auto other = compression::EncodeUpdate(*compression::ParseChain("int8"),
                                           ViewsOf(layout, zeros), nullptr, 1);
    EXPECT_EQ(report(h, *other).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  }
  // A codec that does not parse.
  {
    proto::ReportHeader h = good;
    h.set_codec("topk:7|int3");
    EXPECT_EQ(report(h, *encoded).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  }
  // Truncated, garbled and trailing-byte encodings (the digest matches what is sent).
  EXPECT_EQ(report(good, encoded->substr(0, encoded->size() / 2)).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  {
    std::string garbled = *encoded;
    for (size_t i = 40; i < garbled.size(); i += 7) garbled[i] = static_cast<char>(0xff);
    EXPECT_EQ(report(good, garbled).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  }
  EXPECT_EQ(report(good, *encoded + "x").error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  // Right format, wrong tensor names.
  {
    auto wrong = layout;
    wrong[0].name = "evil.weight";
    auto bad = compression::EncodeUpdate(*chain, ViewsOf(wrong, zeros), nullptr, 1);
    EXPECT_EQ(report(good, *bad).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  }
  // Announcing more bytes than any valid encoding can have.
  {
    proto::ReportHeader h = good;
    h.set_client_id(fleet.ids[next]);
    h.set_total_bytes(64 << 20);
    h.set_sha256(Sha256::Of(*encoded));
    EXPECT_EQ(fleet.clients[next++]->Report(h, *encoded).error_code(),
              grpc::StatusCode::INVALID_ARGUMENT);
  }
  // A dense update where the round takes encoded ones.
  {
    proto::ReportHeader h = good;
    h.set_codec("dense");
    EXPECT_EQ(report(h, Bytes(zeros)).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  }
  ASSERT_EQ(next, kBadClients);
  grpc::Status ok = report(good, *encoded);
  ASSERT_TRUE(ok.ok()) << ok.error_message();
  ASSERT_EQ(server->Wait(absl::Seconds(120)), 0) << server->Log();
  EXPECT_EQ(ReadFileOrEmpty(dir + "/run/model_final.f32"), Bytes(*init));
  auto metrics = ReadJsonLines(dir + "/run/metrics.jsonl");
  ASSERT_EQ(metrics.size(), 1u);
  EXPECT_GE(NumberField(metrics[0], "rejected_total"), kBadClients);
  EXPECT_EQ(NumberField(metrics[0], "clients_refused"), kBadClients);
  EXPECT_EQ(NumberField(metrics[0], "clients_reported"), 1);
  EXPECT_LT(NumberField(metrics[0], "round_seconds"), 150);
}

}  // namespace
}  // namespace edgefl::testing
