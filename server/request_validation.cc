#include "server/request_validation.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/chunking.h"
#include "common/status_reason.h"
#include "models/model_spec.h"
#include "server/tokens.h"

namespace edgefl::server {
namespace {

// Sums squares of every entry an update delivers.
class SquareSumSink : public compression::UpdateSink {
 public:
  void Dense(uint64_t, absl::Span<const float> values) override {
    for (float v : values) sum_ += static_cast<double>(v) * v;
  }
  void Sparse(uint64_t, absl::Span<const uint32_t>, absl::Span<const float> values) override {
    for (float v : values) sum_ += static_cast<double>(v) * v;
  }
  double sum() const { return sum_; }

 private:
  double sum_ = 0;
};

}  // namespace

bool IsValidClientId(absl::string_view id) {
  if (id.empty() || id.size() > kMaxClientIdBytes) return false;
  for (char c : id) {
    if (!(absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == ':' ||
          c == '@' || c == '-')) {
      return false;
    }
  }
  return true;
}

std::string PrintableId(absl::string_view id) { return absl::CHexEscape(id.substr(0, 64)); }

namespace {
bool ProfileInRange(const proto::DeviceProfile& p) {
  return p.arch().size() <= 64 && p.hostname().size() <= 256 && p.accelerator().size() <= 64 &&
         p.cores() >= 0 &&
         (!p.has_battery_percent() || (p.battery_percent() >= 0 && p.battery_percent() <= 100)) &&
         (!p.has_temperature_c() || std::isfinite(p.temperature_c())) &&
         (!p.has_load_per_core() || (std::isfinite(p.load_per_core()) && p.load_per_core() >= 0));
}
}  // namespace

absl::Status ValidateJoinRequest(const proto::JoinRequest& request) {
  if (!ProfileInRange(request.profile()) ||
      request.requested_client_id().size() > kMaxClientIdBytes) {
    return absl::InvalidArgumentError("device profile has out-of-range fields");
  }
  return absl::OkStatus();
}

absl::Status ValidateCheckInRequest(const proto::CheckInRequest& request) {
  if (!IsValidClientId(request.client_id())) {
    return absl::InvalidArgumentError(
        absl::StrCat("malformed client id '", PrintableId(request.client_id()), "'"));
  }
  if (request.have_model_version() < -1) {
    return absl::InvalidArgumentError(
        absl::StrCat("have_model_version must be >= -1, got ", request.have_model_version()));
  }
  if (request.has_profile() && !ProfileInRange(request.profile())) {
    return absl::InvalidArgumentError("device profile has out-of-range fields");
  }
  const std::string& reason = request.declined_reason();
  if (reason.size() > 64 || !std::all_of(reason.begin(), reason.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
      })) {
    return absl::InvalidArgumentError(
        absl::StrCat("declined_reason must be at most 64 of [a-z0-9_], got '",
                     PrintableId(reason), "'"));
  }
  if (!reason.empty() && (request.declined_round() < 1 || request.declined_attempt() < 1)) {
    return absl::InvalidArgumentError("a declined task needs declined_round and declined_attempt >= 1");
  }
  return absl::OkStatus();
}

