// End-to-end: real fl-server and fl-client processes on 127.0.0.1, real Fashion-MNIST.
#include <signal.h>
#include <sys/stat.h>

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
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

int64_t FileSize(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 ? st.st_size : -1;
}

TEST(Federation, ThreeClientsLearnAboveChance) {
  const std::string dir = MakeTempDir("edgefl-fed");
  int port = 0;
  auto server = StartServer({"--model=small_cnn", "--rounds=2", "--min_clients=3",
                             "--eval_samples=2000", "--deadline=120", "--out=" + dir + "/run"},
                            dir, "server.log", &port);
  ASSERT_GT(port, 0) << server->Log();
  std::vector<std::unique_ptr<Subprocess>> clients;
  for (int i = 0; i < 3; ++i) {
    clients.push_back(StartClient(port, ClientArgs(i, 20), dir, absl::StrCat("client", i, ".log")));
  }
  ASSERT_EQ(server->Wait(kRunTimeout), 0) << server->Log();
  for (auto& c : clients) EXPECT_EQ(c->Wait(absl::Seconds(60)), 0) << c->Log();

  auto metrics = ReadJsonLines(dir + "/run/metrics.jsonl");
  ASSERT_EQ(metrics.size(), 2u) << ReadFileOrEmpty(dir + "/run/metrics.jsonl");
  for (int r = 0; r < 2; ++r) {
    EXPECT_EQ(NumberField(metrics[r], "round"), r + 1);
    EXPECT_EQ(NumberField(metrics[r], "clients_selected"), 3);
    EXPECT_EQ(NumberField(metrics[r], "clients_reported"), 3);
    EXPECT_EQ(NumberField(metrics[r], "clients_failed"), 0);
    EXPECT_GT(NumberField(metrics[r], "bytes_down"), 0);
    EXPECT_GT(NumberField(metrics[r], "bytes_up"), 0);
    EXPECT_GE(NumberField(metrics[r], "round_seconds"), 0);
  }
  // Chance is 10%; a learning federation is far above it after two rounds.
  EXPECT_GT(NumberField(metrics[1], "test_accuracy"), 0.5);
  EXPECT_GT(FileSize(dir + "/run/checkpoint.pb"), 0);
  EXPECT_GT(FileSize(dir + "/run/model_final.f32"), 0);
  EXPECT_EQ(FileSize(dir + "/run/model_final.f32") % 4, 0);
  EXPECT_GT(FileSize(dir + "/run/config.json"), 0);
}

TEST(Federation, ResumesAfterServerSigkill) {
  const std::string dir = MakeTempDir("edgefl-resume");
  const std::vector<std::string> server_args = {"--model=small_cnn", "--rounds=6",
                                                "--min_clients=3", "--eval_samples=1000",
                                                "--deadline=60", "--out=" + dir + "/run"};
  int port = 0;
  auto server = StartServer(server_args, dir, "server1.log", &port);
  ASSERT_GT(port, 0) << server->Log();
  std::vector<std::unique_ptr<Subprocess>> clients;
  for (int i = 0; i < 3; ++i) {
    clients.push_back(StartClient(port, ClientArgs(i, 20), dir, absl::StrCat("client", i, ".log")));
  }
  // Kill the server as soon as round 1 is checkpointed (as it closes, before its evaluation,
  // which lags behind the rounds; lines of rounds whose evaluation dies with the process are
  // written on resume from the checkpoint).
  ASSERT_TRUE(WaitFor([&] { return FileSize(dir + "/run/checkpoint.pb") > 0; }, kRunTimeout))
      << server->Log();
  server->Signal(SIGKILL);
  ASSERT_EQ(server->Wait(absl::Seconds(30)), 128 + SIGKILL);

  std::vector<std::string> resume_args = server_args;
  resume_args.push_back("--resume");
  int same_port = port;
  auto resumed = StartServer(resume_args, dir, "server2.log", &same_port);
  ASSERT_EQ(same_port, port) << resumed->Log();
  ASSERT_EQ(resumed->Wait(kRunTimeout), 0) << resumed->Log();
  for (auto& c : clients) EXPECT_EQ(c->Wait(absl::Seconds(60)), 0) << c->Log();

  EXPECT_NE(resumed->Log().find("resuming"), std::string::npos) << resumed->Log();
  auto metrics = ReadJsonLines(dir + "/run/metrics.jsonl");
  ASSERT_EQ(metrics.size(), 6u) << ReadFileOrEmpty(dir + "/run/metrics.jsonl");
  for (int r = 0; r < 6; ++r) {
    EXPECT_EQ(NumberField(metrics[r], "round"), r + 1);
    EXPECT_EQ(NumberField(metrics[r], "clients_reported"), 3);
  }
  EXPECT_GT(NumberField(metrics[5], "test_accuracy"), 0.5);
}

