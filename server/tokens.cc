#include "server/tokens.h"

#include <cstdlib>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/crypto.h"
#include "common/file_util.h"
#include "common/sha256.h"
#include "common/status_reason.h"

namespace edgefl::server {
namespace {

constexpr absl::string_view kEnrollPrefix = "eft1";
constexpr absl::string_view kSessionPrefix = "efs1";
constexpr size_t kIdHexChars = 16;
constexpr size_t kMacHexChars = 2 * kHmacSha256Bytes;
constexpr size_t kMaxClientIdBytes = 256;

bool IsLowerHex(absl::string_view s) {
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

// A canonical decimal: no sign, no leading zeros, at most `max_digits` digits.
bool ParseCanonicalDecimal(absl::string_view s, size_t max_digits, int64_t* out) {
  if (s.empty() || s.size() > max_digits || (s.size() > 1 && s[0] == '0')) return false;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
  }
  return absl::SimpleAtoi(s, out);
}

std::string MacHex(absl::string_view key, absl::string_view body) {
  return ToHex(HmacSha256(key, body));
}

// Splits "<body>.<mac>" and checks the MAC in constant time. Returns the body's fields.
absl::StatusOr<std::vector<absl::string_view>> SplitAndAuthenticate(absl::string_view text,
                                                                    absl::string_view prefix,
                                                                    absl::string_view key,
                                                                    absl::string_view kind) {
  if (text.size() > kMaxTokenBytes) {
    return TokenStatus(TokenError::kMalformed, absl::StrCat("malformed ", kind, ": too long"));
  }
  std::vector<absl::string_view> parts = absl::StrSplit(text, '.');
  if (parts.size() != 5 || parts[0] != prefix) {
    return TokenStatus(TokenError::kMalformed, absl::StrCat("malformed ", kind));
  }
  const absl::string_view mac = parts[4];
  if (mac.size() != kMacHexChars || !IsLowerHex(mac)) {
    return TokenStatus(TokenError::kMalformed, absl::StrCat("malformed ", kind, " (MAC)"));
  }
  const absl::string_view body = text.substr(0, text.size() - mac.size() - 1);
  if (!ConstantTimeEquals(MacHex(key, body), mac)) {
    return TokenStatus(TokenError::kForged,
                       absl::StrCat(kind, " is not valid for this server (bad signature)"));
  }
  parts.pop_back();
  return parts;
}

int64_t UnixSeconds(absl::Time t) { return absl::ToUnixSeconds(t); }

}  // namespace

absl::string_view TokenErrorName(TokenError e) {
  switch (e) {
    case TokenError::kMalformed:
      return "malformed";
    case TokenError::kForged:
      return "forged";
    case TokenError::kExpired:
      return "expired";
    case TokenError::kRevoked:
      return "revoked";
    case TokenError::kUsedUp:
      return "used_up";
    case TokenError::kMissing:
      return "missing";
  }
  return "malformed";
}

absl::Status TokenStatus(TokenError e, absl::string_view message) {
  return WithReason(absl::UnauthenticatedError(message),
                    absl::StrCat("unauthenticated_", TokenErrorName(e)));
}

bool TokenErrorOf(const absl::Status& status, TokenError* e) {
  std::optional<std::string> reason = ReasonOf(status);
  if (!reason) return false;
  absl::string_view name = *reason;
  if (!absl::ConsumePrefix(&name, "unauthenticated_")) return false;
  for (TokenError candidate : {TokenError::kMalformed, TokenError::kForged, TokenError::kExpired,
                               TokenError::kRevoked, TokenError::kUsedUp, TokenError::kMissing}) {
    if (TokenErrorName(candidate) == name) {
      *e = candidate;
      return true;
    }
  }
  return false;
}

absl::StatusOr<TokenAuthority> TokenAuthority::Create(absl::string_view secret) {
  if (secret.size() < kMinSecretBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("the server secret is ", secret.size(), " bytes; at least ", kMinSecretBytes,
                     " are needed (make one with: fl-server token new-secret --secret_file F)"));
  }
  return TokenAuthority(HmacSha256(secret, "edgefl enrollment token v1"),
                        HmacSha256(secret, "edgefl session token v1"));
}

absl::StatusOr<std::string> TokenAuthority::NewTokenId() {
  absl::StatusOr<std::string> raw = RandomBytes(kIdHexChars / 2);
  if (!raw.ok()) return raw.status();
  return ToHex(*raw);
}

bool TokenAuthority::IsEnrollmentText(absl::string_view text) {
  return absl::StartsWith(text, absl::StrCat(kEnrollPrefix, "."));
}

bool TokenAuthority::IsSessionText(absl::string_view text) {
  return absl::StartsWith(text, absl::StrCat(kSessionPrefix, "."));
}

std::string TokenAuthority::MintEnrollment(const EnrollmentToken& token) const {
  const std::string body = absl::StrCat(kEnrollPrefix, ".", token.id, ".",
                                        UnixSeconds(token.expires), ".", token.max_uses);
  return absl::StrCat(body, ".", MacHex(enroll_key_, body));
}