absl::Status CheckClientBinding(absl::string_view authenticated, absl::string_view claimed,
                                absl::string_view what) {
  if (authenticated != claimed) {
    return absl::PermissionDeniedError(absl::StrCat(
        what, " for client '", PrintableId(claimed), "', but the caller is authenticated as '",
        PrintableId(authenticated), "'; a client may only act for itself"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> ParseBearer(absl::string_view value) {
  if (value.empty()) return std::string();
  auto malformed = [](absl::string_view why) {
    return TokenStatus(TokenError::kMalformed,
                       absl::StrCat("malformed authorization metadata: ", why));
  };
  if (value.size() > kMaxTokenBytes + 16) return malformed("too long");
  constexpr absl::string_view kScheme = "bearer ";
  if (value.size() <= kScheme.size() ||
      !absl::EqualsIgnoreCase(value.substr(0, kScheme.size()), kScheme)) {
    return malformed("expected 'Bearer <token>'");
  }
  absl::string_view token = absl::StripAsciiWhitespace(value.substr(kScheme.size()));
  if (token.empty()) return malformed("empty token");
  for (char c : token) {
    if (c <= ' ' || c > '~') return malformed("unexpected characters in the token");
  }
  return std::string(token);
}

std::string PeerHost(absl::string_view peer) {
  absl::string_view p = peer;
  if (absl::ConsumePrefix(&p, "ipv4:")) {
    const size_t colon = p.rfind(':');
    return std::string(colon == absl::string_view::npos ? p : p.substr(0, colon));
  }
  if (absl::ConsumePrefix(&p, "ipv6:")) {
    if (absl::ConsumePrefix(&p, "[")) {
      const size_t close = p.find(']');
      return std::string(close == absl::string_view::npos ? p : p.substr(0, close));
    }
    return std::string(p);
  }
  return std::string(peer);
}

absl::StatusOr<ReportPlan> ValidateReportHeader(const proto::ReportHeader& header,
                                                const ReportLimits& limits,
                                                absl::string_view round_uplink) {
  if (!IsValidClientId(header.client_id())) {
    return absl::InvalidArgumentError(
        absl::StrCat("malformed client id '", PrintableId(header.client_id()), "'"));
  }
  if (absl::Status s = models::CheckSpecMatches(limits.spec, header.spec()); !s.ok()) return s;
  ReportPlan plan;
  plan.max_bytes = limits.dense_bytes;
  // "dense" is raw float32; anything else must be the round's uplink chain.
  plan.dense = header.codec() == "dense";
  if (plan.dense) {
    if (header.total_bytes() != limits.dense_bytes) {
      return absl::InvalidArgumentError(absl::StrCat("a dense update of this model is ",
                                                     limits.dense_bytes, " bytes; header says ",
                                                     header.total_bytes()));
    }
  } else {
    if (header.codec().size() > 256) {
      return absl::InvalidArgumentError("update codec: longer than 256 characters");
    }
    absl::StatusOr<compression::ChainSpec> parsed = compression::ParseChain(header.codec());
    if (!parsed.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("update codec: ", parsed.status().message()));
    }
    plan.chain = *parsed;
    if (plan.chain.ToString() != round_uplink) {
      return absl::InvalidArgumentError(absl::StrCat("update encoded as ", plan.chain.ToString(),
                                                     "; this round takes ", round_uplink));
    }
    plan.max_bytes = compression::MaxEncodedSizeBytes(plan.chain, limits.layout);
    if (header.total_bytes() > plan.max_bytes) {
      return absl::InvalidArgumentError(absl::StrCat("an update encoded as ", round_uplink,
                                                     " is at most ", plan.max_bytes,
                                                     " bytes; header says ", header.total_bytes()));
    }
  }
  if (header.sha256().size() != 32) {
    return absl::InvalidArgumentError(
        absl::StrCat("sha256 must be 32 bytes, got ", header.sha256().size()));
  }
  if (header.num_samples() == 0) {
    return absl::InvalidArgumentError("num_samples must be > 0");
  }
  return plan;
}

absl::StatusOr<double> UpdateL2Norm(const ReportPlan& plan, absl::string_view payload,
                                    absl::Span<const compression::TensorLayout> layout) {
  if (plan.dense) {
    if (payload.size() != plan.max_bytes || payload.size() % sizeof(float) != 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "a dense update of this model is ", plan.max_bytes, " bytes; got ", payload.size()));
    }
    double sum = 0;
    for (size_t off = 0; off < payload.size(); off += sizeof(float)) {
      float v;
      std::memcpy(&v, payload.data() + off, sizeof(float));
      if (!std::isfinite(v)) {
        return absl::InvalidArgumentError(
            absl::StrCat("update value ", off / sizeof(float), " is not finite"));
      }
      sum += static_cast<double>(v) * v;
    }
    return std::sqrt(sum);
  }
  compression::DecodeOptions options;
  options.expected_chain = plan.chain;
  SquareSumSink sink;
  if (absl::Status s = compression::DecodeUpdate(payload, layout, &sink, options); !s.ok()) {
    return s;
  }
  return std::sqrt(sink.sum());
}

}  // namespace edgefl::server