// The checkpoint of the last round is written as it closes, before its evaluation: a server that
// dies in between left a finished run whose last metrics line is missing. --resume must evaluate
// the checkpoint's model for that line and still tell returning clients the run is over.
TEST(Federation, ResumeOfAFinishedRunWritesTheLostLineAndReleasesClients) {
  const std::string dir = MakeTempDir("edgefl-resume-done");
  const std::vector<std::string> server_args = {"--model=small_cnn", "--rounds=1",
                                                "--min_clients=2", "--eval_samples=1000",
                                                "--deadline=60", "--out=" + dir + "/run"};
  int port = 0;
  auto server = StartServer(server_args, dir, "server1.log", &port);
  ASSERT_GT(port, 0) << server->Log();
  std::vector<std::unique_ptr<Subprocess>> clients;
  for (int i = 0; i < 2; ++i) {
    clients.push_back(StartClient(port, ClientArgs(i, 20), dir, absl::StrCat("client", i, ".log")));
  }
  ASSERT_EQ(server->Wait(kRunTimeout), 0) << server->Log();
  for (auto& c : clients) ASSERT_EQ(c->Wait(absl::Seconds(60)), 0) << c->Log();
  auto before = ReadJsonLines(dir + "/run/metrics.jsonl");
  ASSERT_EQ(before.size(), 1u);

  // Put the run back in the state of a crash after the close of round 1, before its line.
  absl::StatusOr<server::RunStore> store = server::RunStore::Open(dir + "/run");
  ASSERT_TRUE(store.ok()) << store.status();
  absl::StatusOr<proto::Checkpoint> ckpt = store->ReadCheckpoint();
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  ASSERT_EQ(ckpt->round(), 1);
  proto::RoundRecord* stats = ckpt->add_pending_rounds();
  stats->set_round(1);
  stats->set_clients_selected(2);
  stats->set_clients_reported(2);
  ASSERT_TRUE(store->WriteCheckpoint(*ckpt).ok());
  ASSERT_TRUE(store->TruncateMetricsAfter(0).ok());

  std::vector<std::string> resume_args = server_args;
  resume_args.push_back("--resume");
  int same_port = port;
  auto resumed = StartServer(resume_args, dir, "server2.log", &same_port);
  ASSERT_EQ(same_port, port) << resumed->Log();
  clients.clear();
  for (int i = 0; i < 2; ++i) {
    clients.push_back(
        StartClient(port, ClientArgs(i, 20), dir, absl::StrCat("client", i, "-again.log")));
  }
  ASSERT_EQ(resumed->Wait(kRunTimeout), 0) << resumed->Log();
  for (auto& c : clients) EXPECT_EQ(c->Wait(absl::Seconds(60)), 0) << c->Log();
  auto after = ReadJsonLines(dir + "/run/metrics.jsonl");
  ASSERT_EQ(after.size(), 1u) << ReadFileOrEmpty(dir + "/run/metrics.jsonl");
  EXPECT_EQ(NumberField(after[0], "round"), 1);
  EXPECT_EQ(NumberField(after[0], "clients_reported"), 2);
  // The same model on the same test rows: the same accuracy, to the printed digit.
  EXPECT_EQ(NumberField(after[0], "test_accuracy"), NumberField(before[0], "test_accuracy"));
  EXPECT_EQ(NumberField(after[0], "test_loss"), NumberField(before[0], "test_loss"));
}

