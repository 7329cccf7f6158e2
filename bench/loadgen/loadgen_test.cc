// End-to-end: a real fl-server and fl-loadgen's simulated devices on 127.0.0.1. The server's
// FedAvg of the synthetic updates must equal the loadgen's exact reference (to the last bit, up
// to summation order), with faults and through a codec chain too.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "tests/e2e_util.h"

namespace edgefl::testing {
namespace {

constexpr absl::Duration kTimeout = absl::Seconds(300);

std::vector<float> Floats(const std::string& bytes) {
  std::vector<float> v(bytes.size() / sizeof(float));
  std::memcpy(v.data(), bytes.data(), v.size() * sizeof(float));
  return v;
}

// Largest distance in units in the last place between two equally long models.
int64_t MaxUlps(const std::vector<float>& a, const std::vector<float>& b) {
  int64_t worst = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    int32_t x, y;
    std::memcpy(&x, &a[i], 4);
    std::memcpy(&y, &b[i], 4);
    if (x < 0) x = INT32_MIN - x;
    if (y < 0) y = INT32_MIN - y;
    worst = std::max<int64_t>(worst, std::llabs(static_cast<int64_t>(x) - y));
  }
  return worst;
}

struct Federation {
  std::vector<google::protobuf::Struct> metrics;
  google::protobuf::Struct loadgen;
  std::vector<float> server_model, reference;
};

Federation RunFederation(const std::string& dir, int devices, const std::vector<std::string>& server_extra,
               const std::vector<std::string>& loadgen_extra) {
  Federation f;
  std::vector<std::string> server_args = {"--model=small_cnn", "--rounds=2",
                                          absl::StrCat("--min_clients=", devices),
                                          "--eval_samples=200", "--out=" + dir + "/run"};
  server_args.insert(server_args.end(), server_extra.begin(), server_extra.end());
  int port = 0;
  auto server = StartServer(server_args, dir, "server.log", &port);
  EXPECT_GT(port, 0) << server->Log();
  if (port == 0) return f;
  std::vector<std::string> argv = {BinDir() + "/fl-loadgen", absl::StrCat("--server=127.0.0.1:", port),
                                   "--insecure", absl::StrCat("--devices=", devices),
                                   "--train_median=0.3", "--train_sigma=0.5", "--max_run=240",
                                   "--reference_out=" + dir + "/reference.f32",
                                   "--json_out=" + dir + "/loadgen.json"};
  argv.insert(argv.end(), loadgen_extra.begin(), loadgen_extra.end());
  Subprocess loadgen(argv, dir + "/loadgen.log");
  EXPECT_EQ(server->Wait(kTimeout), 0) << server->Log();
  EXPECT_EQ(loadgen.Wait(absl::Seconds(120)), 0) << loadgen.Log();
  f.metrics = ReadJsonLines(dir + "/run/metrics.jsonl");
  auto lines = ReadJsonLines(dir + "/loadgen.json");
  if (!lines.empty()) f.loadgen = lines[0];
  f.server_model = Floats(ReadFileOrEmpty(dir + "/run/model_final.f32"));
  f.reference = Floats(ReadFileOrEmpty(dir + "/reference.f32"));
  return f;
}

TEST(Loadgen, FortyDevicesGiveTheExactFedAvgOfTheirUpdates) {
  const std::string dir = MakeTempDir("edgefl-loadgen");
  Federation f = RunFederation(dir, 40, {"--deadline=60"}, {});
  ASSERT_EQ(f.metrics.size(), 2u);
  for (const auto& m : f.metrics) EXPECT_EQ(NumberField(m, "clients_reported"), 40);
  EXPECT_EQ(NumberField(f.loadgen, "reports_accepted"), 80);
  EXPECT_EQ(NumberField(f.loadgen, "devices_finished"), 40);
  ASSERT_EQ(f.server_model.size(), f.reference.size());
  ASSERT_GT(f.server_model.size(), 0u);
  EXPECT_LE(MaxUlps(f.server_model, f.reference), 1);
}

// A fifth of the devices never report and a tenth are cut off mid-upload: each round closes at
// its deadline with the rest, and the model is still exactly the FedAvg of what was accepted.
TEST(Loadgen, DropoutsCostOnlyTheirContributionAndDoNotHoldTheRound) {
  const std::string dir = MakeTempDir("edgefl-loadgen-faults");
  constexpr double kDeadline = 10;
  Federation f = RunFederation(dir, 30, {absl::StrCat("--deadline=", kDeadline), "--set=quorum=0.5"},
                               {"--never_report=0.2", "--disconnect=0.1", "--reconnect=0.1"});
  ASSERT_EQ(f.metrics.size(), 2u);
  for (const auto& m : f.metrics) {
    EXPECT_LE(NumberField(m, "clients_reported"), 24);  // 6 never report, 3 are cut off
    EXPECT_GE(NumberField(m, "clients_reported"), 15);
    EXPECT_GE(NumberField(m, "clients_failed"), 6);
    EXPECT_LT(NumberField(m, "round_seconds"), kDeadline + 5);
  }
  EXPECT_GT(NumberField(f.loadgen, "tasks_dropped"), 0);
  EXPECT_GT(NumberField(f.loadgen, "reconnects"), 0);
  EXPECT_EQ(NumberField(f.loadgen, "reports_accepted"),
            NumberField(f.metrics[0], "clients_reported") +
                NumberField(f.metrics[1], "clients_reported"));
  ASSERT_EQ(f.server_model.size(), f.reference.size());
  EXPECT_LE(MaxUlps(f.server_model, f.reference), 1);
}

// Through the real codec chain (top-k + int8 up, int8 deltas down).
TEST(Loadgen, CompressedUpdatesAreStillExact) {
  const std::string dir = MakeTempDir("edgefl-loadgen-codec");
  Federation f = RunFederation(dir, 20,
                     {"--deadline=60", "--set=client.uplink=topk:0.01|int8|ef",
                      "--set=client.downlink=int8"},
                     {});
  ASSERT_EQ(f.metrics.size(), 2u);
  for (const auto& m : f.metrics) EXPECT_EQ(NumberField(m, "clients_reported"), 20);
  // Round 2's downloads are int8 deltas against version 1: far fewer bytes than round 1's.
  EXPECT_LT(NumberField(f.metrics[1], "bytes_down"), NumberField(f.metrics[0], "bytes_down") / 2);
  ASSERT_EQ(f.server_model.size(), f.reference.size());
  EXPECT_LE(MaxUlps(f.server_model, f.reference), 1);
}

// The server's threads, from /proc (0 once it is gone).
int Threads(pid_t pid) {
  const std::string status = ReadFileOrEmpty(absl::StrCat("/proc/", pid, "/status"));
  const size_t at = status.find("\nThreads:");
  return at == std::string::npos ? 0 : std::atoi(status.c_str() + at + 9);
}

// 300 devices, 15 selected per round: the other 285 wait in CheckIn long polls the whole round.
// With a thread per waiting poll (the synchronous API) the server would run 300+ threads; with
// the callback API and admission-controlled uploads it stays at a small constant.
TEST(Loadgen, WaitingLongPollsDoNotCostAThreadEach) {
  const std::string dir = MakeTempDir("edgefl-loadgen-threads");
  constexpr int kDevices = 300;
  int port = 0;
  // Rounds start once 15 joined and select 15 (fraction 0.05 of 300, at least min_clients); by
  // round 2 all 300 have joined and the other 285 wait in CheckIn.
  auto server = StartServer({"--model=small_cnn", "--rounds=3", "--min_clients=15",
                             "--eval_samples=200", "--deadline=120", "--set=sampling.fraction=0.05",
                             "--join_per_minute=100000", "--out=" + dir + "/run"},
                            dir, "server.log", &port);
  ASSERT_GT(port, 0) << server->Log();
  Subprocess loadgen({BinDir() + "/fl-loadgen", absl::StrCat("--server=127.0.0.1:", port),
                      "--insecure", absl::StrCat("--devices=", kDevices), "--train_median=2",
                      "--train_sigma=0.3", "--max_run=240", "--json_out=" + dir + "/loadgen.json"},
                     dir + "/loadgen.log");
  // Sample the server's thread count until it exits (bounded): a measurement, not a wait.
  int peak = 0;
  const absl::Time give_up = absl::Now() + kTimeout;
  while (server->running() && absl::Now() < give_up) {
    peak = std::max(peak, Threads(server->pid()));
    absl::SleepFor(absl::Milliseconds(100));
  }
  EXPECT_EQ(server->Wait(absl::Seconds(30)), 0) << server->Log();
  EXPECT_EQ(loadgen.Wait(absl::Seconds(120)), 0) << loadgen.Log();
  const auto metrics = ReadJsonLines(dir + "/run/metrics.jsonl");
  ASSERT_EQ(metrics.size(), 3u);
  for (const auto& m : metrics) EXPECT_EQ(NumberField(m, "clients_reported"), 15);
  const auto lines = ReadJsonLines(dir + "/loadgen.json");
  ASSERT_FALSE(lines.empty());
  EXPECT_EQ(NumberField(lines[0], "devices_finished"), kDevices);
  EXPECT_GT(peak, 0);
  EXPECT_LT(peak, 100) << "server threads with " << kDevices << " devices polling";
  std::printf("peak server threads with %d devices: %d\n", kDevices, peak);
}

// FedBuff through the real protocol: 40 devices, a tenth of them ten times slower, versions of
// 10 updates. Versions come out at the fast devices' pace; the slow devices' updates arrive
// against older versions and are still folded in (counted as stale).
TEST(Loadgen, BufferedModeMovesOnWithoutTheSlowTailAndFoldsItsStaleUpdates) {
  const std::string dir = MakeTempDir("edgefl-loadgen-buffered");
  int port = 0;
  auto server = StartServer({"--model=small_cnn", "--rounds=6", "--min_clients=40",
                             "--eval_samples=200", "--deadline=120",
                             "--set=aggregation.mode=buffered",
                             "--set=aggregation.buffered.buffer_size=10",
                             "--set=aggregation.buffered.max_staleness=20",
                             "--join_per_minute=100000", "--out=" + dir + "/run"},
                            dir, "server.log", &port);
  ASSERT_GT(port, 0) << server->Log();
  Subprocess loadgen({BinDir() + "/fl-loadgen", absl::StrCat("--server=127.0.0.1:", port),
                      "--insecure", "--devices=40", "--train_median=0.5", "--train_sigma=0.3",
                      "--slow_fraction=0.1", "--slow_factor=10", "--max_run=240",
                      "--json_out=" + dir + "/loadgen.json"},
                     dir + "/loadgen.log");
  EXPECT_EQ(server->Wait(kTimeout), 0) << server->Log();
  EXPECT_EQ(loadgen.Wait(absl::Seconds(120)), 0) << loadgen.Log();
  const auto metrics = ReadJsonLines(dir + "/run/metrics.jsonl");
  ASSERT_EQ(metrics.size(), 6u);
  double stale = 0, reported = 0;
  for (const auto& m : metrics) {
    EXPECT_EQ(NumberField(m, "clients_reported"), 10);  // every version takes exactly K updates
    // A version waits for 10 of the 36 fast devices, never for the slow ones (5 s of training).
    EXPECT_LT(NumberField(m, "round_seconds"), 4) << "round " << NumberField(m, "round");
    stale += NumberField(m, "updates_stale", 0);
    reported += NumberField(m, "clients_reported");
  }
  EXPECT_GT(stale, 0);  // the 4 slow devices' updates came late and still counted
  const auto lines = ReadJsonLines(dir + "/loadgen.json");
  ASSERT_FALSE(lines.empty());
  EXPECT_EQ(NumberField(lines[0], "reports_accepted"), reported);
}

}  // namespace
}  // namespace edgefl::testing
