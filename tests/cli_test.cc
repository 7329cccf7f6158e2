// The binaries' command-line contract: --help explains every flag; bad input is one line and
// exit code 2.
#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "common/file_util.h"
#include "gtest/gtest.h"
#include "tests/e2e_util.h"

namespace edgefl::testing {
namespace {

struct Result {
  int code;
  std::string output;
};

// Runs a binary; plaintext (--insecure) unless `args` choose the transport or a subcommand.
Result RunTool(const std::string& binary, const std::vector<std::string>& args) {
  const std::string dir = MakeTempDir("edgefl-cli");
  std::vector<std::string> argv = {BinDir() + "/" + binary};
  if ((args.empty() || args[0] != "token") &&
      !HasFlag(args, {"--tls_", "--ca_cert", "--client_ca", "--insecure", "--noinsecure"})) {
    argv.push_back("--insecure");
  }
  argv.insert(argv.end(), args.begin(), args.end());
  Subprocess p(argv, dir + "/out.log");
  int code = p.Wait(absl::Seconds(60));
  return {code, p.Log()};
}

int NonEmptyLines(const std::string& s) {
  int n = 0;
  for (absl::string_view line : absl::StrSplit(s, '\n', absl::SkipEmpty())) {
    if (!line.empty()) ++n;
  }
  return n;
}

TEST(Cli, HelpListsFlagsWithDefaults) {
  Result server = RunTool("fl-server", {"--help"});
  EXPECT_EQ(server.code, 0);
  for (const char* flag : {"--rounds", "--config", "--set", "--resume", "--listen", "--model"}) {
    EXPECT_NE(server.output.find(flag), std::string::npos) << flag << "\n" << server.output;
  }
  EXPECT_NE(server.output.find("0.0.0.0:50051"), std::string::npos);
  Result client = RunTool("fl-client", {"--help"});
  EXPECT_EQ(client.code, 0);
  for (const char* flag : {"--server", "--partition_file", "--client_index", "--threads"}) {
    EXPECT_NE(client.output.find(flag), std::string::npos) << flag << "\n" << client.output;
  }
}

TEST(Cli, UnknownFlagIsUsageError) {
  Result r = RunTool("fl-server", {"--no-such-flag=1"});
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.output.find("no-such-flag"), std::string::npos) << r.output;
}

TEST(Cli, UnknownModelIsOneLineError) {
  const std::string dir = MakeTempDir("edgefl-cli");
  Result r = RunTool("fl-server", {"--model=resnet9000", "--out=" + dir});
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.output.find("resnet9000"), std::string::npos) << r.output;
  EXPECT_EQ(NonEmptyLines(r.output), 1) << r.output;
}

TEST(Cli, ConfigWithUnknownKeyNamesIt) {
  const std::string dir = MakeTempDir("edgefl-cli");
  ASSERT_TRUE(WriteFileAtomically(dir + "/bad.json", R"({"rounds": 3, "roundz": 4})").ok());
  Result r = RunTool("fl-server", {"--config=" + dir + "/bad.json", "--out=" + dir + "/run"});
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.output.find("roundz"), std::string::npos) << r.output;
  EXPECT_EQ(NonEmptyLines(r.output), 1) << r.output;
}

TEST(Cli, ConfigWithWrongTypeIsError) {
  const std::string dir = MakeTempDir("edgefl-cli");
  ASSERT_TRUE(WriteFileAtomically(dir + "/bad.json", R"({"rounds": "many"})").ok());
  Result r = RunTool("fl-server", {"--config=" + dir + "/bad.json", "--out=" + dir + "/run"});
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.output.find("rounds"), std::string::npos) << r.output;
}

TEST(Cli, BadOverrideIsError) {
  const std::string dir = MakeTempDir("edgefl-cli");
  Result r = RunTool("fl-server", {"--set=client.lr=fast", "--out=" + dir});
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.output.find("client.lr"), std::string::npos) << r.output;
  r = RunTool("fl-server", {"--set=client.lr=-1", "--out=" + dir});
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.output.find("lr"), std::string::npos) << r.output;
}

