// A short machine-readable reason attached to an absl::Status, for counting rejections in
// metrics.jsonl ("rejected": {"unauthenticated_expired": 2, ...}) without parsing messages.
#ifndef EDGEFL_COMMON_STATUS_REASON_H_
#define EDGEFL_COMMON_STATUS_REASON_H_

#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/cord.h"
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

// The status as text for logs, without payloads.
inline std::string StatusText(const absl::Status& status) {
  return status.ToString(absl::StatusToStringMode::kWithNoExtraData);
}

}  // namespace edgefl

#endif  // EDGEFL_COMMON_STATUS_REASON_H_
