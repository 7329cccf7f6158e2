#include "server/access_control.h"

#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "common/crypto.h"
#include "common/log.h"
#include "common/status_reason.h"
#include "server/request_validation.h"

namespace edgefl::server {

absl::StatusOr<std::unique_ptr<AccessControl>> AccessControl::Create(const Options& options,
                                                                     TokenAuthority tokens,
                                                                     EnrollmentLedger* ledger,
                                                                     ClientRegistry* registry,
                                                                     const Clock* clock) {
  if (options.enrollment_tokens && ledger == nullptr) {
    return absl::InvalidArgumentError("enrollment tokens need a token ledger");
  }
  if (options.session_ttl <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("the session lifetime must be positive");
  }
  return std::unique_ptr<AccessControl>(
      new AccessControl(options, std::move(tokens), ledger, registry, clock));
}

std::unique_ptr<AccessControl> AccessControl::CreateOpen(ClientRegistry* registry,
                                                         const Clock* clock) {
  absl::StatusOr<std::string> key = RandomBytes(32);
  if (!key.ok()) std::abort();  // no randomness: no safe way to sign sessions
  Options options;
  options.join_rate.per_minute = 0;
  options.checkin_rate.per_minute = 0;
  return std::unique_ptr<AccessControl>(
      new AccessControl(options, *TokenAuthority::Create(*key), nullptr, registry, clock));
}

AccessControl::AccessControl(const Options& options, TokenAuthority tokens,
                             EnrollmentLedger* ledger, ClientRegistry* registry, const Clock* clock)
    : options_(options),
      tokens_(std::move(tokens)),
      ledger_(ledger),
      registry_(registry),
      clock_(clock),
      join_limiter_(options.join_rate, clock),
      checkin_limiter_(options.checkin_rate, clock) {}

absl::StatusOr<std::string> AccessControl::CertificateId(const PeerCredentials& creds) const {
  if (creds.cert_identity.empty()) {
    // The TLS layer requires a verified certificate, so this means a misconfigured transport.
    return TokenStatus(TokenError::kMissing, "no verified client certificate");
  }
  if (!IsValidClientId(creds.cert_identity)) {
    return TokenStatus(
        TokenError::kMalformed,
        absl::StrCat("the client certificate names '", PrintableId(creds.cert_identity),
                     "', which is not a usable client id (1-128 of "
                     "[A-Za-z0-9._:@-])"));
  }
  return creds.cert_identity;
}

absl::StatusOr<SessionToken> AccessControl::VerifySession(const std::string& bearer) {
  if (!TokenAuthority::IsSessionText(bearer)) {
    return TokenStatus(TokenError::kMalformed,
                       "expected a session token (the one Join returned); Join first");
  }
  absl::StatusOr<SessionToken> session = tokens_.VerifySession(bearer, clock_->Now());
  if (!session.ok()) return session.status();
  if (!IsValidClientId(session->client_id)) {
    return TokenStatus(TokenError::kMalformed, "session token names an unusable client id");
  }
  if (!session->token_id.empty() && ledger_ != nullptr && ledger_->IsRevoked(session->token_id)) {
    return TokenStatus(TokenError::kRevoked,
                       absl::StrCat("the enrollment token ", session->token_id,
                                    " behind this session has been revoked"));
  }
  return session;
}

absl::StatusOr<AccessControl::JoinGrant> AccessControl::Join(const PeerCredentials& creds,
                                                             const proto::DeviceProfile& profile) {
  std::string cert_id;
  if (options_.require_client_cert) {
    absl::StatusOr<std::string> id = CertificateId(creds);
    if (!id.ok()) return id.status();
    cert_id = *id;
  }
  const std::string key =
      cert_id.empty() ? absl::StrCat("ip:", PeerHost(creds.peer)) : absl::StrCat("cert:", cert_id);
  if (absl::Status s = join_limiter_.Admit(key, "Join"); !s.ok()) return s;

  JoinGrant grant;
  std::string fixed_id = cert_id;
  std::string token_id;
  bool consumed = false;
  if (!creds.bearer.empty() && TokenAuthority::IsSessionText(creds.bearer)) {
    // Renewal (or a re-join after a server restart) with the session a Join issued.
    absl::StatusOr<SessionToken> session = VerifySession(creds.bearer);
    if (!session.ok()) return session.status();
    if (!cert_id.empty() && session->client_id != cert_id) {
      return TokenStatus(TokenError::kForged,
                         "the session token belongs to another client than the certificate");
    }
    fixed_id = session->client_id;
    token_id = session->token_id;
    grant.how = "session renewal";
  } else if (options_.enrollment_tokens) {
    if (creds.bearer.empty()) {
      return TokenStatus(TokenError::kMissing,
                         "this server requires an enrollment token to join (fl-client "
                         "--token_file, or $EDGEFL_ENROLLMENT_TOKEN)");
    }
    if (!TokenAuthority::IsEnrollmentText(creds.bearer)) {
      return TokenStatus(TokenError::kMalformed, "expected an enrollment token");
    }
    absl::StatusOr<EnrollmentToken> token = tokens_.VerifyEnrollment(creds.bearer, clock_->Now());
    if (!token.ok()) return token.status();
    if (absl::Status s = ledger_->ConsumeUse(token->id, token->max_uses); !s.ok()) return s;
    consumed = true;
    token_id = token->id;
    grant.how = absl::StrCat("enrollment token ", token->id, " (use ", ledger_->uses(token->id),
                             " of ", token->max_uses, ")");
  } else {
    grant.how = cert_id.empty() ? "open enrollment" : "client certificate";
  }

  if (fixed_id.empty()) {
    absl::StatusOr<std::string> id = registry_->Join(profile);
    if (!id.ok()) {
      if (consumed) ledger_->RefundUse(token_id);
      return id.status();
    }
    fixed_id = *id;
  } else if (absl::Status s = registry_->JoinAs(fixed_id, profile); !s.ok()) {
    if (consumed) ledger_->RefundUse(token_id);
    return s;
  }
  grant.client_id = fixed_id;
  grant.session_expires = absl::FromUnixSeconds(
      absl::ToUnixSeconds(clock_->Now() + options_.session_ttl));  // whole seconds, as minted
  grant.session_token = tokens_.MintSession({fixed_id, token_id, grant.session_expires});
  return grant;
}

absl::StatusOr<std::string> AccessControl::Authenticate(const PeerCredentials& creds) {
  if (options_.require_client_cert) {
    absl::StatusOr<std::string> id = CertificateId(creds);
    if (!id.ok()) return id.status();
    if (options_.enrollment_tokens) {
      // Both factors: the certificate and the session its enrollment paid for.
      if (creds.bearer.empty()) {
        return TokenStatus(TokenError::kMissing, "no session token: Join first");
      }
      absl::StatusOr<SessionToken> session = VerifySession(creds.bearer);
      if (!session.ok()) return session.status();
      if (session->client_id != *id) {
        return TokenStatus(TokenError::kForged,
                           "the session token belongs to another client than the certificate");
      }
    }
    return id;
  }
  if (creds.bearer.empty()) {
    return TokenStatus(TokenError::kMissing,
                       "no credentials: Join first and send its session token as "
                       "'authorization: Bearer <token>'");
  }
  absl::StatusOr<SessionToken> session = VerifySession(creds.bearer);
  if (!session.ok()) return session.status();
  return session->client_id;
}

absl::Status AccessControl::AdmitCheckIn(const std::string& client_id) {
  return checkin_limiter_.Admit(client_id, "CheckIn");
}

absl::Status AccessControl::ChargeUpdateBytes(const std::string& client_id, int64_t round,
                                              uint64_t bytes) {
  const uint64_t cap = options_.max_update_bytes_per_round;
  if (cap == 0) return absl::OkStatus();
  absl::MutexLock lock(&mu_);
  // Forget older rounds once the map grows (it holds at most the registered clients anyway).
  if (update_bytes_.size() > 10000) {
    absl::erase_if(update_bytes_, [round](const auto& kv) { return kv.second.round < round; });
  }
  Usage& u = update_bytes_[client_id];
  if (u.round != round) u = Usage{round, 0};
  if (bytes > cap || u.bytes > cap - bytes) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "client ", client_id, " would send ", u.bytes + bytes, " update bytes in round ", round,
        "; the cap is ", cap, " per round (--max_update_bytes_per_round)"));
  }
  u.bytes += bytes;
  return absl::OkStatus();
}

}  // namespace edgefl::server
