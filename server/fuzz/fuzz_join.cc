// libFuzzer target: the Join handler's request parsing and validation, without gRPC.
//
// Records (server/fuzz/fuzz_common.h): [0] a serialized JoinRequest, [1] the "authorization"
// metadata value, [2] the verified client-certificate identity ("" = none), [3] the peer address.
// Runs what CoordinatorService::Join runs before touching the network: ParseBearer,
// ValidateJoinRequest, then AccessControl::Join under open enrollment and under mutual TLS, and
// token verification directly.
//
// Properties (a violation aborts):
//  - no crash, leak or UB on any input;
//  - every refusal is INVALID_ARGUMENT, UNAUTHENTICATED (with a reason), PERMISSION_DENIED or
//    RESOURCE_EXHAUSTED, with a message that never contains the presented token;
//  - a token that verifies re-mints to exactly the same text (one canonical form: no malleable
//    encodings), and a session's client id is a valid id;
//  - a granted Join yields a valid client id and a session that authenticates as that id; under
//    mutual TLS the id is the certificate's.
#include <initializer_list>
#include <memory>
#include <string>

#include "common/status_reason.h"
#include "fuzz_common.h"
#include "server/access_control.h"
#include "server/client_registry.h"
#include "server/request_validation.h"
#include "server/tokens.h"

using namespace edgefl;
using namespace edgefl::server;

namespace {

// Fresh per input (cheap), so that a finding reproduces from its input alone.
struct World {
  fuzz::FixedClock clock;
  TokenAuthority tokens = *TokenAuthority::Create(fuzz::kFuzzSecret);
  ClientRegistry registry{ClientRegistry::Options{absl::Hours(1), 1000, 1}, &clock};
  std::unique_ptr<AccessControl> open;
  std::unique_ptr<AccessControl> mtls;
  World() {
    AccessControl::Options o;
    o.join_rate = {1, 1, 10};  // the limiter runs too: one Join per key, then refused
    o.checkin_rate.per_minute = 0;
    open = *AccessControl::Create(o, tokens, nullptr, &registry, &clock);
    o.require_client_cert = true;
    mtls = *AccessControl::Create(o, tokens, nullptr, &registry, &clock);
  }
};

void CheckRefusal(const absl::Status& s, absl::string_view token,
                  std::initializer_list<absl::string_view> caller_fields) {
  FUZZ_CHECK(!s.ok());
  const absl::StatusCode c = s.code();
  FUZZ_CHECK(c == absl::StatusCode::kInvalidArgument || c == absl::StatusCode::kUnauthenticated ||
             c == absl::StatusCode::kPermissionDenied || c == absl::StatusCode::kResourceExhausted);
  if (c == absl::StatusCode::kUnauthenticated) FUZZ_CHECK(ReasonOf(s).has_value());
  FUZZ_CHECK(!s.message().empty());
  fuzz::CheckTokenNotEchoed(s.message(), token, caller_fields);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  fuzz::SilenceProtobufLogs();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto world = std::make_unique<World>();
  fuzz::Records in(data, size);
  const absl::string_view request_bytes = in.Next();
  const absl::string_view authorization = in.Next();
  const std::string cert(in.Next());
  const std::string peer(in.Next());

  proto::JoinRequest request;
  if (!request.ParseFromArray(request_bytes.data(), static_cast<int>(request_bytes.size()))) {
    return 0;
  }
  absl::StatusOr<std::string> bearer = ParseBearer(authorization);
  if (!bearer.ok()) {
    CheckRefusal(bearer.status(), authorization, {request_bytes, cert, peer});
    return 0;
  }
  // Direct token verification and canonical form.
  if (absl::StatusOr<EnrollmentToken> t = world->tokens.VerifyEnrollment(*bearer, fuzz::FuzzNow());
      t.ok()) {
    FUZZ_CHECK(world->tokens.MintEnrollment(*t) == *bearer);
    FUZZ_CHECK(t->max_uses >= 1 && t->max_uses <= kMaxTokenUses);
    FUZZ_CHECK(t->expires > fuzz::FuzzNow());
  } else {
    CheckRefusal(t.status(), *bearer, {request_bytes, cert, peer});
  }
  if (absl::StatusOr<SessionToken> s = world->tokens.VerifySession(*bearer, fuzz::FuzzNow());
      s.ok()) {
    FUZZ_CHECK(world->tokens.MintSession(*s) == *bearer);
  } else {
    CheckRefusal(s.status(), *bearer, {request_bytes, cert, peer});
  }

  if (absl::Status v = ValidateJoinRequest(request); !v.ok()) {
    CheckRefusal(v, *bearer, {request_bytes, cert, peer});
    return 0;
  }
  (void)PeerHost(peer);
  for (AccessControl* acl : {world->open.get(), world->mtls.get(), world->open.get()}) {
    PeerCredentials creds{cert, *bearer, peer};
    absl::StatusOr<AccessControl::JoinGrant> grant = acl->Join(creds, request.profile());
    if (!grant.ok()) {
      CheckRefusal(grant.status(), *bearer, {request_bytes, cert, peer});
      continue;
    }
    FUZZ_CHECK(IsValidClientId(grant->client_id));
    if (acl == world->mtls.get()) FUZZ_CHECK(grant->client_id == cert);
    absl::StatusOr<std::string> who =
        world->open->Authenticate(PeerCredentials{"", grant->session_token, peer});
    FUZZ_CHECK(who.ok());
    FUZZ_CHECK(*who == grant->client_id);
  }
  return 0;
}
