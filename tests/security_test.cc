// End-to-end security: real fl-server / fl-client processes on 127.0.0.1 over TLS and mutual
// TLS, enrollment tokens (create / use / expire / revoke / replay, across a server restart),
// per-client authorization and limits, and the plaintext path refused unless both sides ask for
// it. Certificates come from deploy/certs/make-dev-certs.sh.
#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <sys/stat.h>

#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/file_util.h"
#include "common/sha256.h"
#include "gtest/gtest.h"
#include "models/model_spec.h"
#include "tests/e2e_util.h"
#include "tests/rogue_client.h"

namespace edgefl::testing {
namespace {

constexpr absl::Duration kRunTimeout = absl::Seconds(240);
constexpr absl::Duration kRefusalTimeout = absl::Seconds(60);

std::vector<std::string> ClientArgs(int index, std::vector<std::string> extra = {}) {
  std::vector<std::string> args = {"--partition=iid", "--num_partitions=20",
                                   absl::StrCat("--client_index=", index), "--seed=1",
                                   "--max_retry_seconds=60"};
  args.insert(args.end(), extra.begin(), extra.end());
  return args;
}

std::vector<std::string> ServerArgs(const std::string& dir, int rounds, int min_clients,
                                    std::vector<std::string> extra = {}) {
  std::vector<std::string> args = {"--model=small_cnn",
                                   absl::StrCat("--rounds=", rounds),
                                   absl::StrCat("--min_clients=", min_clients),
                                   "--eval_samples=500",
                                   "--deadline=60",
                                   "--out=" + dir + "/run"};
  args.insert(args.end(), extra.begin(), extra.end());
  return args;
}

std::vector<std::string> TlsServer(const std::string& certs) {
  return {"--tls_cert=" + certs + "/server.pem", "--tls_key=" + certs + "/server.key"};
}

std::string Bytes(const std::vector<float>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(float));
}

// The first line of `out` that holds an enrollment token.
std::string TokenLine(const std::string& out) {
  for (absl::string_view line : absl::StrSplit(out, '\n')) {
    if (absl::StartsWith(line, "eft1.")) return std::string(absl::StripAsciiWhitespace(line));
  }
  return "";
}

std::string LastLine(const std::string& log) {
  std::vector<absl::string_view> lines =
      absl::StrSplit(absl::StripTrailingAsciiWhitespace(log), '\n');
  return lines.empty() ? "" : std::string(lines.back());
}

// The channel credentials a TLS RogueClient uses (mutual TLS when `client` names a cert).
std::shared_ptr<grpc::ChannelCredentials> RogueTls(const std::string& certs,
                                                   const std::string& client = "") {
  grpc::SslCredentialsOptions o;
  o.pem_root_certs = ReadFileOrEmpty(certs + "/ca.pem");
  if (!client.empty()) {
    o.pem_cert_chain = ReadFileOrEmpty(certs + "/" + client + ".pem");
    o.pem_private_key = ReadFileOrEmpty(certs + "/" + client + ".key");
  }
  return grpc::SslCredentials(o);
}

double Rejected(const google::protobuf::Struct& metrics, const std::string& reason) {
  auto it = metrics.fields().find("rejected");
  if (it == metrics.fields().end() || !it->second.has_struct_value()) return 0;
  return NumberField(it->second.struct_value(), reason, 0);
}

class Security : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = MakeTempDir("edgefl-sec");
    certs_ = dir_ + "/certs";
    std::string log;
    ASSERT_TRUE(MakeDevCerts(certs_, 2, &log)) << log;
  }
  std::string dir_;
  std::string certs_;
};

TEST_F(Security, TlsFederationLearns) {
  int port = 0;
  auto server = StartServer(ServerArgs(dir_, 2, 3, TlsServer(certs_)), dir_, "server.log", &port);
  ASSERT_GT(port, 0) << server->Log();
  std::vector<std::unique_ptr<Subprocess>> clients;
  for (int i = 0; i < 3; ++i) {
    clients.push_back(StartClient(port, ClientArgs(i, {"--ca_cert=" + certs_ + "/ca.pem"}), dir_,
                                  absl::StrCat("client", i, ".log")));
  }
  ASSERT_EQ(server->Wait(kRunTimeout), 0) << server->Log();
  for (auto& c : clients) EXPECT_EQ(c->Wait(absl::Seconds(60)), 0) << c->Log();
  EXPECT_NE(server->Log().find("serving TLS on"), std::string::npos) << server->Log();
  auto metrics = ReadJsonLines(dir_ + "/run/metrics.jsonl");
  ASSERT_EQ(metrics.size(), 2u);
  EXPECT_EQ(NumberField(metrics[1], "clients_reported"), 3);
  EXPECT_GT(NumberField(metrics[1], "test_accuracy"), 0.5);
}