TEST(Cli, MissingDataIsOneLineError) {
  Result r = RunTool("fl-client", {"--data_dir=/nonexistent/fmnist", "--server=127.0.0.1:1"});
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.output.find("/nonexistent/fmnist"), std::string::npos) << r.output;
  EXPECT_EQ(NonEmptyLines(r.output), 1) << r.output;
  const std::string dir = MakeTempDir("edgefl-cli");
  r = RunTool("fl-server", {"--data_dir=/nonexistent/fmnist", "--out=" + dir});
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.output.find("/nonexistent/fmnist"), std::string::npos) << r.output;
}

TEST(Cli, BadPartitionIsError) {
  Result r = RunTool("fl-client", {"--partition=dirichlet:-1", "--num_partitions=4"});
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.output.find("dirichlet"), std::string::npos) << r.output;
  r = RunTool("fl-client", {"--partition_file=/nonexistent/part.txt"});
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.output.find("/nonexistent/part.txt"), std::string::npos) << r.output;
}

TEST(Cli, DistillFlagsAreCheckedAtStartup) {
  // Wrong --distill_* settings fail before the client joins (the server address is never used).
  Result r = RunTool("fl-client", {"--distill_final_only", "--server=127.0.0.1:1"});
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.output.find("--distill_to"), std::string::npos) << r.output;
  EXPECT_EQ(NonEmptyLines(r.output), 1) << r.output;
  r = RunTool("fl-client", {"--distill_to=/proc/edgefl-student", "--server=127.0.0.1:1"});
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.output.find("/proc"), std::string::npos) << r.output;
  EXPECT_EQ(NonEmptyLines(r.output), 1) << r.output;
  const std::string dir = MakeTempDir("edgefl-cli");
  r = RunTool("fl-client", {"--distill_to=" + dir + "/s", "--distill_student=student_huge",
                            "--server=127.0.0.1:1"});
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.output.find("student_huge"), std::string::npos) << r.output;
  EXPECT_EQ(NonEmptyLines(r.output), 1) << r.output;
}

TEST(Cli, NegativeEvaluationBacklogIsOneLineErrorAndWritesNothing) {
  const std::string dir = MakeTempDir("edgefl-cli");
  Result r = RunTool("fl-server", {"--max_evaluation_backlog=-1", "--out=" + dir + "/run"});
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.output.find("--max_evaluation_backlog"), std::string::npos) << r.output;
  EXPECT_EQ(NonEmptyLines(r.output), 1) << r.output;
  EXPECT_FALSE(std::filesystem::exists(dir + "/run"));
}

TEST(Cli, MinDownloadRateMustBePositive) {
  for (const char* bad : {"0", "-5", "inf", "nan"}) {
    Result r = RunTool("fl-client", {std::string("--min_download_kib_per_second=") + bad,
                                     "--server=127.0.0.1:1"});
    EXPECT_EQ(r.code, 2) << bad;
    EXPECT_NE(r.output.find("--min_download_kib_per_second"), std::string::npos) << r.output;
    EXPECT_EQ(NonEmptyLines(r.output), 1) << r.output;
  }
}

TEST(Cli, UpstreamMinDownloadRateMustBePositive) {
  for (const char* bad : {"0", "-5", "inf", "nan"}) {
    const std::string dir = MakeTempDir("edgefl-cli");
    Result r = RunTool("fl-server",
                       {std::string("--upstream_min_download_kib_per_second=") + bad,
                        "--upstream=127.0.0.1:1", "--upstream_insecure", "--out=" + dir + "/run"});
    EXPECT_EQ(r.code, 2) << bad;
    EXPECT_NE(r.output.find("--upstream_min_download_kib_per_second"), std::string::npos)
        << r.output;
    EXPECT_EQ(NonEmptyLines(r.output), 1) << r.output;
    EXPECT_FALSE(std::filesystem::exists(dir + "/run")) << bad;
  }
}

TEST(Cli, ResumeWithoutCheckpointIsError) {
  const std::string dir = MakeTempDir("edgefl-cli");
  Result r = RunTool("fl-server", {"--resume", "--out=" + dir});
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.output.find("resume"), std::string::npos) << r.output;
}

