// libFuzzer target: the CheckIn handler's request parsing, authentication and validation,
// without gRPC.
//
// Records (server/fuzz/fuzz_common.h): [0] a serialized CheckInRequest, [1] the "authorization"
// metadata value, [2] the verified client-certificate identity ("" = none).
// Runs what CoordinatorService::CheckIn runs before it waits for a task: ParseBearer,
// AccessControl::Authenticate (session tokens; and mutual TLS), CheckClientBinding,
// ValidateCheckInRequest, AccessControl::AdmitCheckIn.
//
// Properties (a violation aborts):
//  - no crash, leak or UB on any input;
//  - refusals carry the documented codes and never echo the presented token;
//  - an authenticated caller has a valid client id: the session's (which re-mints to the same
//    token) or, under mutual TLS, the certificate's;
//  - a request passes the binding check only for the caller's own id.
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

void CheckRefusal(const absl::Status& s, absl::string_view token,
                  std::initializer_list<absl::string_view> caller_fields) {
  FUZZ_CHECK(!s.ok());
  const absl::StatusCode c = s.code();
  FUZZ_CHECK(c == absl::StatusCode::kInvalidArgument || c == absl::StatusCode::kUnauthenticated ||
             c == absl::StatusCode::kPermissionDenied || c == absl::StatusCode::kResourceExhausted);
  if (c == absl::StatusCode::kUnauthenticated) FUZZ_CHECK(ReasonOf(s).has_value());
  fuzz::CheckTokenNotEchoed(s.message(), token, caller_fields);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  fuzz::SilenceProtobufLogs();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static fuzz::FixedClock* clock = new fuzz::FixedClock();
  static TokenAuthority* tokens = new TokenAuthority(*TokenAuthority::Create(fuzz::kFuzzSecret));
  ClientRegistry registry(ClientRegistry::Options(), clock);
  AccessControl::Options o;
  o.checkin_rate = {1, 1, 10};
  std::unique_ptr<AccessControl> open =
      *AccessControl::Create(o, *tokens, nullptr, &registry, clock);
  o.require_client_cert = true;
  std::unique_ptr<AccessControl> mtls =
      *AccessControl::Create(o, *tokens, nullptr, &registry, clock);

  fuzz::Records in(data, size);
  const absl::string_view request_bytes = in.Next();
  const absl::string_view authorization = in.Next();
  const std::string cert(in.Next());
  proto::CheckInRequest request;
  if (!request.ParseFromArray(request_bytes.data(), static_cast<int>(request_bytes.size()))) {
    return 0;
  }
  absl::StatusOr<std::string> bearer = ParseBearer(authorization);
  if (!bearer.ok()) {
    CheckRefusal(bearer.status(), authorization, {request_bytes, cert});
    return 0;
  }
  for (AccessControl* acl : {open.get(), mtls.get()}) {
    absl::StatusOr<std::string> caller = acl->Authenticate(PeerCredentials{cert, *bearer, "x"});
    if (!caller.ok()) {
      CheckRefusal(caller.status(), *bearer, {request_bytes, cert});
      continue;
    }
    FUZZ_CHECK(IsValidClientId(*caller));
    if (acl == mtls.get()) {
      FUZZ_CHECK(*caller == cert);
    } else {
      absl::StatusOr<SessionToken> s = tokens->VerifySession(*bearer, fuzz::FuzzNow());
      FUZZ_CHECK(s.ok());
      FUZZ_CHECK(s->client_id == *caller);
      FUZZ_CHECK(tokens->MintSession(*s) == *bearer);
    }
    absl::Status bound = CheckClientBinding(*caller, request.client_id(), "CheckIn");
    FUZZ_CHECK(bound.ok() == (*caller == request.client_id()));
    if (!bound.ok()) {
      // The message names the claimed id, which the caller chose; only the code is checked.
      FUZZ_CHECK(bound.code() == absl::StatusCode::kPermissionDenied);
      continue;
    }
    if (absl::Status v = ValidateCheckInRequest(request); !v.ok()) {
      FUZZ_CHECK(v.code() == absl::StatusCode::kInvalidArgument);  // names the caller's own id
      continue;
    }
    FUZZ_CHECK(request.have_model_version() >= -1);
    absl::Status first = acl->AdmitCheckIn(*caller);
    absl::Status second = acl->AdmitCheckIn(*caller);
    FUZZ_CHECK(first.ok());  // each ACL has its own buckets; one caller per input
    FUZZ_CHECK(second.code() == absl::StatusCode::kResourceExhausted);
  }
  return 0;
}
