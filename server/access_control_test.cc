// Unit tests of the security pieces: token minting and verification, the enrollment ledger,
// rate limiting, the access-control policy, and the pure request checks.
#include "server/access_control.h"

#include <sys/stat.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/status_reason.h"
#include "common/testing/simulated_clock.h"
#include "gtest/gtest.h"
#include "server/enrollment_ledger.h"
#include "server/rate_limiter.h"
#include "server/request_validation.h"
#include "server/tokens.h"

namespace edgefl::server {
namespace {

constexpr char kSecret[] = "0123456789abcdef0123456789abcdef-test-secret";

std::string TempDir() {
  std::string tmpl =
      absl::StrCat(std::getenv("TMPDIR") ? std::getenv("TMPDIR") : "/tmp", "/edgefl-acl-XXXXXX");
  return mkdtemp(tmpl.data());
}

std::string ReasonOrEmpty(const absl::Status& s) { return ReasonOf(s).value_or(""); }

TokenAuthority Authority(const std::string& secret = kSecret) {
  return *TokenAuthority::Create(secret);
}

// ---- tokens -------------------------------------------------------------------------------------

TEST(Tokens, EnrollmentRoundTripAndExpiry) {
  const TokenAuthority a = Authority();
  const absl::Time now = absl::FromUnixSeconds(1800000000);
  const std::string id = *TokenAuthority::NewTokenId();
  ASSERT_EQ(id.size(), 16u);
  const std::string text = a.MintEnrollment({id, now + absl::Hours(1), 5});
  EXPECT_TRUE(TokenAuthority::IsEnrollmentText(text));
  absl::StatusOr<EnrollmentToken> t = a.VerifyEnrollment(text, now);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->id, id);
  EXPECT_EQ(t->max_uses, 5);
  EXPECT_EQ(t->expires, now + absl::Hours(1));
  absl::StatusOr<EnrollmentToken> late = a.VerifyEnrollment(text, now + absl::Hours(1));
  EXPECT_EQ(late.status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(ReasonOrEmpty(late.status()), "unauthenticated_expired");
}

TEST(Tokens, ForgedAndMalformedAreRefused) {
  const TokenAuthority a = Authority();
  const absl::Time now = absl::FromUnixSeconds(1800000000);
  const std::string good = a.MintEnrollment({"00112233aabbccdd", now + absl::Hours(1), 1});
  // Another secret, a changed field (more uses), a flipped MAC character.
  EXPECT_EQ(ReasonOrEmpty(Authority(std::string(40, 'x')).VerifyEnrollment(good, now).status()),
            "unauthenticated_forged");
  std::string more_uses = good;
  more_uses.replace(more_uses.find(".1."), 3, ".9.");
  EXPECT_EQ(ReasonOrEmpty(a.VerifyEnrollment(more_uses, now).status()), "unauthenticated_forged");
  std::string flipped = good;
  flipped.back() = flipped.back() == '0' ? '1' : '0';
  EXPECT_EQ(ReasonOrEmpty(a.VerifyEnrollment(flipped, now).status()), "unauthenticated_forged");
  for (const std::string& bad : {std::string(), std::string("eft1"), std::string("eft1....."),
                                 good + ".x", std::string(2000, 'a'), good.substr(0, 30)}) {
    absl::Status s = a.VerifyEnrollment(bad, now).status();
    EXPECT_EQ(s.code(), absl::StatusCode::kUnauthenticated) << bad;
    // The message never echoes the token.
    if (!bad.empty()) {
      EXPECT_EQ(s.message().find(bad), absl::string_view::npos);
    }
  }
  // A session token is not an enrollment token (and vice versa): separate keys.
  const std::string session = a.MintSession({"c-1", "", now + absl::Hours(1)});
  EXPECT_FALSE(a.VerifyEnrollment(session, now).ok());
  EXPECT_FALSE(a.VerifySession(good, now).ok());
}

TEST(Tokens, SessionRoundTripWithAnyClientId) {
  const TokenAuthority a = Authority();
  const absl::Time now = absl::FromUnixSeconds(1800000000);
  for (const std::string id : {"c-0011223344556677", "device-1.example.org", "a:b@c_d"}) {
    const std::string text = a.MintSession({id, "00112233aabbccdd", now + absl::Minutes(5)});
    absl::StatusOr<SessionToken> s = a.VerifySession(text, now);
    ASSERT_TRUE(s.ok()) << s.status();
    EXPECT_EQ(s->client_id, id);
    EXPECT_EQ(s->token_id, "00112233aabbccdd");
    EXPECT_EQ(ReasonOrEmpty(a.VerifySession(text, now + absl::Minutes(5)).status()),
              "unauthenticated_expired");
  }
}

TEST(Tokens, ShortSecretIsRefused) {
  EXPECT_EQ(TokenAuthority::Create("short").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(Tokens, SecretFromFileRefusesLoosePermissionsAndEnvWorks) {
  const std::string dir = TempDir();
  const std::string path = dir + "/secret";
  ASSERT_TRUE(WriteFileAtomically(path, std::string(kSecret) + "\n", 0644).ok());
  absl::StatusOr<std::string> loose = LoadServerSecret(path, nullptr);
  EXPECT_EQ(loose.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(loose.status().message().find("chmod 600"), absl::string_view::npos);
  // The refusal message names the file, never its content.
  EXPECT_EQ(loose.status().message().find(kSecret), absl::string_view::npos);
  ASSERT_EQ(chmod(path.c_str(), 0600), 0);
  std::string source;
  absl::StatusOr<std::string> ok = LoadServerSecret(path, &source);
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(*ok, kSecret);  // trailing newline trimmed
  EXPECT_EQ(source.find(kSecret), std::string::npos);
  setenv(kSecretEnvVar, kSecret, 1);
  absl::StatusOr<std::string> env = LoadServerSecret("", &source);
  unsetenv(kSecretEnvVar);
  ASSERT_TRUE(env.ok()) << env.status();
  EXPECT_EQ(source, "$EDGEFL_SERVER_SECRET");
  EXPECT_EQ(LoadServerSecret("", nullptr).status().code(), absl::StatusCode::kNotFound);
}

TEST(Tokens, ParsesDurations) {
  EXPECT_EQ(*ParsePositiveDuration("24h"), absl::Hours(24));
  EXPECT_EQ(*ParsePositiveDuration("7d"), absl::Hours(168));
  EXPECT_EQ(*ParsePositiveDuration("90s"), absl::Seconds(90));
  for (const char* bad : {"", "0s", "-1h", "soon", "inf", "d", "0d"}) {
    EXPECT_FALSE(ParsePositiveDuration(bad).ok()) << bad;
  }
}

// ---- ledger -------------------------------------------------------------------------------------

TEST(EnrollmentLedger, CountsUsesAcrossReopenAndHonoursRevocation) {
  const std::string dir = TempDir();
  EnrollmentLedger::Options o{dir + "/uses", dir + "/revoked"};
  {
    auto ledger = EnrollmentLedger::Open(o);
    ASSERT_TRUE(ledger.ok()) << ledger.status();
    EXPECT_TRUE((*ledger)->ConsumeUse("00112233aabbccdd", 2).ok());
    EXPECT_TRUE((*ledger)->ConsumeUse("00112233aabbccdd", 2).ok());
    absl::Status third = (*ledger)->ConsumeUse("00112233aabbccdd", 2);
    EXPECT_EQ(ReasonOrEmpty(third), "unauthenticated_used_up");
    (*ledger)->RefundUse("00112233aabbccdd");
  }
  struct stat st;
  ASSERT_EQ(stat(o.uses_path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  {
    // A "restarted server" sees the persisted count (1 after the refund).
    auto ledger = EnrollmentLedger::Open(o);
    ASSERT_TRUE(ledger.ok());
    EXPECT_EQ((*ledger)->uses("00112233aabbccdd"), 1);
    EXPECT_TRUE((*ledger)->ConsumeUse("00112233aabbccdd", 2).ok());
    EXPECT_FALSE((*ledger)->ConsumeUse("00112233aabbccdd", 2).ok());
    // Revocation takes effect without a restart.
    EXPECT_FALSE((*ledger)->IsRevoked("ffeeddccbbaa9988"));
    ASSERT_TRUE(AppendRevocations(o.revocation_path, {"ffeeddccbbaa9988"}, "lost device").ok());
    EXPECT_TRUE((*ledger)->IsRevoked("ffeeddccbbaa9988"));
    EXPECT_EQ(ReasonOrEmpty((*ledger)->ConsumeUse("ffeeddccbbaa9988", 5)),
              "unauthenticated_revoked");
  }
  EXPECT_EQ(AppendRevocations(o.revocation_path, {"not-an-id"}, "").code(),
            absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(WriteFileAtomically(o.uses_path, "garbage line\n", 0600).ok());
  EXPECT_EQ(EnrollmentLedger::Open(o).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(EnrollmentLedger, ParsesRevocationLists) {
  auto ids = ParseRevocationList(
      "# comment\n00112233aabbccdd\n  ffeeddccbbaa9988   # lost\nshort\n\nABCDEF0011223344\n");
  EXPECT_EQ(ids.size(), 2u);
  EXPECT_TRUE(ids.contains("00112233aabbccdd"));
  EXPECT_TRUE(ids.contains("ffeeddccbbaa9988"));
}

// ---- rate limiter -------------------------------------------------------------------------------

TEST(RateLimiter, BurstThenRefill) {
  SimulatedClock clock;
  RateLimiter limiter({/*per_minute=*/60, /*burst=*/3, /*max_keys=*/2}, &clock);
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(limiter.Admit("a", "Join").ok());
  absl::Status s = limiter.Admit("a", "Join");
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(s.message().find("retry in"), absl::string_view::npos) << s;
  EXPECT_TRUE(limiter.Admit("b", "Join").ok());  // other keys are not affected
  EXPECT_TRUE(limiter.Admit("b", "Join").ok());
  clock.AdvanceTime(absl::Seconds(1));  // one token back
  EXPECT_TRUE(limiter.Admit("a", "Join").ok());
  EXPECT_FALSE(limiter.Admit("a", "Join").ok());
  // The key table is bounded: a third key fits only once an idle bucket can be dropped.
  EXPECT_EQ(limiter.Admit("c", "Join").code(), absl::StatusCode::kResourceExhausted);
  clock.AdvanceTime(absl::Minutes(1));
  EXPECT_TRUE(limiter.Admit("c", "Join").ok());
}

// ---- request validation -------------------------------------------------------------------------

TEST(RequestValidation, BearerAndIds) {
  EXPECT_EQ(*ParseBearer(""), "");
  EXPECT_EQ(*ParseBearer("Bearer abc.def"), "abc.def");
  EXPECT_EQ(*ParseBearer("bearer  abc"), "abc");
  for (const char* bad : {"Basic abc", "Bearer", "Bearer ", "Bearer a b", "Bearer \x01"}) {
    EXPECT_EQ(ParseBearer(bad).status().code(), absl::StatusCode::kUnauthenticated) << bad;
  }
  EXPECT_TRUE(IsValidClientId("c-0011223344556677"));
  EXPECT_TRUE(IsValidClientId("client-3.fleet.example"));
  EXPECT_FALSE(IsValidClientId(""));
  EXPECT_FALSE(IsValidClientId("has space"));
  EXPECT_FALSE(IsValidClientId(std::string(129, 'a')));
  EXPECT_EQ(CheckClientBinding("a", "b", "Report").code(), absl::StatusCode::kPermissionDenied);
  EXPECT_TRUE(CheckClientBinding("a", "a", "Report").ok());
  EXPECT_EQ(PeerHost("ipv4:10.1.2.3:5555"), "10.1.2.3");
  EXPECT_EQ(PeerHost("ipv6:[::1]:5555"), "::1");
}

TEST(RequestValidation, ReportHeaders) {
  ReportLimits limits;
  limits.spec.set_model("tiny");
  auto* t = limits.spec.add_tensors();
  t->set_name("w");
  t->add_shape(4);
  limits.layout = {{"w", 4}};
  limits.dense_bytes = 16;
  proto::ReportHeader h;
  h.set_client_id("c-1");
  *h.mutable_spec() = limits.spec;
  h.set_codec("dense");
  h.set_total_bytes(16);
  h.set_sha256(std::string(32, 'x'));
  h.set_num_samples(3);
  absl::StatusOr<ReportPlan> plan = ValidateReportHeader(h, limits, "dense");
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_TRUE(plan->dense);
  const float ok[4] = {3, 0, 0, 4};
  EXPECT_DOUBLE_EQ(
      *UpdateL2Norm(*plan, absl::string_view(reinterpret_cast<const char*>(ok), 16), limits.layout),
      5.0);
  const float inf[4] = {1, 0, 0, std::numeric_limits<float>::infinity()};
  EXPECT_FALSE(
      UpdateL2Norm(*plan, absl::string_view(reinterpret_cast<const char*>(inf), 16), limits.layout)
          .ok());
  auto with = [&](auto mutate) {
    proto::ReportHeader copy = h;
    mutate(&copy);
    return ValidateReportHeader(copy, limits, "dense").status().code();
  };
  const auto kBad = absl::StatusCode::kInvalidArgument;
  EXPECT_EQ(with([](proto::ReportHeader* x) { x->set_total_bytes(15); }), kBad);
  EXPECT_EQ(with([](proto::ReportHeader* x) { x->set_num_samples(0); }), kBad);
  EXPECT_EQ(with([](proto::ReportHeader* x) { x->set_sha256("short"); }), kBad);
  EXPECT_EQ(with([](proto::ReportHeader* x) { x->set_codec("int8"); }), kBad);  // not the round's
  EXPECT_EQ(with([](proto::ReportHeader* x) { x->set_codec("gzip"); }), kBad);
  EXPECT_EQ(with([](proto::ReportHeader* x) { x->set_client_id("bad id"); }), kBad);
  EXPECT_EQ(
      with([](proto::ReportHeader* x) { x->mutable_spec()->mutable_tensors(0)->set_name("v"); }),
      kBad);
}

// ---- access control -----------------------------------------------------------------------------

class AccessControlTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = TempDir();
    registry_ = std::make_unique<ClientRegistry>(ClientRegistry::Options(), &clock_);
    auto ledger = EnrollmentLedger::Open({dir_ + "/uses", dir_ + "/revoked"});
    ASSERT_TRUE(ledger.ok());
    ledger_ = std::move(*ledger);
  }
  std::unique_ptr<AccessControl> Make(AccessControl::Options o) {
    auto a = AccessControl::Create(o, Authority(), ledger_.get(), registry_.get(), &clock_);
    EXPECT_TRUE(a.ok()) << a.status();
    return std::move(*a);
  }
  std::string Token(int uses, absl::Duration ttl = absl::Hours(1)) {
    return Authority().MintEnrollment({*TokenAuthority::NewTokenId(), clock_.Now() + ttl, uses});
  }
  static PeerCredentials Peer(std::string bearer, std::string cert = "") {
    return PeerCredentials{std::move(cert), std::move(bearer), "ipv4:127.0.0.1:1234"};
  }

  SimulatedClock clock_;
  std::string dir_;
  std::unique_ptr<ClientRegistry> registry_;
  std::unique_ptr<EnrollmentLedger> ledger_;
};

TEST_F(AccessControlTest, EnrollmentTokensPayForJoinsAndSessionsBindIds) {
  AccessControl::Options o;
  o.enrollment_tokens = true;
  o.session_ttl = absl::Minutes(10);
  auto acl = Make(o);
  // No credential, a malformed one, a forged one.
  EXPECT_EQ(ReasonOrEmpty(acl->Join(Peer(""), {}).status()), "unauthenticated_missing");
  EXPECT_EQ(ReasonOrEmpty(acl->Join(Peer("nonsense"), {}).status()), "unauthenticated_malformed");
  const std::string forged =
      Authority(std::string(40, 'z'))
          .MintEnrollment({"00112233aabbccdd", clock_.Now() + absl::Hours(1), 9});
  EXPECT_EQ(ReasonOrEmpty(acl->Join(Peer(forged), {}).status()), "unauthenticated_forged");
  // A single-use token: one Join, then used up.
  const std::string token = Token(1);
  auto grant = acl->Join(Peer(token), {});
  ASSERT_TRUE(grant.ok()) << grant.status();
  EXPECT_EQ(ReasonOrEmpty(acl->Join(Peer(token), {}).status()), "unauthenticated_used_up");
  // The session authenticates the client and only it.
  auto id = acl->Authenticate(Peer(grant->session_token));
  ASSERT_TRUE(id.ok()) << id.status();
  EXPECT_EQ(*id, grant->client_id);
  EXPECT_EQ(ReasonOrEmpty(acl->Authenticate(Peer("")).status()), "unauthenticated_missing");
  EXPECT_EQ(ReasonOrEmpty(acl->Authenticate(Peer(token)).status()), "unauthenticated_malformed");
  // Renewal half-way keeps the id, does not spend a token use, and extends the session.
  clock_.AdvanceTime(absl::Minutes(5));
  auto renewed = acl->Join(Peer(grant->session_token), {});
  ASSERT_TRUE(renewed.ok()) << renewed.status();
  EXPECT_EQ(renewed->client_id, grant->client_id);
  // Sessions expire.
  clock_.AdvanceTime(absl::Minutes(6));
  EXPECT_EQ(ReasonOrEmpty(acl->Authenticate(Peer(grant->session_token)).status()),
            "unauthenticated_expired");
  EXPECT_EQ(*acl->Authenticate(Peer(renewed->session_token)), grant->client_id);
}

TEST_F(AccessControlTest, RevokingATokenEndsItsSessions) {
  AccessControl::Options o;
  o.enrollment_tokens = true;
  auto acl = Make(o);
  const std::string token = Token(3);
  auto grant = acl->Join(Peer(token), {});
  ASSERT_TRUE(grant.ok());
  const std::string id = token.substr(5, 16);
  ASSERT_TRUE(AppendRevocations(dir_ + "/revoked", {id}, "").ok());
  EXPECT_EQ(ReasonOrEmpty(acl->Authenticate(Peer(grant->session_token)).status()),
            "unauthenticated_revoked");
  EXPECT_EQ(ReasonOrEmpty(acl->Join(Peer(token), {}).status()), "unauthenticated_revoked");
  EXPECT_EQ(ReasonOrEmpty(acl->Join(Peer(grant->session_token), {}).status()),
            "unauthenticated_revoked");
}

TEST_F(AccessControlTest, ExpiredEnrollmentTokenIsRefused) {
  AccessControl::Options o;
  o.enrollment_tokens = true;
  auto acl = Make(o);
  const std::string token = Token(5, absl::Seconds(30));
  clock_.AdvanceTime(absl::Seconds(31));
  EXPECT_EQ(ReasonOrEmpty(acl->Join(Peer(token), {}).status()), "unauthenticated_expired");
  EXPECT_EQ(ledger_->uses(token.substr(5, 16)), 0);  // nothing was spent
}

TEST_F(AccessControlTest, CertificateIdentityIsTheClientId) {
  AccessControl::Options o;
  o.require_client_cert = true;
  auto acl = Make(o);
  auto grant = acl->Join(Peer("", "client-7"), {});
  ASSERT_TRUE(grant.ok()) << grant.status();
  EXPECT_EQ(grant->client_id, "client-7");
  EXPECT_TRUE(registry_->IsKnown("client-7"));
  EXPECT_EQ(*acl->Authenticate(Peer("", "client-7")), "client-7");
  // A session from another identity does not override the certificate.
  EXPECT_EQ(*acl->Authenticate(Peer(grant->session_token, "client-8")), "client-8");
  EXPECT_FALSE(acl->Join(Peer("", "bad name"), {}).ok());
  EXPECT_FALSE(acl->Authenticate(Peer("", "")).ok());
}

TEST_F(AccessControlTest, MutualTlsWithTokensNeedsBoth) {
  AccessControl::Options o;
  o.require_client_cert = true;
  o.enrollment_tokens = true;
  auto acl = Make(o);
  EXPECT_EQ(ReasonOrEmpty(acl->Join(Peer("", "client-1"), {}).status()),
            "unauthenticated_missing");
  auto grant = acl->Join(Peer(Token(1), "client-1"), {});
  ASSERT_TRUE(grant.ok()) << grant.status();
  EXPECT_EQ(grant->client_id, "client-1");
  EXPECT_EQ(*acl->Authenticate(Peer(grant->session_token, "client-1")), "client-1");
  // The certificate alone, or a session with another certificate, is not enough.
  EXPECT_FALSE(acl->Authenticate(Peer("", "client-1")).ok());
  EXPECT_EQ(ReasonOrEmpty(acl->Authenticate(Peer(grant->session_token, "client-2")).status()),
            "unauthenticated_forged");
  EXPECT_FALSE(acl->Join(Peer(grant->session_token, "client-2"), {}).ok());
}

TEST_F(AccessControlTest, CheckInRateAndUpdateByteCap) {
  AccessControl::Options o;
  o.checkin_rate = {60, 2, 100};
  o.join_rate = {60, 2, 100};
  o.max_update_bytes_per_round = 100;
  auto acl = Make(o);
  EXPECT_TRUE(acl->AdmitCheckIn("c-1").ok());
  EXPECT_TRUE(acl->AdmitCheckIn("c-1").ok());
  EXPECT_EQ(acl->AdmitCheckIn("c-1").code(), absl::StatusCode::kResourceExhausted);
  EXPECT_TRUE(acl->AdmitCheckIn("c-2").ok());
  // Join is limited per peer address.
  EXPECT_TRUE(acl->Join(Peer(""), {}).ok());
  EXPECT_TRUE(acl->Join(Peer(""), {}).ok());
  EXPECT_EQ(acl->Join(Peer(""), {}).status().code(), absl::StatusCode::kResourceExhausted);
  // Update bytes: 60 + 40 fit, one more byte does not; a new round starts afresh.
  EXPECT_TRUE(acl->ChargeUpdateBytes("c-1", 1, 60).ok());
  EXPECT_TRUE(acl->ChargeUpdateBytes("c-1", 1, 40).ok());
  EXPECT_EQ(acl->ChargeUpdateBytes("c-1", 1, 1).code(), absl::StatusCode::kResourceExhausted);
  EXPECT_TRUE(acl->ChargeUpdateBytes("c-2", 1, 100).ok());
  EXPECT_TRUE(acl->ChargeUpdateBytes("c-1", 2, 100).ok());
  EXPECT_EQ(acl->ChargeUpdateBytes("c-1", 3, 101).code(), absl::StatusCode::kResourceExhausted);
}

TEST_F(AccessControlTest, OpenEnrollmentStillBindsSessions) {
  auto acl = AccessControl::CreateOpen(registry_.get(), &clock_);
  auto a = acl->Join(Peer(""), {});
  auto b = acl->Join(Peer(""), {});
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_NE(a->client_id, b->client_id);
  EXPECT_EQ(*acl->Authenticate(Peer(a->session_token)), a->client_id);
  EXPECT_EQ(*acl->Authenticate(Peer(b->session_token)), b->client_id);
  EXPECT_FALSE(acl->Authenticate(Peer("")).ok());
  // Sessions of another server (another key) are refused.
  auto other = AccessControl::CreateOpen(registry_.get(), &clock_);
  EXPECT_EQ(ReasonOrEmpty(other->Authenticate(Peer(a->session_token)).status()),
            "unauthenticated_forged");
}

}  // namespace
}  // namespace edgefl::server
