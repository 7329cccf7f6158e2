// End-to-end checks of the aggregation strategies with real fl-server, fl-client and
// fl-adversary processes on 127.0.0.1 and real Fashion-MNIST: state that survives a kill -9
// bit for bit, robust rules against a Byzantine device, DP accounting in the metrics, and bad
// aggregation configs refused at start-up.
#include <signal.h>
#include <sys/stat.h>

#include <algorithm>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "server/run_store.h"
#include "tests/e2e_util.h"

namespace edgefl::testing {
namespace {

constexpr absl::Duration kRunTimeout = absl::Seconds(300);

std::vector<std::string> ClientArgs(int index, int partitions) {
  return {"--partition=iid", absl::StrCat("--num_partitions=", partitions),
          absl::StrCat("--client_index=", index), "--seed=1", "--max_retry_seconds=120"};
}

bool Exists(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0;
}

int64_t CheckpointRound(const std::string& run) {
  if (!Exists(run + "/checkpoint.pb")) return 0;
  absl::StatusOr<server::RunStore> store = server::RunStore::Open(run);
  if (!store.ok()) return 0;
  absl::StatusOr<proto::Checkpoint> ckpt = store->ReadCheckpoint();
  return ckpt.ok() ? ckpt->round() : 0;
}

const std::vector<std::string> kFedAdamArgs = {
    "--model=small_cnn",       "--rounds=5",
    "--min_clients=3",         "--eval_samples=500",
    "--deadline=120",          "--set=client.max_samples=300",
    "--set=aggregation.strategy=fedadam", "--set=aggregation.server_optimizer.lr=0.01",
    "--set=aggregation.server_optimizer.tau=0.001"};

// Runs the FedAdam federation to the end; `kill_after` > 0 SIGKILLs the server once a checkpoint
// of at least that round exists and resumes it. Returns the final model bytes.
std::string FedAdamRun(const std::string& dir, int kill_after, int64_t* killed_at) {
  std::vector<std::string> args = kFedAdamArgs;
  args.push_back("--out=" + dir + "/run");
  int port = 0;
  auto server = StartServer(args, dir, "server1.log", &port);
  EXPECT_GT(port, 0) << server->Log();
  if (port == 0) return "";
  std::vector<std::unique_ptr<Subprocess>> clients;
  for (int i = 0; i < 3; ++i) {
    clients.push_back(StartClient(port, ClientArgs(i, 60), dir, absl::StrCat("client", i, ".log")));
  }
  if (kill_after > 0) {
    EXPECT_TRUE(WaitFor([&] { return CheckpointRound(dir + "/run") >= kill_after; }, kRunTimeout))
        << server->Log();
    server->Signal(SIGKILL);
    EXPECT_EQ(server->Wait(absl::Seconds(30)), 128 + SIGKILL);
    *killed_at = CheckpointRound(dir + "/run");
    args.push_back("--resume");
    int same_port = port;
    server = StartServer(args, dir, "server2.log", &same_port);
    EXPECT_EQ(same_port, port) << server->Log();
  }
  EXPECT_EQ(server->Wait(kRunTimeout), 0) << server->Log();
  for (auto& c : clients) EXPECT_EQ(c->Wait(absl::Seconds(60)), 0) << c->Log();
  return ReadFileOrEmpty(dir + "/run/model_final.f32");
}

// The optimizer's moments go into the checkpoint with the model: a FedAdam run killed after
// round 2 and resumed ends with exactly the bytes of the same run uninterrupted.
TEST(Strategies, FedAdamKilledAfterRound2AndResumedIsBitIdentical) {
  const std::string straight_dir = MakeTempDir("edgefl-adam-straight");
  const std::string killed_dir = MakeTempDir("edgefl-adam-killed");
  int64_t unused = 0, killed_at = 0;
  const std::string straight = FedAdamRun(straight_dir, 0, &unused);
  const std::string resumed = FedAdamRun(killed_dir, 2, &killed_at);
  ASSERT_EQ(straight.size(), resumed.size());
  ASSERT_GT(straight.size(), 0u);
  EXPECT_GE(killed_at, 2);
  EXPECT_LT(killed_at, 5) << "the kill came after the last round: nothing was resumed";
  EXPECT_TRUE(straight == resumed) << "final models differ after a resume from round " << killed_at;
  EXPECT_NE(ReadFileOrEmpty(killed_dir + "/server2.log").find("resuming"), std::string::npos);
  // The run learned something (well above the 10% of chance: Adam did not diverge); how well
  // FedAdam learns is the benchmark's business (bench/strategies_fmnist).
  auto metrics = ReadJsonLines(straight_dir + "/run/metrics.jsonl");
  ASSERT_EQ(metrics.size(), 5u);
  EXPECT_GT(NumberField(metrics[4], "test_accuracy"), 0.2);
  EXPECT_DOUBLE_EQ(NumberField(metrics[4], "server_lr"), 0.01);
}

// One Gaussian attacker among six devices: FedAvg's mean is wrecked, multi-Krum (f = 1) drops
// the attacker and learns. All through the real protocol.
double ByzantineRun(const std::string& dir, const std::string& strategy) {
  int port = 0;
  auto server = StartServer({"--model=small_cnn", "--rounds=3", "--min_clients=6",
                             "--eval_samples=1000", "--deadline=120",
                             "--set=client.max_samples=600",
                             "--set=aggregation.strategy=" + strategy, "--out=" + dir + "/run"},
                            dir, "server.log", &port);
  EXPECT_GT(port, 0) << server->Log();
  if (port == 0) return -1;
  std::vector<std::unique_ptr<Subprocess>> clients;
  for (int i = 0; i < 5; ++i) {
    clients.push_back(StartClient(port, ClientArgs(i, 30), dir, absl::StrCat("client", i, ".log")));
  }
  std::vector<std::string> adversary = {BinDir() + "/fl-adversary",
                                        absl::StrCat("--server=127.0.0.1:", port),
                                        "--insecure", "--progress=never", "--attack=gaussian",
                                        "--attack_stddev=1"};
  for (const std::string& a : ClientArgs(5, 30)) adversary.push_back(a);
  clients.push_back(std::make_unique<Subprocess>(adversary, dir + "/adversary.log"));
  EXPECT_EQ(server->Wait(kRunTimeout), 0) << server->Log();
  for (auto& c : clients) EXPECT_EQ(c->Wait(absl::Seconds(60)), 0) << c->Log();
  EXPECT_NE(clients.back()->Log().find("poisoned the update (gaussian)"), std::string::npos)
      << clients.back()->Log();
  auto metrics = ReadJsonLines(dir + "/run/metrics.jsonl");
  EXPECT_EQ(metrics.size(), 3u);
  if (metrics.size() != 3u) return -1;
  EXPECT_EQ(NumberField(metrics[2], "clients_reported"), 6);
  return NumberField(metrics[2], "test_accuracy");
}

TEST(Strategies, MultiKrumShrugsOffAGaussianAttackerThatWrecksFedAvg) {
  const double fedavg = ByzantineRun(MakeTempDir("edgefl-byz-fedavg"), "fedavg");
  const double krum = ByzantineRun(MakeTempDir("edgefl-byz-krum"), "multikrum");
  std::printf("one gaussian attacker in six: fedavg %.4f, multikrum %.4f\n", fedavg, krum);
  EXPECT_LT(fedavg, 0.3);
  EXPECT_GT(krum, 0.5);
  EXPECT_GT(krum, fedavg + 0.25);
}

// DP-FedAvg: every metrics line carries the privacy spent so far, which only grows, and the clip
// norm; the adaptive clip norm moves from its start.
TEST(Strategies, DpRunWritesAGrowingEpsilonIntoEveryMetricsLine) {
  const std::string dir = MakeTempDir("edgefl-dp");
  int port = 0;
  auto server = StartServer({"--model=small_cnn", "--rounds=3", "--min_clients=3",
                             "--eval_samples=500", "--deadline=120",
                             "--set=client.max_samples=200",
                             "--set=aggregation.strategy=dp_fedavg_adaptive",
                             "--set=aggregation.dp.noise_multiplier=1.0",
                             "--set=aggregation.dp.adaptive_clipping.count_noise_stddev=1",
                             "--out=" + dir + "/run"},
                            dir, "server.log", &port);
  ASSERT_GT(port, 0) << server->Log();
  std::vector<std::unique_ptr<Subprocess>> clients;
  for (int i = 0; i < 3; ++i) {
    clients.push_back(StartClient(port, ClientArgs(i, 60), dir, absl::StrCat("client", i, ".log")));
  }
  ASSERT_EQ(server->Wait(kRunTimeout), 0) << server->Log();
  for (auto& c : clients) EXPECT_EQ(c->Wait(absl::Seconds(60)), 0) << c->Log();
  auto metrics = ReadJsonLines(dir + "/run/metrics.jsonl");
  ASSERT_EQ(metrics.size(), 3u) << ReadFileOrEmpty(dir + "/run/metrics.jsonl");
  double last = 0;
  for (const auto& m : metrics) {
    const double eps = NumberField(m, "dp_epsilon");
    EXPECT_GT(eps, last);
    last = eps;
    EXPECT_GT(NumberField(m, "dp_clip_norm"), 0);
  }
  EXPECT_DOUBLE_EQ(NumberField(metrics[0], "dp_clip_norm"), 0.1);
  EXPECT_NE(NumberField(metrics[2], "dp_clip_norm"), 0.1);
  EXPECT_NE(server->Log().find("dp_epsilon"), std::string::npos) << server->Log();
}

// A bad aggregation config: one line naming the field, exit 2, and no run folder.
TEST(Strategies, BadAggregationConfigIsRefusedAtStartUpAndWritesNothing) {
  const std::string dir = MakeTempDir("edgefl-bad-agg");
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"aggregation.strategy=fedfoo", "aggregation.strategy"},
      {"aggregation.combiner.rule=mode", "aggregation.combiner.rule"},
      {"aggregation.server_optimizer.name=lamb", "aggregation.server_optimizer.name"},
      {"aggregation.server_optimizer.beta1=1", "aggregation.server_optimizer.beta1"},
      {"aggregation.server_optimizer.tau=0", "aggregation.server_optimizer.tau"},
      {"aggregation.combiner.trim_beta=0.5", "aggregation.combiner.trim_beta"},
      {"aggregation.combiner.num_byzantine=5", "aggregation.combiner.num_byzantine"},
      {"aggregation.dp.noise_multiplier=-1", "aggregation.dp.noise_multiplier"},
      {"aggregation.dp.delta=1.5", "aggregation.dp.delta"},
      {"client.restricted_softmax_alpha=1.5", "client.restricted_softmax_alpha"},
  };
  const std::vector<std::string> context = {
      "",  // strategy-independent
      "", "", "--set=aggregation.strategy=fedadam", "--set=aggregation.strategy=fedyogi",
      "--set=aggregation.strategy=fedtrimmedavg", "--set=aggregation.strategy=krum",
      "--set=aggregation.strategy=dp_fedavg", "--set=aggregation.strategy=dp_fedavg",
      "--set=aggregation.strategy=fedrs"};
  for (size_t i = 0; i < cases.size(); ++i) {
    const std::string out = absl::StrCat(dir, "/run", i);
    std::vector<std::string> argv = {BinDir() + "/fl-server", "--insecure",
                                     "--listen=127.0.0.1:0", "--min_clients=5",
                                     "--out=" + out};
    if (!context[i].empty()) argv.push_back(context[i]);
    argv.push_back("--set=" + cases[i].first);
    std::string output;
    EXPECT_EQ(RunProgram(argv, &output), 2) << cases[i].first << ": " << output;
    EXPECT_NE(output.find(cases[i].second), std::string::npos) << output;
    EXPECT_EQ(std::count(output.begin(), output.end(), '\n'), 1) << output;
    EXPECT_FALSE(Exists(out)) << cases[i].first << " left " << out << " behind";
  }
  std::string listing;
  ASSERT_EQ(RunProgram({BinDir() + "/fl-server", "strategies"}, &listing), 0) << listing;
  for (const char* name : {"fedavg", "fedavgm", "fedadam", "fedyogi", "fedadagrad", "fedprox",
                           "fedrs", "fedmedian", "fedtrimmedavg", "krum", "multikrum", "dp_fedavg"}) {
    EXPECT_NE(listing.find(name), std::string::npos) << name;
  }
}

}  // namespace
}  // namespace edgefl::testing