TEST(Federation, KilledClientDoesNotHoldRoundPastDeadline) {
  const std::string dir = MakeTempDir("edgefl-dead");
  constexpr double kDeadline = 20;
  int port = 0;
  auto server = StartServer({"--model=small_cnn", "--rounds=1", "--min_clients=3",
                             "--eval_samples=500", absl::StrCat("--deadline=", kDeadline),
                             "--set=quorum=0.6", "--out=" + dir + "/run"},
                            dir, "server.log", &port);
  ASSERT_GT(port, 0) << server->Log();
  // The live clients hold 300 images each, so they report well within the deadline even on a
  // loaded machine; the victim holds half the training set, so it is still training when killed.
  auto c0 = StartClient(port, ClientArgs(0, 200), dir, "client0.log");
  auto c1 = StartClient(port, ClientArgs(1, 200), dir, "client1.log");
  auto victim = StartClient(port, ClientArgs(1, 2), dir, "victim.log");
  ASSERT_TRUE(WaitFor([&] { return victim->Log().find("training on") != std::string::npos; },
                      absl::Seconds(120)))
      << victim->Log();
  victim->Signal(SIGKILL);
  ASSERT_EQ(server->Wait(absl::Seconds(kDeadline + 60)), 0) << server->Log();
  auto metrics = ReadJsonLines(dir + "/run/metrics.jsonl");
  ASSERT_EQ(metrics.size(), 1u);
  EXPECT_EQ(NumberField(metrics[0], "clients_selected"), 3);
  EXPECT_EQ(NumberField(metrics[0], "clients_reported"), 2);
  EXPECT_EQ(NumberField(metrics[0], "clients_failed"), 1);
  // round_seconds also counts the wait for the clients to start and join (several seconds on a
  // loaded machine); a victim holding the round would keep it open for minutes.
  EXPECT_LE(NumberField(metrics[0], "round_seconds"), kDeadline + 20);
  EXPECT_EQ(c0->Wait(absl::Seconds(60)), 0) << c0->Log();
  EXPECT_EQ(c1->Wait(absl::Seconds(60)), 0) << c1->Log();
}

TEST(Federation, CompressedClientsStillLearn) {
  const std::string dir = MakeTempDir("edgefl-compressed");
  int port = 0;
  auto server = StartServer({"--model=small_cnn", "--rounds=3", "--min_clients=3",
                             "--eval_samples=2000", "--deadline=120",
                             "--set=client.uplink=topk:0.1|int8|ef", "--set=client.downlink=int8",
                             "--out=" + dir + "/run"},
                            dir, "server.log", &port);
  ASSERT_GT(port, 0) << server->Log();
  std::vector<std::unique_ptr<Subprocess>> clients;
  for (int i = 0; i < 3; ++i) {
    std::vector<std::string> args = ClientArgs(i, 20);
    args.push_back("--state_dir=" + dir + "/state");
    clients.push_back(StartClient(port, args, dir, absl::StrCat("client", i, ".log")));
  }
  ASSERT_EQ(server->Wait(kRunTimeout), 0) << server->Log();
  for (auto& c : clients) EXPECT_EQ(c->Wait(absl::Seconds(60)), 0) << c->Log();
  auto metrics = ReadJsonLines(dir + "/run/metrics.jsonl");
  ASSERT_EQ(metrics.size(), 3u);
  constexpr double kDenseBytes = 54314.0 * 4;  // small_cnn in float32
  for (int r = 0; r < 3; ++r) {
    EXPECT_EQ(NumberField(metrics[r], "clients_reported"), 3);
    // top-10% + int8: well under a tenth of the dense update per client.
    EXPECT_LT(NumberField(metrics[r], "bytes_up") / 3, kDenseBytes / 10) << r;
  }
  // Round 1 ships the full model; later rounds an int8 delta (about a quarter).
  EXPECT_GT(NumberField(metrics[0], "bytes_down") / 3, kDenseBytes);
  EXPECT_LT(NumberField(metrics[2], "bytes_down") / 3, kDenseBytes / 3);
  EXPECT_GT(NumberField(metrics[2], "test_accuracy"), 0.5);
  // Each client saved its error-feedback residual.
  for (int i = 0; i < 3; ++i) {
    EXPECT_GT(FileSize(absl::StrCat(dir, "/state/client-", i, ".ef")), 0) << i;
  }
}

google::protobuf::Struct ReadJson(const std::string& path) {
  google::protobuf::Struct s;
  EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(ReadFileOrEmpty(path), &s).ok()) << path;
  return s;
}

