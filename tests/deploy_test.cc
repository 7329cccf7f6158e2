// End-to-end checks of what a Kubernetes deployment relies on, with real fl-server / fl-client
// processes: the plaintext health port that kubelet's native gRPC probes use beside the TLS
// service port; a finished run that stays up (--after_finish=serve) instead of exiting into a
// Deployment's restart loop, also when a restarted pod resumes it; clients that wait for the next
// run (--after_finish=wait); and a run volume that fills up (a size-limited tmpfs).
#include <arpa/inet.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <dirent.h>

#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "server/run_store.h"
#include "tests/e2e_util.h"

namespace edgefl::testing {
namespace {

// grpc.health.v1.Health/Check for the whole server (service ""), as kubelet sends it: returns
// the gRPC status and the serialized HealthCheckResponse.
grpc::Status HealthCheck(const std::shared_ptr<grpc::Channel>& channel, std::string* response) {
  grpc::GenericStub stub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  grpc::CompletionQueue cq;
  grpc::ByteBuffer request;  // HealthCheckRequest{service: ""} serializes to no bytes
  grpc::Slice empty;
  request = grpc::ByteBuffer(&empty, 1);
  auto call = stub.PrepareUnaryCall(&ctx, "/grpc.health.v1.Health/Check", request, &cq);
  call->StartCall();
  grpc::ByteBuffer reply;
  grpc::Status status;
  call->Finish(&reply, &status, reinterpret_cast<void*>(1));
  void* tag = nullptr;
  bool ok = false;
  if (!cq.Next(&tag, &ok) || !ok) return grpc::Status(grpc::StatusCode::UNKNOWN, "queue");
  std::vector<grpc::Slice> slices;
  if (status.ok() && reply.Dump(&slices).ok()) {
    for (const grpc::Slice& s : slices) response->append(reinterpret_cast<const char*>(s.begin()), s.size());
  }
  return status;
}

TEST(Deploy, PlaintextHealthPortServesBesideTheTlsPort) {
  const std::string dir = MakeTempDir("edgefl-health");
  std::string log;
  ASSERT_TRUE(MakeDevCerts(dir + "/certs", 1, &log)) << log;
  const int health_port = FreePort();
  ASSERT_GT(health_port, 0);
  int port = 0;
  auto server = StartServer(
      {"--model=mlp", "--rounds=1", "--min_clients=1", "--out=" + dir + "/run",
       "--tls_cert=" + dir + "/certs/server.pem", "--tls_key=" + dir + "/certs/server.key",
       absl::StrCat("--health_listen=127.0.0.1:", health_port)},
      dir, "server.log", &port);
  ASSERT_GT(port, 0) << server->Log();
  std::string response;
  grpc::Status s = HealthCheck(
      grpc::CreateChannel(absl::StrCat("127.0.0.1:", health_port), grpc::InsecureChannelCredentials()),
      &response);
  ASSERT_TRUE(s.ok()) << s.error_message() << "\n" << server->Log();
  EXPECT_EQ(response, std::string("\x08\x01", 2));  // status: SERVING
  // The service port stays TLS-only: a plaintext probe there cannot pass.
  response.clear();
  s = HealthCheck(grpc::CreateChannel(absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials()),
                  &response);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(server->Log().find("health service"), std::string::npos) << server->Log();
  server->Signal(SIGTERM);
  EXPECT_NE(server->Wait(absl::Seconds(30)), -1) << server->Log();  // stops on SIGTERM
}

TEST(Deploy, HealthListenThatCannotBindIsAUsageError) {
  const std::string dir = MakeTempDir("edgefl-health-bad");
  std::string out;
  const int rc = RunProgram({BinDir() + "/fl-server", "--insecure", "--model=mlp",
                             "--listen=127.0.0.1:0", "--out=" + dir + "/run",
                             "--health_listen=256.0.0.1:1"},
                            &out);
  EXPECT_EQ(rc, 2) << out;
  EXPECT_NE(out.find("fl-server: --health_listen: could not listen on 256.0.0.1:1"),
            std::string::npos)
      << out;
}

constexpr char kServing[] = "\x08\x01";  // HealthCheckResponse{status: SERVING}

bool IsServing(int health_port) {
  std::string response;
  grpc::Status s = HealthCheck(grpc::CreateChannel(absl::StrCat("127.0.0.1:", health_port),
                                                   grpc::InsecureChannelCredentials()),
                               &response);
  return s.ok() && response == std::string(kServing, 2);
}

std::vector<std::string> ClientArgs(const std::string& dir, int index) {
  return {"--partition=iid", "--num_partitions=20", absl::StrCat("--client_index=", index),
          "--seed=1", "--max_retry_seconds=120",
          absl::StrCat("--state_dir=", dir, "/state-", index)};
}

int MetricsLines(const std::string& run) {
  return static_cast<int>(ReadJsonLines(run + "/metrics.jsonl").size());
}

std::string Rounds(const std::string& run) {
  std::string out;
  for (const auto& line : ReadJsonLines(run + "/metrics.jsonl")) {
    absl::StrAppend(&out, out.empty() ? "" : " ", static_cast<int>(NumberField(line, "round")));
  }
  return out;
}

// A client with the default --after_finish=exit against a finished run: exits 0 at once, having
// taken part in no round.
void ExpectFinishedAnswer(int port, const std::string& dir, const std::string& name) {
  auto late = StartClient(port, ClientArgs(dir, 9), dir, name + ".log");
  ASSERT_EQ(late->Wait(absl::Seconds(60)), 0) << late->Log();
  EXPECT_NE(late->Log().find("the federation is finished; took part in 0 rounds"),
            std::string::npos)
      << late->Log();
}

TEST(Deploy, AfterFinishServeKeepsTheFinishedRunUpAlsoWhenResumed) {
  const std::string dir = MakeTempDir("edgefl-after-finish");
  const std::string run = dir + "/run";
  const int health_port = FreePort();
  const int metrics_port = FreePort();
  ASSERT_GT(health_port, 0);
  ASSERT_GT(metrics_port, 0);
  // The arguments of the Deployment's pod: the same for the first start and every restart.
  const std::vector<std::string> pod_args = {
      "--model=mlp", "--rounds=2", "--min_clients=1", "--eval_samples=500", "--out=" + run,
      "--resume_if_present", "--after_finish=serve", "--poll_seconds=2",
      absl::StrCat("--health_listen=127.0.0.1:", health_port),
      absl::StrCat("--metrics_listen=127.0.0.1:", metrics_port)};
  int port = 0;
  auto server = StartServer(pod_args, dir, "server1.log", &port);
  ASSERT_GT(port, 0) << server->Log();
  auto client = StartClient(port, ClientArgs(dir, 0), dir, "client0.log");
  ASSERT_EQ(client->Wait(absl::Seconds(180)), 0) << client->Log() << server->Log();
  EXPECT_NE(client->Log().find("took part in 2 rounds"), std::string::npos) << client->Log();
  ASSERT_TRUE(WaitFor([&] { return server->Log().find("until SIGTERM") != std::string::npos; },
                      absl::Seconds(60)))
      << server->Log();
  EXPECT_NE(server->Log().find("2 rounds done"), std::string::npos) << server->Log();
  // Finished, and still up: health SERVING, the final metrics, `finished` for any client.
  EXPECT_TRUE(server->running()) << server->Log();
  EXPECT_TRUE(IsServing(health_port)) << server->Log();
  EXPECT_NE(ScrapeMetrics(metrics_port).find("edgefl_server_round 2"), std::string::npos)
      << ScrapeMetrics(metrics_port);
  ExpectFinishedAnswer(port, dir, "late1");
  EXPECT_TRUE(server->running()) << server->Log();
  struct stat report;
  EXPECT_EQ(stat((run + "/report.html").c_str(), &report), 0);
  const std::string files_before = ReadFileOrEmpty(run + "/checkpoint.pb") + "|" +
                                   ReadFileOrEmpty(run + "/metrics.jsonl") + "|" +
                                   ReadFileOrEmpty(run + "/model_final.f32");
  // SIGTERM (the pod deleted) ends a finished run's server with 0.
  server->Signal(SIGTERM);
  ASSERT_EQ(server->Wait(absl::Seconds(30)), 0) << server->Log();

  // The pod restarted (a node drain, a rollout): the same arguments resume the finished run and
  // serve it again, without training anything.
  auto restarted = StartServer(pod_args, dir, "server2.log", &port);
  ASSERT_GT(port, 0) << restarted->Log();
  ASSERT_TRUE(WaitFor([&] { return restarted->Log().find("until SIGTERM") != std::string::npos; },
                      absl::Seconds(60)))
      << restarted->Log();
  EXPECT_NE(restarted->Log().find("holds a checkpoint, resuming it"), std::string::npos)
      << restarted->Log();
  EXPECT_TRUE(IsServing(health_port)) << restarted->Log();
  EXPECT_NE(ScrapeMetrics(metrics_port).find("edgefl_server_round 2"), std::string::npos)
      << ScrapeMetrics(metrics_port);
  ExpectFinishedAnswer(port, dir, "late2");
  EXPECT_TRUE(restarted->running()) << restarted->Log();
  EXPECT_EQ(restarted->Log().find("attempt 1: selected"), std::string::npos) << restarted->Log();
  EXPECT_EQ(ReadFileOrEmpty(run + "/checkpoint.pb") + "|" + ReadFileOrEmpty(run + "/metrics.jsonl") +
                "|" + ReadFileOrEmpty(run + "/model_final.f32"),
            files_before);
  EXPECT_EQ(Rounds(run), "1 2");
  restarted->Signal(SIGTERM);
  ASSERT_EQ(restarted->Wait(absl::Seconds(30)), 0) << restarted->Log();
}

TEST(Deploy, AfterFinishServeIsAFlagChoice) {
  const std::string dir = MakeTempDir("edgefl-after-finish-bad");
  std::string out;
  EXPECT_EQ(RunProgram({BinDir() + "/fl-server", "--insecure", "--model=mlp",
                        "--listen=127.0.0.1:0", "--out=" + dir + "/run", "--after_finish=stay"},
                       &out),
            2)
      << out;
  EXPECT_NE(out.find("fl-server: --after_finish must be exit or serve, not 'stay'"),
            std::string::npos)
      << out;
  EXPECT_EQ(RunProgram({BinDir() + "/fl-client", "--insecure", "--after_finish=loop"}, &out), 2)
      << out;
  EXPECT_NE(out.find("fl-client: --after_finish must be exit or wait, not 'loop'"),
            std::string::npos)
      << out;
}

TEST(Deploy, AfterFinishWaitClientTakesPartInTheNextRun) {
  const std::string dir = MakeTempDir("edgefl-client-wait");
  int port = 0;
  auto first = StartServer({"--model=mlp", "--rounds=1", "--min_clients=1", "--eval_samples=200",
                            "--out=" + dir + "/run1", "--after_finish=serve", "--poll_seconds=2"},
                           dir, "server1.log", &port);
  ASSERT_GT(port, 0) << first->Log();
  auto client = StartClient(port, [&] {
    std::vector<std::string> args = ClientArgs(dir, 0);
    args.insert(args.end(), {"--after_finish=wait", "--after_finish_poll_seconds=1"});
    return args;
  }(), dir, "client.log");
  // The run is over: the client stays, checking in every second (each answered `finished`).
  ASSERT_TRUE(WaitFor([&] { return client->Log().find("checking for a new run") != std::string::npos; },
                      absl::Seconds(180)))
      << client->Log() << first->Log();
  // The server answers `finished` before it writes its report and logs that it stays: wait for
  // the line (under load it came after the client's, and an immediate check failed).
  EXPECT_TRUE(WaitFor([&] { return first->Log().find("until SIGTERM") != std::string::npos; },
                      absl::Seconds(60)))
      << first->Log();
  // It does not exit over the next seconds (it checks in, is told `finished`, waits, again).
  EXPECT_FALSE(WaitFor([&] { return !client->running(); }, absl::Seconds(3))) << client->Log();
  EXPECT_EQ(client->Log().find("federation is finished;"), std::string::npos) << client->Log();
  // A new experiment: the server pod is replaced (same address) by one with a fresh run.
  first->Signal(SIGTERM);
  ASSERT_EQ(first->Wait(absl::Seconds(30)), 0) << first->Log();
  auto second = StartServer({"--model=mlp", "--rounds=2", "--min_clients=1", "--eval_samples=200",
                             "--out=" + dir + "/run2"},
                            dir, "server2.log", &port);
  ASSERT_GT(port, 0) << second->Log();
  ASSERT_EQ(second->Wait(absl::Seconds(180)), 0) << second->Log() << client->Log();
  EXPECT_EQ(Rounds(dir + "/run2"), "1 2");
  for (const auto& line : ReadJsonLines(dir + "/run2/metrics.jsonl")) {
    EXPECT_EQ(NumberField(line, "clients_reported"), 1);
  }
  EXPECT_NE(client->Log().find("a new run started (round 1"), std::string::npos) << client->Log();
  EXPECT_TRUE(client->running()) << client->Log();  // and waits for the run after that
  client->Signal(SIGTERM);
  EXPECT_NE(client->Wait(absl::Seconds(30)), -1);
}

// The run folder on a volume that fills up: the next checkpoint cannot be written. The server
// says so in one line naming the file and "No space left on device", exits 1, and leaves the last
// good checkpoint and metrics.jsonl byte for byte as they were (no temp file behind); once space
// is freed, the same command resumes the run and finishes it, no round lost or doubled.
TEST(Deploy, FullRunVolumeStopsTheRunAndKeepsTheLastCheckpoint) {
  if (geteuid() != 0) {
    GTEST_SKIP() << "mounting a size-limited tmpfs needs root; this test runs as uid "
                 << geteuid();
  }
  const std::string dir = MakeTempDir("edgefl-full-volume");
  const std::string volume = dir + "/volume";
  ASSERT_EQ(mkdir(volume.c_str(), 0755), 0);
  if (mount("tmpfs", volume.c_str(), "tmpfs", MS_NOSUID | MS_NODEV, "size=8m") != 0) {
    GTEST_SKIP() << "cannot mount a tmpfs here: " << std::strerror(errno);
  }
  struct Unmount {
    std::string path;
    ~Unmount() { umount2(path.c_str(), MNT_DETACH); }
  } unmount{volume};
  const std::string run = volume + "/run";
  const std::vector<std::string> server_args = {
      "--model=mlp", "--rounds=6", "--min_clients=1", "--eval_samples=200", "--out=" + run,
      "--resume_if_present", "--poll_seconds=2"};
  int port = 0;
  auto server = StartServer(server_args, dir, "server1.log", &port);
  ASSERT_GT(port, 0) << server->Log();
  auto client = StartClient(port, ClientArgs(dir, 0), dir, "client.log");
  ASSERT_TRUE(WaitFor([&] { return MetricsLines(run) >= 2; }, absl::Seconds(180)))
      << server->Log() << client->Log();
  // Hold the federation between rounds, with every closed round's metrics line written, so that
  // the next write to the volume is a checkpoint. The client stopped, no round can close but one
  // whose update was already in; the server stopped, the test reads a state that cannot move.
  client->Signal(SIGSTOP);
  const server::RunStore store = *server::RunStore::Open(run);
  auto stopped = [&](pid_t pid) {  // every thread of `pid` in state T (stopped)
    DIR* d = opendir(absl::StrCat("/proc/", pid, "/task").c_str());
    if (d == nullptr) return false;
    bool all = true;
    while (dirent* e = readdir(d)) {
      if (e->d_name[0] == '.') continue;
      const std::string stat =
          ReadFileOrEmpty(absl::StrCat("/proc/", pid, "/task/", e->d_name, "/stat"));
      const size_t paren = stat.rfind(')');
      if (paren == std::string::npos || paren + 2 >= stat.size() || stat[paren + 2] != 'T') {
        all = false;
      }
    }
    closedir(d);
    return all;
  };
  int settled = 0;
  for (int i = 0; i < 50 && settled == 0; ++i) {
    server->Signal(SIGSTOP);
    ASSERT_TRUE(WaitFor([&] { return stopped(server->pid()); }, absl::Seconds(10)));
    absl::StatusOr<proto::Checkpoint> ckpt = store.ReadCheckpoint();
    ASSERT_TRUE(ckpt.ok()) << ckpt.status();
    if (ckpt->round() == MetricsLines(run)) {
      settled = static_cast<int>(ckpt->round());
      break;
    }
    server->Signal(SIGCONT);  // its evaluation lags: let it write the line
    WaitFor([&] { return MetricsLines(run) >= ckpt->round(); }, absl::Seconds(10));
  }
  ASSERT_GE(settled, 2) << server->Log();
  // Fill the volume to the last byte.
  {
    const std::string filler = volume + "/filler";
    int fd = open(filler.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ASSERT_GE(fd, 0);
    const std::string block(1 << 16, 'f');
    int err = 0;
    for (int i = 0; i < 100000 && err == 0; ++i) {  // bounded: 8 MiB fill in 64 KiB or smaller writes
      const ssize_t n = write(fd, block.data(), block.size());
      if (n < 0) err = errno;
    }
    close(fd);
    ASSERT_EQ(err, ENOSPC);
  }
  const std::string checkpoint_before = ReadFileOrEmpty(run + "/checkpoint.pb");
  const std::string metrics_before = ReadFileOrEmpty(run + "/metrics.jsonl");
  ASSERT_FALSE(checkpoint_before.empty());
  server->Signal(SIGCONT);
  client->Signal(SIGCONT);
  ASSERT_EQ(server->Wait(absl::Seconds(120)), 1) << server->Log();
  // One line says what happened: the file and the reason.
  std::string stop_line;
  for (absl::string_view line : absl::StrSplit(server->Log(), '\n')) {
    if (absl::StrContains(line, "run stopped")) stop_line = std::string(line);
  }
  EXPECT_NE(stop_line.find("No space left on device"), std::string::npos) << server->Log();
  EXPECT_NE(stop_line.find(run + "/checkpoint.pb"), std::string::npos) << server->Log();
  EXPECT_NE(server->Log().find(absl::StrCat("could not write the checkpoint of round ", settled + 1)),
            std::string::npos)
      << server->Log();
  EXPECT_EQ(ReadFileOrEmpty(run + "/checkpoint.pb"), checkpoint_before);
  EXPECT_EQ(ReadFileOrEmpty(run + "/metrics.jsonl"), metrics_before);
  absl::StatusOr<proto::Checkpoint> kept = store.ReadCheckpoint();  // parses, digest matches
  ASSERT_TRUE(kept.ok()) << kept.status();
  EXPECT_EQ(kept->round(), settled);
  std::vector<std::string> files;
  if (DIR* d = opendir(run.c_str())) {
    while (dirent* e = readdir(d)) {
      if (std::strstr(e->d_name, ".tmp") != nullptr) files.push_back(e->d_name);
    }
    closedir(d);
  }
  EXPECT_TRUE(files.empty()) << files[0];

  // The pod restarted on the still-full volume: it fails at start-up, naming the file, and
  // changes nothing.
  {
    std::vector<std::string> argv = {BinDir() + "/fl-server", "--insecure",
                                     "--listen=127.0.0.1:0"};
    argv.insert(argv.end(), server_args.begin(), server_args.end());
    std::string out;
    EXPECT_EQ(RunProgram(argv, &out), 2) << out;
    EXPECT_NE(out.find("No space left on device"), std::string::npos) << out;
    EXPECT_EQ(ReadFileOrEmpty(run + "/checkpoint.pb"), checkpoint_before);
    EXPECT_EQ(ReadFileOrEmpty(run + "/metrics.jsonl"), metrics_before);
  }

  // Space freed (the volume expanded): the same command resumes from that checkpoint.
  ASSERT_EQ(unlink((volume + "/filler").c_str()), 0);
  auto resumed = StartServer(server_args, dir, "server2.log", &port);
  ASSERT_GT(port, 0) << resumed->Log();
  ASSERT_EQ(resumed->Wait(absl::Seconds(180)), 0) << resumed->Log() << client->Log();
  EXPECT_NE(resumed->Log().find(absl::StrCat("after round ", settled, " of 6")), std::string::npos)
      << resumed->Log();
  EXPECT_EQ(Rounds(run), "1 2 3 4 5 6");
  EXPECT_EQ(client->Wait(absl::Seconds(60)), 0) << client->Log();
}

}  // namespace
}  // namespace edgefl::testing
