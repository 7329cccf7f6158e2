// End-to-end on a second architecture: the aarch64 fl-client (cross-built by scripts/build-arm64)
// runs under qemu-aarch64-static with the arm64 sysroot as its library root, in a federation with
// an x86-64 fl-server and an x86-64 fl-client on 127.0.0.1 over mutual TLS. The server must
// aggregate both clients' updates in both rounds. Writes the aarch64 binary's size and its peak
// RSS under emulation to $EDGEFL_ARM64_RESULTS (default <build>/arm64.json; bench/arm64/record
// copies it to bench/results/arm64.json).
#include <sys/stat.h>

#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "tests/e2e_util.h"

namespace edgefl::testing {
namespace {

// small_cnn over 300 images takes ~1 s natively and well under a minute emulated.
constexpr absl::Duration kRunTimeout = absl::Seconds(900);

int64_t FileSize(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 ? st.st_size : -1;
}

std::string Arm64BuildDir() { return EDGEFL_ARM64_BUILD_DIR; }

// The sysroot the aarch64 binaries were built against (scripts/build-arm64 writes its path).
std::string Sysroot() {
  return std::string(absl::StripAsciiWhitespace(
      ReadFileOrEmpty(Arm64BuildDir() + "/sysroot-path")));
}

std::vector<std::string> ClientArgs(int index, const std::string& certs) {
  // Fashion-MNIST's 60,000 training images in 200 iid shards: 300 images per client.
  return {"--partition=iid",
          "--num_partitions=200",
          absl::StrCat("--client_index=", index),
          "--seed=1",
          "--max_retry_seconds=120",
          "--ca_cert=" + certs + "/ca.pem",
          absl::StrCat("--tls_cert=", certs, "/client-", index, ".pem"),
          absl::StrCat("--tls_key=", certs, "/client-", index, ".key")};
}

TEST(Arm64, EmulatedAarch64ClientIsAggregatedWithX86Peers) {
  const std::string sysroot = Sysroot();
  const std::string arm_client = Arm64BuildDir() + "/bin/fl-client";
  ASSERT_FALSE(sysroot.empty()) << "no " << Arm64BuildDir()
                                << "/sysroot-path: the arm64_build fixture did not run";
  ASSERT_GT(FileSize(arm_client), 0) << arm_client;
  // It really is an aarch64 binary.
  std::string file_out;
  ASSERT_EQ(RunProgram({"/usr/bin/od", "-An", "-tx1", "-j18", "-N2", arm_client}, &file_out), 0);
  EXPECT_EQ(std::string(absl::StripAsciiWhitespace(file_out)), "b7 00") << "e_machine of "
                                                                        << arm_client;

  const std::string dir = MakeTempDir("edgefl-arm64");
  const std::string certs = dir + "/certs";
  std::string log;
  ASSERT_TRUE(MakeDevCerts(certs, 2, &log)) << log;
  int port = 0;
  auto server = StartServer({"--model=small_cnn", "--rounds=2", "--min_clients=2",
                             "--eval_samples=500", "--deadline=600", "--out=" + dir + "/run",
                             "--tls_cert=" + certs + "/server.pem",
                             "--tls_key=" + certs + "/server.key", "--client_ca=" + certs + "/ca.pem"},
                            dir, "server.log", &port);
  ASSERT_GT(port, 0) << server->Log();

  auto x86 = StartClient(port, ClientArgs(0, certs), dir, "client-x86.log");
  // The emulated client, its peak RSS measured by GNU time (qemu's own memory included).
  std::vector<std::string> argv = {"/usr/bin/time", "-f", "%M", "-o", dir + "/arm64.maxrss",
                                   "qemu-aarch64-static", "-L", sysroot, arm_client,
                                   absl::StrCat("--server=127.0.0.1:", port), "--progress=never"};
  for (const std::string& a : ClientArgs(1, certs)) argv.push_back(a);
  const absl::Time arm_start = absl::Now();
  Subprocess arm(argv, dir + "/client-arm64.log");

  ASSERT_EQ(server->Wait(kRunTimeout), 0) << server->Log() << "\n--- arm64 client:\n"
                                          << arm.Log();
  EXPECT_EQ(x86->Wait(absl::Seconds(60)), 0) << x86->Log();
  ASSERT_EQ(arm.Wait(absl::Seconds(120)), 0) << arm.Log();
  const double arm_seconds = absl::ToDoubleSeconds(absl::Now() - arm_start);

  // The server saw an aarch64 device under the second certificate's identity...
  EXPECT_NE(server->Log().find("client client-1 joined"), std::string::npos) << server->Log();
  EXPECT_NE(server->Log().find("(aarch64, "), std::string::npos) << server->Log();
  // ...whose report was accepted in both rounds...
  const std::string arm_log = arm.Log();
  EXPECT_NE(arm_log.find("round 1: reported 300 samples"), std::string::npos) << arm_log;
  EXPECT_NE(arm_log.find("round 2: reported 300 samples"), std::string::npos) << arm_log;
  // ...and aggregated with the x86-64 client's: two updates in each round.
  auto metrics = ReadJsonLines(dir + "/run/metrics.jsonl");
  ASSERT_EQ(metrics.size(), 2u) << ReadFileOrEmpty(dir + "/run/metrics.jsonl");
  for (int r = 0; r < 2; ++r) {
    EXPECT_EQ(NumberField(metrics[r], "round"), r + 1);
    EXPECT_EQ(NumberField(metrics[r], "clients_selected"), 2);
    EXPECT_EQ(NumberField(metrics[r], "clients_reported"), 2);
    EXPECT_EQ(NumberField(metrics[r], "clients_failed"), 0);
  }
  // 600 images of training: clearly above the 10% of chance, as on x86-64 alone.
  EXPECT_GT(NumberField(metrics[1], "test_accuracy"), 0.3);

  int64_t maxrss_kb = 0;
  ASSERT_TRUE(absl::SimpleAtoi(
      absl::StripAsciiWhitespace(ReadFileOrEmpty(dir + "/arm64.maxrss")), &maxrss_kb))
      << ReadFileOrEmpty(dir + "/arm64.maxrss");
  EXPECT_GT(maxrss_kb, 0);
  const char* out_env = std::getenv("EDGEFL_ARM64_RESULTS");
  const std::string out = out_env != nullptr ? out_env : std::string(EDGEFL_BINARY_DIR) + "/arm64.json";
  std::ofstream(out) << "{\n  \"what\": \"aarch64 fl-client under qemu-aarch64-static in a 2-round "
                        "small_cnn federation (300 samples per client, mutual TLS)\",\n"
                     << "  \"fl_client_bytes\": " << FileSize(arm_client) << ",\n"
                     << "  \"fl_distill_bytes\": " << FileSize(Arm64BuildDir() + "/bin/fl-distill")
                     << ",\n  \"peak_rss_kib_under_qemu\": " << maxrss_kb << ",\n"
                     << "  \"client_wall_seconds_under_qemu\": " << arm_seconds << ",\n"
                     << "  \"test_accuracy_round2\": " << NumberField(metrics[1], "test_accuracy")
                     << "\n}\n";
}

}  // namespace
}  // namespace edgefl::testing