TEST_F(Security, ClientWithWrongCaOrWrongHostNameIsRefused) {
  std::string log;
  ASSERT_TRUE(MakeDevCerts(dir_ + "/other", 0, &log)) << log;
  int port = 0;
  auto server = StartServer(ServerArgs(dir_, 1, 1, TlsServer(certs_)), dir_, "server.log", &port);
  ASSERT_GT(port, 0) << server->Log();
  auto wrong_ca =
      StartClient(port, ClientArgs(0, {"--ca_cert=" + dir_ + "/other/ca.pem"}), dir_, "ca.log");
  EXPECT_EQ(wrong_ca->Wait(kRefusalTimeout), 1) << wrong_ca->Log();
  EXPECT_NE(LastLine(wrong_ca->Log()).find("server certificate could not be verified"),
            std::string::npos)
      << wrong_ca->Log();
  auto wrong_name = StartClient(
      port, ClientArgs(0, {"--ca_cert=" + certs_ + "/ca.pem", "--tls_server_name=evil.example"}),
      dir_, "name.log");
  EXPECT_EQ(wrong_name->Wait(kRefusalTimeout), 1) << wrong_name->Log();
  EXPECT_NE(LastLine(wrong_name->Log()).find("does not match the host name 'evil.example'"),
            std::string::npos)
      << wrong_name->Log();
  // Neither got as far as joining.
  EXPECT_EQ(server->Log().find(" joined from"), std::string::npos) << server->Log();
}

TEST_F(Security, MutualTlsTakesIdsFromCertificatesAndRefusesBadOnes) {
  std::string log;
  ASSERT_TRUE(AddDevClientCert(certs_, "expired", -1, &log)) << log;
  ASSERT_TRUE(MakeDevCerts(dir_ + "/other", 1, &log)) << log;
  std::vector<std::string> mtls = TlsServer(certs_);
  mtls.push_back("--client_ca=" + certs_ + "/ca.pem");
  int port = 0;
  auto server = StartServer(ServerArgs(dir_, 1, 2, mtls), dir_, "server.log", &port);
  ASSERT_GT(port, 0) << server->Log();
  const std::string ca = "--ca_cert=" + certs_ + "/ca.pem";
  struct Bad {
    std::string name;
    std::vector<std::string> args;
    std::string want;
  };
  const std::vector<Bad> bad = {
      {"missing", {ca}, "requires a client certificate"},
      {"expired",
       {ca, "--tls_cert=" + certs_ + "/expired.pem", "--tls_key=" + certs_ + "/expired.key"},
       "expired"},
      {"wrong-ca",
       {ca, "--tls_cert=" + dir_ + "/other/client-0.pem",
        "--tls_key=" + dir_ + "/other/client-0.key"},
       "refused this client's certificate"},
  };
  for (const Bad& b : bad) {
    auto c = StartClient(port, ClientArgs(0, b.args), dir_, b.name + ".log");
    EXPECT_EQ(c->Wait(kRefusalTimeout), 1) << b.name << "\n" << c->Log();
    EXPECT_NE(LastLine(c->Log()).find(b.want), std::string::npos) << b.name << "\n" << c->Log();
  }
  EXPECT_EQ(server->Log().find(" joined from"), std::string::npos) << server->Log();

  // A certified client cannot act for another: its id is its certificate's, whatever it claims.
  RogueClient rogue(port, RogueTls(certs_, "client-1"));
  std::string id;
  ASSERT_TRUE(rogue.Join(&id).ok());
  EXPECT_EQ(id, "client-1");
  rogue.bearer.clear();  // the certificate alone is the credential under mutual TLS
  proto::Task task;
  bool got = false;
  EXPECT_EQ(rogue.CheckIn("client-0", &task, &got).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);

  // A valid certificate: fl-client joins as client-0; the round takes both clients.
  auto good = StartClient(port,
                          ClientArgs(0, {ca, "--tls_cert=" + certs_ + "/client-0.pem",
                                         "--tls_key=" + certs_ + "/client-0.key"}),
                          dir_, "good.log");
  ASSERT_TRUE(WaitFor([&] { return rogue.CheckIn("client-1", &task, &got).ok() && got; },
                      absl::Seconds(120)));
  auto spec = models::SpecForModel("small_cnn");
  ASSERT_TRUE(spec.ok());
  const std::vector<float> zeros(models::NumParameters(*spec), 0.0f);
  proto::ReportHeader h;
  h.set_client_id("client-0");  // claims the other client's id
  h.set_round(task.round());
  h.set_attempt(task.attempt());
  h.set_model_version(task.model_version());
  h.set_num_samples(10);
  *h.mutable_spec() = *spec;
  h.set_codec("dense");
  h.set_total_bytes(zeros.size() * 4);
  h.set_sha256(Sha256::Of(Bytes(zeros)));
  EXPECT_EQ(rogue.Report(h, Bytes(zeros)).error_code(), grpc::StatusCode::PERMISSION_DENIED);
  h.set_client_id("client-1");
  grpc::Status own = rogue.Report(h, Bytes(zeros));
  EXPECT_TRUE(own.ok()) << own.error_message();
  ASSERT_EQ(server->Wait(kRunTimeout), 0) << server->Log();
  EXPECT_EQ(good->Wait(absl::Seconds(60)), 0) << good->Log();
  EXPECT_NE(server->Log().find("client client-0 joined"), std::string::npos) << server->Log();
  EXPECT_NE(server->Log().find("via client certificate"), std::string::npos);
}