double NestedNumber(const google::protobuf::Struct& s, const std::string& object,
                    const std::string& key) {
  auto it = s.fields().find(object);
  if (it == s.fields().end() || !it->second.has_struct_value()) return -1;
  return NumberField(it->second.struct_value(), key);
}

// fl-client --distill_to: one client exports a student after every round it takes part in (and
// reports its local accuracy in the next round's metrics), the other only once, from the final
// global model the server sends it when the run is finished (over the int8 downlink's delta).
TEST(Federation, ClientsDistilStudentsEachRoundOrFromTheFinalModel) {
  const std::string dir = MakeTempDir("edgefl-distill");
  int port = 0;
  auto server = StartServer({"--model=small_cnn", "--rounds=2", "--min_clients=2",
                             "--eval_samples=1000", "--deadline=300",
                             "--set=client.downlink=int8", "--out=" + dir + "/run",
                             // Client 0 distils after round 2 before it checks in again (10-20 s
                             // on a loaded machine): the server waits for it to hear the run is
                             // over instead of leaving it to retry an address that is gone.
                             "--finish_grace_seconds=120"},
                            dir, "server.log", &port);
  ASSERT_GT(port, 0) << server->Log();
  const std::vector<std::string> distill = {"--distill_epochs=1", "--distill_samples=400"};
  std::vector<std::string> each = ClientArgs(0, 20), last = ClientArgs(1, 20);
  each.push_back("--distill_to=" + dir + "/each");
  last.push_back("--distill_to=" + dir + "/final");
  last.push_back("--distill_final_only");
  each.insert(each.end(), distill.begin(), distill.end());
  last.insert(last.end(), distill.begin(), distill.end());
  auto c0 = StartClient(port, each, dir, "client0.log");
  auto c1 = StartClient(port, last, dir, "client1.log");
  ASSERT_EQ(server->Wait(kRunTimeout), 0) << server->Log();
  ASSERT_EQ(c0->Wait(absl::Seconds(120)), 0) << c0->Log();
  ASSERT_EQ(c1->Wait(absl::Seconds(120)), 0) << c1->Log();

  // Each-round client: its last export is of the model it trained from in round 2 (version 1);
  // round 2's metrics carry the local accuracy of its round-1 student.
  const google::protobuf::Struct m0 = ReadJson(dir + "/each/manifest.json");
  EXPECT_EQ(NestedNumber(m0, "teacher", "round"), 1) << ReadFileOrEmpty(dir + "/each/manifest.json");
  // (Accuracies are only checked to be reported: a 1-epoch student on 400 images is near chance;
  // students/distill_test and bench/student_fmnist check what distillation reaches.)
  const double acc0 = NestedNumber(m0, "accuracy", "student_int8_local");
  EXPECT_GE(acc0, 0.0);
  EXPECT_LE(acc0, 1.0);
  auto metrics = ReadJsonLines(dir + "/run/metrics.jsonl");
  ASSERT_EQ(metrics.size(), 2u);
  EXPECT_EQ(NumberField(metrics[0], "student_local_accuracy"), -1);  // no export before round 1
  EXPECT_GE(NumberField(metrics[1], "student_local_accuracy"), 0.0);
  EXPECT_LE(NumberField(metrics[1], "student_local_accuracy"), 1.0);

  // Final-only client: exactly one export, of the final model (version 2).
  const google::protobuf::Struct m1 = ReadJson(dir + "/final/manifest.json");
  EXPECT_EQ(NestedNumber(m1, "teacher", "round"), 2) << ReadFileOrEmpty(dir + "/final/manifest.json");
  EXPECT_GE(NestedNumber(m1, "accuracy", "student_int8_local"), 0.0);
  EXPECT_GT(FileSize(dir + "/final/edgefl_student.h"), 0);
  EXPECT_NE(c1->Log().find("distilling the final global model (version 2)"), std::string::npos)
      << c1->Log();
  EXPECT_NE(c1->Log().find("final model: exported student_tiny"), std::string::npos) << c1->Log();
  EXPECT_EQ(c1->Log().find("round 1: exported"), std::string::npos) << c1->Log();
  EXPECT_EQ(c1->Log().find("round 2: exported"), std::string::npos) << c1->Log();
  EXPECT_NE(c0->Log().find("round 2: exported student_tiny"), std::string::npos) << c0->Log();
}

}  // namespace
}  // namespace edgefl::testing
