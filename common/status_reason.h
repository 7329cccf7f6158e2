// A short machine-readable reason attached to an absl::Status, for counting rejections in
// metrics.jsonl ("rejected": {"unauthenticated_expired": 2, ...}) without parsing messages.
#ifndef EDGEFL_COMMON_STATUS_REASON_H_
#define EDGEFL_COMMON_STATUS_REASON_H_

#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/cord.h"
#include "absl/strings/numbers.h"
#include "absl/time/time.h"
#include "absl/strings/string_view.h"
#include "absl/types/optional.h"

namespace edgefl {

inline constexpr char kReasonPayloadUrl[] = "type.edgefl/reason";

// Returns `status` with `reason` attached (no-op for OK).
inline absl::Status WithReason(absl::Status status, absl::string_view reason) {
  if (!status.ok()) status.SetPayload(kReasonPayloadUrl, absl::Cord(reason));
  return status;
}

// The reason attached by WithReason, if any.
inline std::optional<std::string> ReasonOf(const absl::Status& status) {
  absl::optional<absl::Cord> payload = status.GetPayload(kReasonPayloadUrl);
  if (!payload) return std::nullopt;
  return std::string(*payload);
}

inline constexpr char kRetryAfterPayloadUrl[] = "type.edgefl/retry_after_ms";

// Returns `status` carrying the server's hint of when to try again (no-op for OK): the gRPC
// trailer "retry-after-ms" of a refused upload, as CoordinatorClient reads it.
inline absl::Status WithRetryAfter(absl::Status status, absl::Duration after) {
  if (!status.ok()) {
    status.SetPayload(kRetryAfterPayloadUrl, absl::Cord(std::to_string(absl::ToInt64Milliseconds(after))));
  }
  return status;
}

// The hint attached by WithRetryAfter, if any (and sane: 0 ms .. 1 hour).
inline std::optional<absl::Duration> RetryAfterOf(const absl::Status& status) {
  absl::optional<absl::Cord> payload = status.GetPayload(kRetryAfterPayloadUrl);
  if (!payload) return std::nullopt;
  int64_t ms = 0;
  if (!absl::SimpleAtoi(std::string(*payload), &ms) || ms < 0 || ms > 3600 * 1000) return std::nullopt;
  return absl::Milliseconds(ms);
}

// The status as text for logs, without payloads.
inline std::string StatusText(const absl::Status& status) {
  return status.ToString(absl::StatusToStringMode::kWithNoExtraData);
}

}  // namespace edgefl

#endif  // EDGEFL_COMMON_STATUS_REASON_H_