TEST_F(Security, EnrollmentTokensCreateUseExpireRevokeReplay) {
  const std::string fl_server = BinDir() + "/fl-server";
  const std::string secret = dir_ + "/secret";
  std::string out;
  ASSERT_EQ(RunProgram({fl_server, "token", "new-secret", "--secret_file=" + secret}, &out), 0)
      << out;
  struct stat st;
  ASSERT_EQ(stat(secret.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  // Two single-use tokens (A for the client, R to be revoked) and one that expires at once.
  ASSERT_EQ(RunProgram({fl_server, "token", "create", "--secret_file=" + secret, "--ttl=1h",
                        "--count=2", "--out=" + dir_ + "/tokens"},
                       &out),
            0)
      << out;
  const std::vector<std::string> tokens =
      absl::StrSplit(ReadFileOrEmpty(dir_ + "/tokens"), '\n', absl::SkipEmpty());
  ASSERT_EQ(tokens.size(), 2u);
  ASSERT_EQ(stat((dir_ + "/tokens").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  ASSERT_EQ(RunProgram({fl_server, "token", "create", "--secret_file=" + secret, "--ttl=1s"}, &out),
            0)
      << out;
  const std::string short_lived = TokenLine(out);
  ASSERT_FALSE(short_lived.empty()) << out;
  const std::string token_a = tokens[0];
  const std::string token_r = tokens[1];
  ASSERT_TRUE(WriteFileAtomically(dir_ + "/a.token", token_a + "\n", 0600).ok());

  const std::vector<std::string> server_args =
      ServerArgs(dir_, 1, 1,
                 {"--tls_cert=" + certs_ + "/server.pem", "--tls_key=" + certs_ + "/server.key",
                  "--secret_file=" + secret});
  int port = 0;
  auto server = StartServer(server_args, dir_, "server1.log", &port);
  ASSERT_GT(port, 0) << server->Log();
  RogueClient rogue(port, RogueTls(certs_));
  std::string id;
  auto join = [&](const std::string& credential) {
    rogue.bearer.clear();
    return rogue.Join(&id, credential);
  };
  // No token, a forged one (one MAC character changed), an expired one, a revoked one.
  grpc::Status s = join("");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_NE(s.error_message().find("requires an enrollment token"), std::string::npos);
  std::string forged = token_r;
  forged.back() = forged.back() == 'a' ? 'b' : 'a';
  s = join(forged);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_NE(s.error_message().find("bad signature"), std::string::npos) << s.error_message();
  // The 1 s token: wait (bounded) until the expiry it carries has passed, then it is refused.
  const std::vector<std::string> fields = absl::StrSplit(short_lived, '.');
  ASSERT_EQ(fields.size(), 5u);
  int64_t expires = 0;
  ASSERT_TRUE(absl::SimpleAtoi(fields[2], &expires));
  ASSERT_TRUE(
      WaitFor([&] { return absl::Now() >= absl::FromUnixSeconds(expires); }, absl::Seconds(5)));
  s = join(short_lived);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_NE(s.error_message().find("expired"), std::string::npos) << s.error_message();
  const std::string id_r = token_r.substr(5, 16);
  ASSERT_EQ(
      RunProgram({fl_server, "token", "revoke", "--revoked=" + dir_ + "/run/revoked_tokens", id_r},
                 &out),
      0)
      << out;
  s = join(token_r);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_NE(s.error_message().find("revoked"), std::string::npos) << s.error_message();

  // Token A pays for one fl-client, which completes the run.
  auto client = StartClient(
      port,
      ClientArgs(0, {"--ca_cert=" + certs_ + "/ca.pem", "--token_file=" + dir_ + "/a.token",
                     "--state_dir=" + dir_ + "/state"}),
      dir_, "client1.log");
  ASSERT_EQ(server->Wait(kRunTimeout), 0) << server->Log();
  ASSERT_EQ(client->Wait(absl::Seconds(60)), 0) << client->Log();
  auto metrics = ReadJsonLines(dir_ + "/run/metrics.jsonl");
  ASSERT_EQ(metrics.size(), 1u);
  EXPECT_GE(Rejected(metrics[0], "unauthenticated_missing"), 1);
  EXPECT_GE(Rejected(metrics[0], "unauthenticated_forged"), 1);
  EXPECT_GE(Rejected(metrics[0], "unauthenticated_expired"), 1);
  EXPECT_GE(Rejected(metrics[0], "unauthenticated_revoked"), 1);
  // The client kept its session privately for a restart.
  ASSERT_EQ(stat((dir_ + "/state/client-0.session").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);

  // A restarted server still knows token A is used up: a replay is refused...
  std::vector<std::string> resume_args = server_args;
  resume_args.push_back("--resume");
  resume_args.push_back("--rounds=2");
  int port2 = 0;
  auto resumed = StartServer(resume_args, dir_, "server2.log", &port2);
  ASSERT_GT(port2, 0) << resumed->Log();
  RogueClient rogue2(port2, RogueTls(certs_));
  s = rogue2.Join(&id, token_a);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_NE(s.error_message().find("used up"), std::string::npos) << s.error_message();
  // ...while the restarted client renews the session it saved, without spending a use.
  auto again = StartClient(
      port2,
      ClientArgs(0, {"--ca_cert=" + certs_ + "/ca.pem", "--token_file=" + dir_ + "/a.token",
                     "--state_dir=" + dir_ + "/state"}),
      dir_, "client2.log");
  ASSERT_EQ(resumed->Wait(kRunTimeout), 0) << resumed->Log();
  ASSERT_EQ(again->Wait(absl::Seconds(60)), 0) << again->Log();
  EXPECT_NE(resumed->Log().find("via session renewal"), std::string::npos) << resumed->Log();
  metrics = ReadJsonLines(dir_ + "/run/metrics.jsonl");
  ASSERT_EQ(metrics.size(), 2u);
  EXPECT_GE(Rejected(metrics[1], "unauthenticated_used_up"), 1);

  // Secrets and tokens never reach logs or metrics.
  const std::string secret_text(absl::StripAsciiWhitespace(ReadFileOrEmpty(secret)));
  for (const std::string& file :
       {server->log_path(), resumed->log_path(), client->log_path(), again->log_path(),
        dir_ + "/run/metrics.jsonl", dir_ + "/run/config.json"}) {
    const std::string text = ReadFileOrEmpty(file);
    EXPECT_EQ(text.find(secret_text), std::string::npos) << file;
    for (const std::string& t : {token_a, token_r, short_lived, forged}) {
      EXPECT_EQ(text.find(t.substr(t.size() - 64)), std::string::npos) << file;  // its MAC
    }
  }
}

TEST_F(Security, ClientsActOnlyForThemselvesWithinLimits) {
  auto init = models::InitialWeights("small_cnn", 5);
  ASSERT_TRUE(init.ok());
  ASSERT_TRUE(WriteFileAtomically(dir_ + "/init.f32", Bytes(*init)).ok());
  auto spec = models::SpecForModel("small_cnn");
  ASSERT_TRUE(spec.ok());
  const int64_t n = models::NumParameters(*spec);
  // Plaintext on purpose: the session, not the transport, binds a caller to its id.
  int port = 0;
  auto server = StartServer(
      ServerArgs(dir_, 1, 2,
                 {"--init_weights=" + dir_ + "/init.f32", "--deadline=15", "--join_per_minute=2",
                  "--checkin_per_minute=4", absl::StrCat("--max_update_bytes_per_round=", n * 12)}),
      dir_, "server.log", &port);
  ASSERT_GT(port, 0) << server->Log();
  RogueClient a(port), b(port), c(port);
  std::string id_a, id_b, id_c;
  ASSERT_TRUE(a.Join(&id_a).ok());
  ASSERT_TRUE(b.Join(&id_b).ok());
  // A third Join from the same address within the minute is over the limit.
  EXPECT_EQ(c.Join(&id_c).error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  proto::Task ta, tb;
  bool got = false;
  ASSERT_TRUE(WaitFor([&] { return a.CheckIn(id_a, &ta, &got).ok() && got; }, absl::Seconds(60)));
  ASSERT_TRUE(WaitFor([&] { return b.CheckIn(id_b, &tb, &got).ok() && got; }, absl::Seconds(60)));
  // A may not fetch B's task.
  proto::Task stolen;
  EXPECT_EQ(a.CheckIn(id_b, &stolen, &got).error_code(), grpc::StatusCode::PERMISSION_DENIED);
  // CheckIn is rate-limited per client (4 per minute): A's task comes back at once while it has
  // not reported, so a few calls exhaust the budget.
  grpc::StatusCode last = grpc::StatusCode::OK;
  for (int i = 0; i < 5 && last == grpc::StatusCode::OK; ++i) {
    last = a.CheckIn(id_a, &ta, &got).error_code();
  }
  EXPECT_EQ(last, grpc::StatusCode::RESOURCE_EXHAUSTED);

  auto header = [&](const std::string& id, const proto::Task& t) {
    proto::ReportHeader h;
    h.set_client_id(id);
    h.set_round(t.round());
    h.set_attempt(t.attempt());
    h.set_model_version(t.model_version());
    h.set_num_samples(100);
    *h.mutable_spec() = *spec;
    h.set_codec("dense");
    h.set_total_bytes(n * 4);
    return h;
  };
  const std::vector<float> zeros(n, 0.0f);
  const std::vector<float> poison(n, 5.0f);
  proto::ReportHeader for_b = header(id_b, tb);
  for_b.set_sha256(Sha256::Of(Bytes(poison)));
  // A reports for B: refused, whatever it sends.
  grpc::Status s = a.Report(for_b, Bytes(poison));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED) << s.error_message();
  // A reports for another round: refused.
  proto::ReportHeader next_round = header(id_a, ta);
  next_round.set_round(ta.round() + 1);
  next_round.set_sha256(Sha256::Of(Bytes(poison)));
  EXPECT_EQ(a.Report(next_round, Bytes(poison)).error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);
  // A's own update (zeros) is taken, once: the same upload again is answered "accepted" (a
  // repeat whose answer was lost; not folded in again), any other update from A is refused.
  proto::ReportHeader own = header(id_a, ta);
  own.set_sha256(Sha256::Of(Bytes(zeros)));
  s = a.Report(own, Bytes(zeros));
  ASSERT_TRUE(s.ok()) << s.error_message();
  s = a.Report(own, Bytes(zeros));
  EXPECT_TRUE(s.ok()) << s.error_message();
  proto::ReportHeader heavier = own;
  heavier.set_num_samples(1000);
  EXPECT_EQ(a.Report(heavier, Bytes(zeros)).error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  // B may announce 3 dense updates' worth of bytes per round over all its attempts. Uploads that
  // arrive corrupted (DATA_LOSS) are what a client sends again, so they are what the cap bounds (a
  // bad update would instead end B's attempt: tests/bad_input_test.cc).
  proto::ReportHeader b_bad = header(id_b, tb);
  b_bad.set_sha256(Sha256::Of(Bytes(zeros)));  // the payload sent is `poison`
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(b.Report(b_bad, Bytes(poison)).error_code(), grpc::StatusCode::DATA_LOSS) << i;
  }
  s = b.Report(b_bad, Bytes(poison));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << s.error_message();

  // B never reported: the round closes at its deadline with A's update alone.
  ASSERT_EQ(server->Wait(absl::Seconds(120)), 0) << server->Log();
  EXPECT_EQ(ReadFileOrEmpty(dir_ + "/run/model_final.f32"), Bytes(*init));
  auto metrics = ReadJsonLines(dir_ + "/run/metrics.jsonl");
  ASSERT_EQ(metrics.size(), 1u);
  EXPECT_EQ(NumberField(metrics[0], "clients_reported"), 1);
  EXPECT_GE(Rejected(metrics[0], "permission_denied"), 2);
  EXPECT_GE(Rejected(metrics[0], "resource_exhausted"), 3);
}

TEST_F(Security, PlaintextRefusedUnlessBothSidesSayInsecure) {
  // Neither side starts without TLS material or --insecure.
  std::string out;
  EXPECT_EQ(
      RunProgram({BinDir() + "/fl-server", "--model=small_cnn", "--out=" + dir_ + "/x"}, &out), 2);
  EXPECT_NE(out.find("pass --tls_cert and --tls_key"), std::string::npos) << out;
  EXPECT_NE(out.find("--insecure"), std::string::npos) << out;
  EXPECT_EQ(RunProgram({BinDir() + "/fl-client", "--server=127.0.0.1:1"}, &out), 2);
  EXPECT_NE(out.find("pass --ca_cert"), std::string::npos) << out;
  EXPECT_NE(out.find("--insecure"), std::string::npos) << out;

  // A TLS server refuses a plaintext client...
  int port = 0;
  auto tls = StartServer(ServerArgs(dir_, 1, 1, TlsServer(certs_)), dir_, "tls.log", &port);
  ASSERT_GT(port, 0) << tls->Log();
  auto plain = StartClient(port, ClientArgs(0, {"--insecure"}), dir_, "plain.log");
  EXPECT_EQ(plain->Wait(kRefusalTimeout), 1) << plain->Log();
  EXPECT_NE(LastLine(plain->Log()).find("requires TLS"), std::string::npos) << plain->Log();
  EXPECT_EQ(tls->Log().find(" joined from"), std::string::npos);
  tls->Signal(SIGTERM);
  tls->Wait(absl::Seconds(30));

  // ...a plaintext server is refused by a TLS client...
  int port2 = 0;
  auto insecure =
      StartServer(ServerArgs(dir_ + "/p", 1, 1, {"--insecure"}), dir_, "plain-server.log", &port2);
  ASSERT_GT(port2, 0) << insecure->Log();
  auto tls_client =
      StartClient(port2, ClientArgs(0, {"--ca_cert=" + certs_ + "/ca.pem"}), dir_, "tlsc.log");
  EXPECT_EQ(tls_client->Wait(kRefusalTimeout), 1) << tls_client->Log();
  EXPECT_NE(LastLine(tls_client->Log()).find("does not speak TLS"), std::string::npos)
      << tls_client->Log();
  // ...and both saying --insecure works, each warning about it.
  auto both = StartClient(port2, ClientArgs(0, {"--insecure"}), dir_, "both.log");
  ASSERT_EQ(insecure->Wait(kRunTimeout), 0) << insecure->Log();
  EXPECT_EQ(both->Wait(absl::Seconds(60)), 0) << both->Log();
  EXPECT_NE(insecure->Log().find("--insecure: serving PLAINTEXT"), std::string::npos);
  EXPECT_NE(both->Log().find("--insecure: talking PLAINTEXT"), std::string::npos) << both->Log();
}

}  // namespace
}  // namespace edgefl::testing
