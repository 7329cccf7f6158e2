// Who may call the coordinator, as whom, and how much: authenticates every call (client
// certificate, enrollment token, session token), decides the caller's client id, issues session
// tokens on Join, and enforces per-client rate limits and the per-round update byte cap.
//
// Modes (combinable):
//   mutual TLS (require_client_cert): the transport has verified the client certificate; the
//       client id is the certificate's identity (its first Subject Alternative Name, or its
//       Common Name when it has none). Session tokens are issued but not required.
//   enrollment tokens (enrollment_tokens): a first Join must carry an enrollment token, which
//       pays one of its uses (EnrollmentLedger); later Joins renew with the session token.
//   open enrollment (neither): any caller may Join and gets a random id.
// Without mutual TLS every CheckIn and Report must carry a valid session token, and the client
// id is the one it is bound to (so nobody can act for a client whose session they do not hold).
#ifndef EDGEFL_SERVER_ACCESS_CONTROL_H_
#define EDGEFL_SERVER_ACCESS_CONTROL_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "protos/edgefl.pb.h"
#include "server/client_registry.h"
#include "server/enrollment_ledger.h"
#include "server/rate_limiter.h"
#include "server/tokens.h"

namespace edgefl::server {

// What the transport tells about a caller.
struct PeerCredentials {
  // The identity of a verified TLS client certificate ("" when the peer presented none).
  std::string cert_identity;
  // The "authorization: Bearer" token ("" when absent), as returned by ParseBearer.
  std::string bearer;
  // The transport address (grpc peer string), for rate-limit keys and logs.
  std::string peer;
};

class AccessControl {
 public:
  struct Options {
    bool require_client_cert = false;  // mutual TLS: ids come from certificates
    bool enrollment_tokens = false;    // a first Join needs an enrollment token
    absl::Duration session_ttl = absl::Hours(24);
    // Join calls per peer host (per certificate identity under mutual TLS).
    RateLimiter::Options join_rate = {30, 30, 100000};
    // CheckIn calls per client.
    RateLimiter::Options checkin_rate = {60, 30, 100000};
    // Update bytes a client may announce per round over all its Report attempts; 0 = no cap.
    uint64_t max_update_bytes_per_round = 0;
  };

  // `tokens` signs sessions and verifies enrollment tokens; `ledger` is required (non-null) iff
  // options.enrollment_tokens. `registry`, `ledger` and `clock` must outlive this object.
  // INVALID_ARGUMENT for a missing ledger.
  static absl::StatusOr<std::unique_ptr<AccessControl>> Create(const Options& options,
                                                               TokenAuthority tokens,
                                                               EnrollmentLedger* ledger,
                                                               ClientRegistry* registry,
                                                               const Clock* clock);
  // Open enrollment with a random per-process session key and no limits (tests, and callers
  // that construct a CoordinatorService without access control).
  static std::unique_ptr<AccessControl> CreateOpen(ClientRegistry* registry, const Clock* clock);

  struct JoinGrant {
    std::string client_id;
    std::string session_token;
    absl::Time session_expires;
    std::string how;  // for logs: "enrollment token <id>", "session renewal", "certificate", ...
  };
  // Authenticates a Join, registers the client and issues its session. Errors:
  // RESOURCE_EXHAUSTED (rate limit, registry full); UNAUTHENTICATED with a reason
  // (common/status_reason.h: unauthenticated_missing / malformed / forged / expired / revoked /
  // used_up) for a missing or bad credential; UNAVAILABLE when token uses cannot be recorded.
  // A use of an enrollment token is recorded (and persisted) before OK, and given back if
  // registration fails.
  absl::StatusOr<JoinGrant> Join(const PeerCredentials& creds, const proto::DeviceProfile& profile);

  // Authenticates a CheckIn or Report and returns the caller's client id. UNAUTHENTICATED (with a
  // reason) when the credential is missing, forged, expired or revoked.
  absl::StatusOr<std::string> Authenticate(const PeerCredentials& creds);

  // Takes one CheckIn from `client_id`'s bucket; RESOURCE_EXHAUSTED past the rate.
  absl::Status AdmitCheckIn(const std::string& client_id);

  // Charges `bytes` to `client_id` in `round`; RESOURCE_EXHAUSTED (charging nothing) when the
  // client's total for the round would exceed max_update_bytes_per_round.
  absl::Status ChargeUpdateBytes(const std::string& client_id, int64_t round, uint64_t bytes);

  const Options& options() const { return options_; }

 private:
  AccessControl(const Options& options, TokenAuthority tokens, EnrollmentLedger* ledger,
                ClientRegistry* registry, const Clock* clock);
  absl::StatusOr<std::string> CertificateId(const PeerCredentials& creds) const;
  // Verifies a session token and that its enrollment token is not revoked.
  absl::StatusOr<SessionToken> VerifySession(const std::string& bearer);

  const Options options_;
  const TokenAuthority tokens_;
  EnrollmentLedger* const ledger_;
  ClientRegistry* const registry_;
  const Clock* const clock_;
  RateLimiter join_limiter_;
  RateLimiter checkin_limiter_;

  absl::Mutex mu_;
  struct Usage {
    int64_t round = -1;
    uint64_t bytes = 0;
  };
  absl::flat_hash_map<std::string, Usage> update_bytes_ ABSL_GUARDED_BY(mu_);
};

}  // namespace edgefl::server

#endif  // EDGEFL_SERVER_ACCESS_CONTROL_H_
