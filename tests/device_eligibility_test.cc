// End-to-end: server-side eligibility (ExperimentConfig.eligibility) and device-side declines
// (fl-client --min_battery_percent against a fake sysfs tree), with real fl-server and fl-client
// processes on 127.0.0.1.
#include <sys/stat.h>

#include <algorithm>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "google/protobuf/struct.pb.h"
#include "gtest/gtest.h"
#include "tests/e2e_util.h"

namespace edgefl::testing {
namespace {

void WriteFile(const std::string& dir, const std::string& rel, const std::string& text) {
  for (const auto& part : {std::string("sys"), std::string("sys/class"),
                           std::string("sys/class/power_supply"),
                           std::string("sys/class/power_supply/BAT0")}) {
    mkdir((dir + "/" + part).c_str(), 0755);
  }
  std::ofstream(dir + "/" + rel) << text;
}

std::vector<std::string> ClientArgs(int index, int partitions) {
  return {"--partition=iid", absl::StrCat("--num_partitions=", partitions),
          absl::StrCat("--client_index=", index), "--seed=1", "--max_retry_seconds=60"};
}

TEST(DeviceEligibility, IneligibleDevicesAreNotSelectedAndDeclinesAreCounted) {
  const std::string dir = MakeTempDir("edgefl-elig");
  // A board on battery at 10%.
  const std::string board = dir + "/board";
  mkdir(board.c_str(), 0755);
  WriteFile(board, "sys/class/power_supply/BAT0/type", "Battery\n");
  WriteFile(board, "sys/class/power_supply/BAT0/capacity", "10\n");
  WriteFile(board, "sys/class/power_supply/BAT0/status", "Discharging\n");

  int port = 0;
  auto server = StartServer({"--model=small_cnn", "--rounds=2", "--min_clients=2",
                             "--eval_samples=200", "--deadline=120", "--out=" + dir + "/run",
                             "--set=eligibility.min_samples=200"},
                            dir, "server.log", &port);
  ASSERT_GT(port, 0) << server->Log();
  // 30 samples: below eligibility.min_samples, never selected. It joins first: the server starts
  // its rounds as soon as two eligible devices joined, and a device that came later (a slow
  // start on a loaded machine) would find the run over.
  auto small = StartClient(port, ClientArgs(1, 2000), dir, "small.log");
  ASSERT_TRUE(WaitFor(
      [&] {
        return server->Log().find("is not eligible for selection: 30 samples < min_samples 200") !=
               std::string::npos;
      },
      absl::Seconds(60)))
      << server->Log() << small->Log();
  // 300 samples: eligible, trains.
  auto a = StartClient(port, ClientArgs(0, 200), dir, "a.log");
  // 300 samples but 10% battery with --min_battery_percent 30: selected, declines each round.
  std::vector<std::string> low = ClientArgs(2, 200);
  low.push_back("--device_state_root=" + board);
  low.push_back("--min_battery_percent=30");
  auto c = StartClient(port, low, dir, "low.log");

  ASSERT_EQ(server->Wait(absl::Seconds(300)), 0) << server->Log();
  EXPECT_EQ(a->Wait(absl::Seconds(60)), 0) << a->Log();
  EXPECT_EQ(small->Wait(absl::Seconds(60)), 0) << small->Log();
  EXPECT_EQ(c->Wait(absl::Seconds(60)), 0) << c->Log();

  EXPECT_NE(server->Log().find("is not eligible for selection: 30 samples < min_samples 200"),
            std::string::npos)
      << server->Log();
  EXPECT_EQ(small->Log().find("training on"), std::string::npos) << small->Log();
  EXPECT_NE(c->Log().find("declining the task: battery 10% < min_battery_percent 30 [battery_low]"),
            std::string::npos)
      << c->Log();
  EXPECT_EQ(c->Log().find("training on"), std::string::npos) << c->Log();

  auto metrics = ReadJsonLines(dir + "/run/metrics.jsonl");
  ASSERT_EQ(metrics.size(), 2u) << ReadFileOrEmpty(dir + "/run/metrics.jsonl");
  for (int r = 0; r < 2; ++r) {
    EXPECT_EQ(NumberField(metrics[r], "clients_selected"), 2);
    EXPECT_EQ(NumberField(metrics[r], "clients_reported"), 1);
    EXPECT_EQ(NumberField(metrics[r], "clients_declined"), 1);
    const auto& declined = metrics[r].fields().at("declined").struct_value();
    ASSERT_TRUE(declined.fields().contains("battery_low")) << r;
    EXPECT_EQ(declined.fields().at("battery_low").number_value(), 1);
    // The round closed as soon as the decline arrived, not at the 120 s deadline.
    EXPECT_LT(NumberField(metrics[r], "round_seconds"), 60);
  }
}

TEST(DeviceEligibility, TheUploadRateCapSlowsTheReportToTheCap) {
  const std::string dir = MakeTempDir("edgefl-kbps");
  int port = 0;
  auto server = StartServer({"--model=small_cnn", "--rounds=2", "--min_clients=1",
                             "--eval_samples=200", "--deadline=120", "--out=" + dir + "/run"},
                            dir, "server.log", &port);
  ASSERT_GT(port, 0) << server->Log();
  std::vector<std::string> args = ClientArgs(0, 200);
  args.push_back("--max_upload_kbps=400");
  auto c = StartClient(port, args, dir, "client.log");
  ASSERT_EQ(server->Wait(absl::Seconds(300)), 0) << server->Log();
  EXPECT_EQ(c->Wait(absl::Seconds(60)), 0) << c->Log();
  auto metrics = ReadJsonLines(dir + "/run/metrics.jsonl");
  ASSERT_EQ(metrics.size(), 2u) << ReadFileOrEmpty(dir + "/run/metrics.jsonl");
  // Round 2 (no joining to wait for) lasts at least its upload at 400 kbit/s: uncapped, the same
  // round takes ~0.2 s here.
  const double bytes_up = NumberField(metrics[1], "bytes_up");
  ASSERT_GT(bytes_up, 100000);
  EXPECT_GE(NumberField(metrics[1], "round_seconds"), 0.9 * bytes_up * 8 / 400000)
      << ReadFileOrEmpty(dir + "/run/metrics.jsonl");
}

TEST(DeviceEligibility, BudgetsThatDoNotParseAreOneLineAndExitCode2) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"--train_window=22-06", "--train_window must be HH:MM-HH:MM"},
      {"--train_window=10:00-10:00", "is empty"},
      {"--max_upload_kbps=fast", "max_upload_kbps"},
      {"--max_upload_kbps=-5", "--max_upload_kbps must be >= 0"},
      {"--max_rss_mb=-1", "--max_rss_mb must be >= 0"},
      {"--nice=40", "--nice must be in 0..19"},
      {"--min_battery_percent=150", "--min_battery_percent must be in 0..100"},
  };
  for (const auto& [flag, want] : cases) {
    std::string out;
    const int code = RunProgram({BinDir() + "/fl-client", "--insecure", "--server=127.0.0.1:1",
                                 "--num_partitions=200", "--client_index=0", flag},
                                &out);
    EXPECT_EQ(code, 2) << flag << ": " << out;
    // One line that says what is wrong (a value the flag parser itself refuses adds "Try --help.").
    const std::string first = out.substr(0, out.find('\n'));
    EXPECT_NE(first.find(want), std::string::npos) << flag << ": " << out;
    EXPECT_LE(std::count(out.begin(), out.end(), '\n'), 2) << flag << ": " << out;
  }
}

}  // namespace
}  // namespace edgefl::testing
