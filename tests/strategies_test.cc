// End-to-end checks of the aggregation strategies with real fl-server, fl-client and
// fl-adversary processes on 127.0.0.1 and real Fashion-MNIST: state that survives a kill -9
// bit for bit, robust rules against a Byzantine device, DP accounting in the metrics, and bad
// aggregation configs refused at start-up.
#include <signal.h>
#include <sys/stat.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "aggregation/state_format.h"
#include "models/model_spec.h"
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

// The global model (little-endian float32) in the run's checkpoint; empty if there is none.
std::string CheckpointWeights(const std::string& run) {
  absl::StatusOr<server::RunStore> store = server::RunStore::Open(run);
  if (!store.ok()) return "";
  absl::StatusOr<proto::Checkpoint> ckpt = store->ReadCheckpoint();
  return ckpt.ok() ? ckpt->weights() : "";
}

// Runs the FedAdam federation (with `extra_args`) to the end; `kill_after` > 0 SIGKILLs the
// server once a checkpoint of at least that round exists (its global model into
// `killed_weights` if given) and resumes it. Returns the final model bytes.
std::string FedAdamRun(const std::string& dir, int kill_after, int64_t* killed_at,
                       const std::vector<std::string>& extra_args = {},
                       std::string* killed_weights = nullptr) {
  std::vector<std::string> args = kFedAdamArgs;
  args.insert(args.end(), extra_args.begin(), extra_args.end());
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
    if (killed_weights != nullptr) *killed_weights = CheckpointWeights(dir + "/run");
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

// Model averaging end to end (aggregation.averaging): from round 4 of 5 the run's result is the
// mean of the global models of rounds 4 and 5, while the devices train from the global model.
// Killed after round 4 and resumed, the run ends with the bytes of the same run uninterrupted
// (the average is in the checkpoint's aggregation state), and those bytes are
// float((double(g4) + double(g5)) / 2), g4 from the checkpoint at the kill and g5 from the last.
TEST(Strategies, AveragedRunIsTheMeanOfTheLastGlobalModelsAndSurvivesAKill) {
  const std::vector<std::string> averaging = {"--set=aggregation.averaging.from_round=4"};
  const std::string straight_dir = MakeTempDir("edgefl-avg-straight");
  const std::string killed_dir = MakeTempDir("edgefl-avg-killed");
  int64_t unused = 0, killed_at = 0;
  std::string g4;
  const std::string straight = FedAdamRun(straight_dir, 0, &unused, averaging);
  const std::string resumed = FedAdamRun(killed_dir, 4, &killed_at, averaging, &g4);
  ASSERT_GT(straight.size(), 0u);
  ASSERT_EQ(killed_at, 4) << "the kill did not come between rounds 4 and 5";
  EXPECT_NE(ReadFileOrEmpty(killed_dir + "/server2.log").find("resuming"), std::string::npos);
  EXPECT_TRUE(straight == resumed) << "final models differ after a resume from round 4";

  const std::string g5 = CheckpointWeights(killed_dir + "/run");
  ASSERT_EQ(g4.size(), straight.size());
  ASSERT_EQ(g5.size(), straight.size());
  ASSERT_EQ(CheckpointWeights(straight_dir + "/run"), g5) << "the two runs' global models differ";
  const size_t n = straight.size() / sizeof(float);
  std::vector<float> a(n), b(n), out(n);
  std::memcpy(a.data(), g4.data(), g4.size());
  std::memcpy(b.data(), g5.data(), g5.size());
  std::memcpy(out.data(), resumed.data(), resumed.size());
  size_t wrong = 0, differs_from_global = 0;
  for (size_t i = 0; i < n; ++i) {
    const float want =
        static_cast<float>((static_cast<double>(a[i]) + static_cast<double>(b[i])) / 2);
    wrong += out[i] != want;
    differs_from_global += out[i] != b[i];
  }
  EXPECT_EQ(wrong, 0u) << "of " << n << " values";
  EXPECT_GT(differs_from_global, n / 2) << "the final model is (mostly) the global model";

  // Rounds 4 and 5 report the averaged model as test_accuracy and the global one beside it;
  // rounds 1-3 have no average yet.
  auto metrics = ReadJsonLines(straight_dir + "/run/metrics.jsonl");
  ASSERT_EQ(metrics.size(), 5u);
  for (int r = 0; r < 5; ++r) {
    EXPECT_EQ(metrics[r].fields().contains("global_test_accuracy"), r >= 3) << "round " << r + 1;
  }
  EXPECT_GT(NumberField(metrics[4], "test_accuracy"), 0.2);
  EXPECT_GT(NumberField(metrics[4], "global_test_accuracy"), 0.2);
}

// FedDyn end to end: the devices' linear terms and the server's correction h are the two halves
// of one bookkeeping. With every device in every round and equal sample counts, the server's
// h = -alpha sum_t mean_i(delta_i,t) must equal the mean of the devices' committed terms
// g_i = -alpha sum_t delta_i,t: it does only if each device received alpha, trained with its
// term, and kept exactly the updates the server folded in.
TEST(Strategies, FedDynDevicesTermsAverageToTheServersCorrection) {
  const std::string dir = MakeTempDir("edgefl-feddyn");
  constexpr double kAlpha = 0.1;
  constexpr int kClients = 3;
  int port = 0;
  auto server = StartServer({"--model=small_cnn", "--rounds=3", "--min_clients=3",
                             "--eval_samples=500", "--deadline=120", "--set=quorum=1",
                             "--set=client.max_samples=300", "--set=aggregation.strategy=feddyn",
                             absl::StrCat("--set=aggregation.server_optimizer.alpha=", kAlpha),
                             "--out=" + dir + "/run"},
                            dir, "server.log", &port);
  ASSERT_GT(port, 0) << server->Log();
  std::vector<std::unique_ptr<Subprocess>> clients;
  for (int i = 0; i < kClients; ++i) {
    std::vector<std::string> args = ClientArgs(i, 60);
    args.push_back(absl::StrCat("--state_dir=", dir, "/state", i));
    clients.push_back(StartClient(port, args, dir, absl::StrCat("client", i, ".log")));
  }
  ASSERT_EQ(server->Wait(kRunTimeout), 0) << server->Log();
  for (auto& c : clients) EXPECT_EQ(c->Wait(absl::Seconds(60)), 0) << c->Log();
  auto metrics = ReadJsonLines(dir + "/run/metrics.jsonl");
  ASSERT_EQ(metrics.size(), 3u);
  for (const auto& m : metrics) EXPECT_EQ(NumberField(m, "clients_reported"), kClients);
  EXPECT_GT(NumberField(metrics[2], "test_accuracy"), 0.2);

  // The server's h, from the checkpoint's aggregation state.
  absl::StatusOr<server::RunStore> store = server::RunStore::Open(dir + "/run");
  ASSERT_TRUE(store.ok()) << store.status();
  absl::StatusOr<proto::Checkpoint> ckpt = store->ReadCheckpoint();
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  EXPECT_EQ(ckpt->round(), 3);
  absl::StatusOr<aggregation::StateReader> pipeline =
      aggregation::StateReader::Open(ckpt->aggregation_state(), "aggregation.pipeline");
  ASSERT_TRUE(pipeline.ok()) << pipeline.status();
  ASSERT_EQ(*pipeline->GetString("name", 256), "feddyn");
  absl::StatusOr<std::string> opt_state = pipeline->GetString("optimizer", size_t{1} << 30);
  ASSERT_TRUE(opt_state.ok()) << opt_state.status();
  absl::StatusOr<aggregation::StateReader> opt =
      aggregation::StateReader::Open(*opt_state, "server_optimizer.feddyn");
  ASSERT_TRUE(opt.ok()) << opt.status();
  const uint64_t dim = *opt->GetU64("dim");
  ASSERT_GT(dim, 0u);
  opt->GetF64("learning_rate").IgnoreError();
  EXPECT_EQ(*opt->GetU64("steps"), 3u);
  std::vector<double> h;
  ASSERT_TRUE(opt->GetF64Array("h", dim, &h).ok());

  // The devices' committed terms (client/feddyn_term.h's file: 16-byte header, float32 values,
  // SHA-256).
  std::vector<double> mean_g(dim, 0.0);
  for (int i = 0; i < kClients; ++i) {
    const std::string bytes = ReadFileOrEmpty(absl::StrCat(dir, "/state", i, "/client-", i, ".feddyn"));
    ASSERT_EQ(bytes.size(), 16 + 4 * dim + 32) << "client " << i;
    ASSERT_EQ(bytes.substr(0, 8), "EFLDYN01");
    const float* g = reinterpret_cast<const float*>(bytes.data() + 16);
    for (uint64_t k = 0; k < dim; ++k) mean_g[k] += static_cast<double>(g[k]) / kClients;
  }
  double max_h = 0, max_diff = 0;
  for (uint64_t k = 0; k < dim; ++k) {
    max_h = std::max(max_h, std::abs(h[k]));
    max_diff = std::max(max_diff, std::abs(h[k] - mean_g[k]));
  }
  EXPECT_GT(max_h, 1e-4) << "h never moved";
  // float32 terms against the server's doubles: rounding only.
  EXPECT_LT(max_diff, 1e-5 * max_h + 1e-7) << "max |h| " << max_h;
  std::printf("feddyn: max |h| %.3e, max |h - mean g| %.3e\n", max_h, max_diff);
}

// FedBABU through the real protocol: after two rounds of real devices the global model's final
// layer is still the initial one bit for bit and the body has moved (a device that ignored the
// task's freeze_head, e.g. a build from before it, moves the head and fails this).
TEST(Strategies, FedBabuKeepsTheInitialHeadThroughRealRounds) {
  const std::string dir = MakeTempDir("edgefl-fedbabu");
  constexpr int kClients = 2;
  constexpr uint64_t kSeed = 7;
  int port = 0;
  auto server = StartServer({"--model=small_cnn", "--rounds=2", "--min_clients=2",
                             "--eval_samples=500", "--deadline=120", "--set=quorum=1",
                             absl::StrCat("--set=seed=", kSeed), "--set=client.max_samples=300",
                             "--set=aggregation.strategy=fedbabu", "--out=" + dir + "/run"},
                            dir, "server.log", &port);
  ASSERT_GT(port, 0) << server->Log();
  std::vector<std::unique_ptr<Subprocess>> clients;
  for (int i = 0; i < kClients; ++i) {
    clients.push_back(StartClient(port, ClientArgs(i, 60), dir, absl::StrCat("client", i, ".log")));
  }
  ASSERT_EQ(server->Wait(kRunTimeout), 0) << server->Log();
  for (auto& c : clients) EXPECT_EQ(c->Wait(absl::Seconds(60)), 0) << c->Log();
  auto metrics = ReadJsonLines(dir + "/run/metrics.jsonl");
  ASSERT_EQ(metrics.size(), 2u);
  for (const auto& m : metrics) EXPECT_EQ(NumberField(m, "clients_reported"), kClients);

  absl::StatusOr<server::RunStore> store = server::RunStore::Open(dir + "/run");
  ASSERT_TRUE(store.ok()) << store.status();
  absl::StatusOr<proto::Checkpoint> ckpt = store->ReadCheckpoint();
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  EXPECT_EQ(ckpt->round(), 2);
  absl::StatusOr<std::vector<float>> init = models::InitialWeights("small_cnn", kSeed);
  ASSERT_TRUE(init.ok()) << init.status();
  ASSERT_EQ(ckpt->weights().size(), init->size() * sizeof(float));
  std::vector<float> global(init->size());
  std::memcpy(global.data(), ckpt->weights().data(), ckpt->weights().size());
  // The head: the spec's last layer, fc2's weight and bias.
  const auto& tensors = ckpt->spec().tensors();
  ASSERT_GE(tensors.size(), 2);
  ASSERT_EQ(tensors[tensors.size() - 2].name(), "fc2.weight");
  ASSERT_EQ(tensors[tensors.size() - 1].name(), "fc2.bias");
  const int64_t head = tensors[tensors.size() - 2].shape(0) * tensors[tensors.size() - 2].shape(1) +
                       tensors[tensors.size() - 1].shape(0);
  size_t head_moved = 0, body_moved = 0;
  for (size_t k = 0; k < global.size(); ++k) {
    if (global[k] == (*init)[k]) continue;
    ++(k + head >= global.size() ? head_moved : body_moved);
  }
  EXPECT_EQ(head_moved, 0u) << "of " << head << " head values";
  EXPECT_GT(body_moved, global.size() / 2) << "of " << global.size() - head << " body values";
}

// FedNTD through the real protocol: one round from the same initial model, seed and data, with
// fedavg and with fedntd (beta 4), gives different global models, i.e. the devices distilled
// (a device that ignored the task's ntd_beta, e.g. a build from before it, gives the same model
// twice and fails this).
TEST(Strategies, FedNtdReachesTheDevicesAndChangesTheirTraining) {
  const std::string dir = MakeTempDir("edgefl-fedntd");
  auto run = [&](const std::string& name, const std::vector<std::string>& extra) {
    int port = 0;
    std::vector<std::string> args = {"--model=small_cnn", "--rounds=1", "--min_clients=2",
                                     "--eval_samples=500", "--deadline=120", "--set=quorum=1",
                                     "--set=seed=5", "--set=client.max_samples=300",
                                     "--out=" + dir + "/" + name};
    args.insert(args.end(), extra.begin(), extra.end());
    auto server = StartServer(args, dir, name + ".log", &port);
    EXPECT_GT(port, 0) << server->Log();
    std::vector<std::unique_ptr<Subprocess>> clients;
    for (int i = 0; i < 2; ++i) {
      // labels:2 shards: each device has two classes, what FedNTD is for.
      clients.push_back(StartClient(port,
                                    {"--data=fmnist", "--partition=labels:2", "--num_partitions=20",
                                     absl::StrCat("--client_index=", i), "--seed=0",
                                     "--max_retry_seconds=120"},
                                    dir, absl::StrCat(name, "-client", i, ".log")));
    }
    EXPECT_EQ(server->Wait(kRunTimeout), 0) << server->Log();
    for (auto& c : clients) EXPECT_EQ(c->Wait(absl::Seconds(60)), 0) << c->Log();
    auto metrics = ReadJsonLines(dir + "/" + name + "/metrics.jsonl");
    EXPECT_EQ(metrics.size(), 1u);
    if (metrics.size() == 1) {
      EXPECT_EQ(NumberField(metrics[0], "clients_reported"), 2);
    }
    absl::StatusOr<server::RunStore> store = server::RunStore::Open(dir + "/" + name);
    EXPECT_TRUE(store.ok()) << store.status();
    if (!store.ok()) return std::string();
    absl::StatusOr<proto::Checkpoint> ckpt = store->ReadCheckpoint();
    EXPECT_TRUE(ckpt.ok()) << ckpt.status();
    return ckpt.ok() ? ckpt->weights() : std::string();
  };
  const std::string avg = run("fedavg", {"--set=aggregation.strategy=fedavg"});
  const std::string ntd = run("fedntd", {"--set=aggregation.strategy=fedntd", "--set=client.ntd_beta=4"});
  ASSERT_FALSE(avg.empty());
  ASSERT_EQ(avg.size(), ntd.size());
  EXPECT_NE(avg, ntd) << "the devices trained the same with and without ntd_beta";
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
      {"aggregation.server_optimizer.alpha=0", "aggregation.server_optimizer.alpha"},
      {"client.proximal_mu=0.1", "client.proximal_mu"},
      {"client.freeze_head=2", "client.freeze_head"},
      {"client.ntd_tau=0", "client.ntd_tau"},
      {"aggregation.averaging.from_round=11", "aggregation.averaging.from_round"},
      {"aggregation.averaging.ema_decay=1", "aggregation.averaging.ema_decay"},
  };
  const std::vector<std::string> context = {
      "",  // strategy-independent
      "", "", "--set=aggregation.strategy=fedadam", "--set=aggregation.strategy=fedyogi",
      "--set=aggregation.strategy=fedtrimmedavg", "--set=aggregation.strategy=krum",
      "--set=aggregation.strategy=dp_fedavg", "--set=aggregation.strategy=dp_fedavg",
      "--set=aggregation.strategy=fedrs", "--set=aggregation.strategy=feddyn",
      "--set=aggregation.strategy=feddyn", "--set=aggregation.strategy=fedbabu",
      "--set=aggregation.strategy=fedntd", "--rounds=10", "--set=aggregation.averaging.from_round=5"};
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
                           "fedrs", "fedbabu", "fedntd", "feddyn", "fedmedian", "fedtrimmedavg", "krum", "multikrum", "dp_fedavg"}) {
    EXPECT_NE(listing.find(name), std::string::npos) << name;
  }
  EXPECT_NE(listing.find("aggregation.averaging"), std::string::npos) << listing;
}

}  // namespace
}  // namespace edgefl::testing