TEST(Cli, LooseKeyAndTokenFilesAreRefused) {
  const std::string dir = MakeTempDir("edgefl-cli");
  std::string log;
  ASSERT_TRUE(MakeDevCerts(dir + "/certs", 1, &log)) << log;
  ASSERT_TRUE(
      WriteFileAtomically(dir + "/loose.key", ReadFileOrEmpty(dir + "/certs/server.key"), 0644)
          .ok());
  Result r = RunTool("fl-server", {"--tls_cert=" + dir + "/certs/server.pem",
                                   "--tls_key=" + dir + "/loose.key", "--out=" + dir + "/run"});
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.output.find("chmod 600"), std::string::npos) << r.output;
  EXPECT_EQ(NonEmptyLines(r.output), 1) << r.output;
  EXPECT_EQ(r.output.find("PRIVATE KEY"), std::string::npos);  // never the key itself
  ASSERT_TRUE(WriteFileAtomically(dir + "/device.token", "eft1.x.y.z.w\n", 0644).ok());
  r = RunTool("fl-client", {"--token_file=" + dir + "/device.token"});
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.output.find("chmod 600"), std::string::npos) << r.output;
  ASSERT_TRUE(WriteFileAtomically(dir + "/secret", std::string(64, 'a'), 0604).ok());
  r = RunTool("fl-server", {"token", "create", "--secret_file=" + dir + "/secret"});
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.output.find("chmod 600"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find(std::string(64, 'a')), std::string::npos);
}

TEST(Cli, TransportFlagsMustBeConsistent) {
  Result r = RunTool("fl-server", {"--insecure", "--tls_cert=/x.pem"});
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.output.find("--insecure cannot be combined"), std::string::npos) << r.output;
  r = RunTool("fl-server", {"--tls_cert=/nonexistent/server.pem", "--tls_key=/nonexistent/k"});
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.output.find("/nonexistent/server.pem"), std::string::npos) << r.output;
  r = RunTool("fl-client", {"--insecure", "--ca_cert=/x.pem"});
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.output.find("--insecure cannot be combined"), std::string::npos) << r.output;
  r = RunTool("fl-client", {"--ca_cert=/nonexistent/ca.pem"});
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.output.find("/nonexistent/ca.pem"), std::string::npos) << r.output;
}

TEST(Cli, TokenSubcommandErrors) {
  const std::string dir = MakeTempDir("edgefl-cli");
  Result r = RunTool("fl-server", {"token", "create"});
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.output.find("EDGEFL_SERVER_SECRET"), std::string::npos) << r.output;
  r = RunTool("fl-server", {"token", "mint"});
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.output.find("unknown subcommand"), std::string::npos) << r.output;
  r = RunTool("fl-server", {"token", "revoke", "--revoked=" + dir + "/revoked", "nothex"});
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.output.find("not a token id"), std::string::npos) << r.output;
  ASSERT_EQ(RunTool("fl-server", {"token", "new-secret", "--secret_file=" + dir + "/s"}).code, 0);
  r = RunTool("fl-server", {"token", "new-secret", "--secret_file=" + dir + "/s"});
  EXPECT_EQ(r.code, 2);  // never silently replaces a secret
  EXPECT_NE(r.output.find("--force"), std::string::npos) << r.output;
  r = RunTool("fl-server", {"token", "create", "--secret_file=" + dir + "/s", "--ttl=forever"});
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.output.find("--ttl"), std::string::npos) << r.output;
  r = RunTool("fl-server", {"token", "create", "--secret_file=" + dir + "/s", "--count=3",
                            "--uses=2", "--ttl=2h"});
  EXPECT_EQ(r.code, 0) << r.output;
  int tokens = 0;
  for (absl::string_view line : absl::StrSplit(r.output, '\n', absl::SkipEmpty())) {
    if (line.substr(0, 5) == "eft1.") ++tokens;
  }
  EXPECT_EQ(tokens, 3) << r.output;
}

}  // namespace
}  // namespace edgefl::testing
