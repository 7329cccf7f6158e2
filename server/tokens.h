// Enrollment tokens and session tokens: minted and verified with HMAC-SHA256 under keys derived
// from the server secret. Pure: no I/O, no clock of its own (callers pass `now`), so fuzzers and
// tests drive it directly. Use counts and revocation live in EnrollmentLedger.
//
// Formats (ASCII, '.'-separated; <mac> is 64 lowercase hex chars):
//   enrollment: "eft1.<id>.<expires>.<uses>.<mac>"
//       id       16 lowercase hex chars (64 random bits); names the token in use counts,
//                revocation lists and logs; not secret
//       expires  unix seconds (decimal); the token is refused from that second on
//       uses     how many Joins it may pay for, 1..1000000 (decimal)
//       mac      HMAC-SHA256(K_enroll, "eft1.<id>.<expires>.<uses>")
//   session:    "efs1.<client>.<token_id>.<expires>.<mac>"
//       client   the client id, web-safe base64 without padding
//       token_id the enrollment token that paid for the session, or "-" (mutual TLS or open
//                enrollment); revoking that token also ends its sessions
//       mac      HMAC-SHA256(K_session, "efs1.<client>.<token_id>.<expires>")
//   K_enroll = HMAC-SHA256(secret, "edgefl enrollment token v1"),
//   K_session = HMAC-SHA256(secret, "edgefl session token v1") (separate keys: one kind of token
//   can never be passed off as the other).
#ifndef EDGEFL_SERVER_TOKENS_H_
#define EDGEFL_SERVER_TOKENS_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace edgefl::server {

// The shortest accepted server secret (bytes, after trimming trailing whitespace).
inline constexpr size_t kMinSecretBytes = 32;
inline constexpr int64_t kMaxTokenUses = 1000000;
inline constexpr size_t kMaxTokenBytes = 1024;  // longer bearer values are refused unparsed

struct EnrollmentToken {
  std::string id;      // 16 hex chars
  absl::Time expires;  // whole seconds
  int64_t max_uses = 1;
};

struct SessionToken {
  std::string client_id;
  std::string token_id;  // "" when no enrollment token paid for it
  absl::Time expires;    // whole seconds
};

// Why a token was refused; also the metrics reason ("unauthenticated_<name>").
enum class TokenError { kMalformed, kForged, kExpired, kRevoked, kUsedUp, kMissing };
absl::string_view TokenErrorName(TokenError e);  // "malformed", "forged", ...

// An UNAUTHENTICATED status for `e` with `message` and the reason "unauthenticated_<name>"
// attached (common/status_reason.h). Messages never contain token text.
absl::Status TokenStatus(TokenError e, absl::string_view message);
// Sets *e and returns true for a status made by TokenStatus; false otherwise.
bool TokenErrorOf(const absl::Status& status, TokenError* e);

// Thread-safe (immutable after construction).
class TokenAuthority {
 public:
  // INVALID_ARGUMENT if the secret is shorter than kMinSecretBytes.
  static absl::StatusOr<TokenAuthority> Create(absl::string_view secret);

  // A fresh random token id (16 hex chars). INTERNAL if the CSPRNG fails.
  static absl::StatusOr<std::string> NewTokenId();

  // Token text for `token`. Expiry is truncated to whole seconds.
  std::string MintEnrollment(const EnrollmentToken& token) const;
  std::string MintSession(const SessionToken& session) const;

  // Parses and authenticates; UNAUTHENTICATED (TokenStatus) when malformed, forged (MAC
  // mismatch, compared in constant time) or expired at `now`. The MAC is checked before any
  // field is interpreted beyond syntax, so a forged token learns nothing about expiry.
  absl::StatusOr<EnrollmentToken> VerifyEnrollment(absl::string_view text, absl::Time now) const;
  absl::StatusOr<SessionToken> VerifySession(absl::string_view text, absl::Time now) const;

  // Whether `text` looks like an enrollment / a session token (prefix only; no verification).
  static bool IsEnrollmentText(absl::string_view text);
  static bool IsSessionText(absl::string_view text);

 private:
  TokenAuthority(std::string enroll_key, std::string session_key)
      : enroll_key_(std::move(enroll_key)), session_key_(std::move(session_key)) {}
  std::string enroll_key_;
  std::string session_key_;
};

// Reads the server secret: from `path` when non-empty (ReadPrivateFile: group/other access is
// refused), else from the environment variable EDGEFL_SERVER_SECRET. Trailing whitespace is
// trimmed. NOT_FOUND when neither is given; INVALID_ARGUMENT when shorter than kMinSecretBytes.
// `source` (optional) receives a description for logs ("file F" / "$EDGEFL_SERVER_SECRET"),
// never the secret.
absl::StatusOr<std::string> LoadServerSecret(const std::string& path, std::string* source);
inline constexpr char kSecretEnvVar[] = "EDGEFL_SERVER_SECRET";

// Parses a duration like "24h", "90m", "3600s", "7d" (absl::ParseDuration plus a "d" suffix).
// INVALID_ARGUMENT unless positive and finite.
absl::StatusOr<absl::Duration> ParsePositiveDuration(absl::string_view text);

}  // namespace edgefl::server

#endif  // EDGEFL_SERVER_TOKENS_H_