std::string TokenAuthority::MintSession(const SessionToken& session) const {
  std::string client;
  absl::WebSafeBase64Escape(session.client_id, &client);
  const std::string body = absl::StrCat(kSessionPrefix, ".", client, ".",
                                        session.token_id.empty() ? "-" : session.token_id, ".",
                                        UnixSeconds(session.expires));
  return absl::StrCat(body, ".", MacHex(session_key_, body));
}

absl::StatusOr<EnrollmentToken> TokenAuthority::VerifyEnrollment(absl::string_view text,
                                                                 absl::Time now) const {
  absl::StatusOr<std::vector<absl::string_view>> parts =
      SplitAndAuthenticate(text, kEnrollPrefix, enroll_key_, "enrollment token");
  if (!parts.ok()) return parts.status();
  EnrollmentToken token;
  const absl::string_view id = (*parts)[1];
  int64_t expires = 0;
  if (id.size() != kIdHexChars || !IsLowerHex(id) ||
      !ParseCanonicalDecimal((*parts)[2], 12, &expires) ||
      !ParseCanonicalDecimal((*parts)[3], 7, &token.max_uses) || token.max_uses < 1 ||
      token.max_uses > kMaxTokenUses) {
    // Authentic but unusable: only a server with this secret could have minted it.
    return TokenStatus(TokenError::kMalformed, "malformed enrollment token (fields)");
  }
  token.id = std::string(id);
  token.expires = absl::FromUnixSeconds(expires);
  if (now >= token.expires) {
    return TokenStatus(TokenError::kExpired,
                       absl::StrCat("enrollment token ", token.id, " expired at ",
                                    absl::FormatTime(token.expires, absl::UTCTimeZone())));
  }
  return token;
}

absl::StatusOr<SessionToken> TokenAuthority::VerifySession(absl::string_view text,
                                                           absl::Time now) const {
  absl::StatusOr<std::vector<absl::string_view>> parts =
      SplitAndAuthenticate(text, kSessionPrefix, session_key_, "session token");
  if (!parts.ok()) return parts.status();
  SessionToken session;
  const absl::string_view token_id = (*parts)[2];
  int64_t expires = 0;
  if (!absl::WebSafeBase64Unescape((*parts)[1], &session.client_id) || session.client_id.empty() ||
      session.client_id.size() > kMaxClientIdBytes ||
      !(token_id == "-" || (token_id.size() == kIdHexChars && IsLowerHex(token_id))) ||
      !ParseCanonicalDecimal((*parts)[3], 12, &expires)) {
    return TokenStatus(TokenError::kMalformed, "malformed session token (fields)");
  }
  session.token_id = token_id == "-" ? "" : std::string(token_id);
  session.expires = absl::FromUnixSeconds(expires);
  if (now >= session.expires) {
    return TokenStatus(
        TokenError::kExpired,
        absl::StrCat("session of client ", session.client_id, " expired at ",
                     absl::FormatTime(session.expires, absl::UTCTimeZone()), "; Join again"));
  }
  return session;
}

absl::StatusOr<std::string> LoadServerSecret(const std::string& path, std::string* source) {
  std::string secret;
  std::string from;
  if (!path.empty()) {
    absl::StatusOr<std::string> text = ReadPrivateFile(path, "server secret file");
    if (!text.ok()) return text.status();
    secret = std::move(*text);
    from = absl::StrCat("file ", path);
  } else if (const char* env = std::getenv(kSecretEnvVar); env != nullptr && *env != '\0') {
    secret = env;
    from = absl::StrCat("$", kSecretEnvVar);
  } else {
    return absl::NotFoundError(
        absl::StrCat("no server secret: pass --secret_file or set $", kSecretEnvVar));
  }
  absl::StripTrailingAsciiWhitespace(&secret);
  if (secret.size() < kMinSecretBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("the server secret from ", from, " is ", secret.size(), " bytes; at least ",
                     kMinSecretBytes,
                     " are needed (make one with: fl-server token new-secret --secret_file F)"));
  }
  if (source != nullptr) *source = from;
  return secret;
}

absl::StatusOr<absl::Duration> ParsePositiveDuration(absl::string_view text) {
  absl::Duration d;
  absl::string_view t = absl::StripAsciiWhitespace(text);
  int64_t days = 0;
  bool ok;
  if (absl::ConsumeSuffix(&t, "d")) {
    ok = absl::SimpleAtoi(t, &days) && days > 0 && days <= 100000;
    d = absl::Hours(24) * days;
  } else {
    ok = absl::ParseDuration(t, &d);
  }
  if (!ok || d <= absl::ZeroDuration() || d == absl::InfiniteDuration()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "invalid duration '", text, "': expected a positive duration like 24h, 90m, 3600s or 7d"));
  }
  return d;
}

}  // namespace edgefl::server
