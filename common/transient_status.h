// Which RPC failures a device retries: the server or the network may answer differently a moment
// later (or did accept an upload whose answer was lost: the server recognises the repeat,
// server/round_scheduler.h IsRepeatOfAccepted). fl-client and fl-loadgen share this one rule.
#ifndef EDGEFL_COMMON_TRANSIENT_STATUS_H_
#define EDGEFL_COMMON_TRANSIENT_STATUS_H_

#include "absl/status/status.h"

namespace edgefl {

inline bool IsTransient(const absl::Status& s) {
  return absl::IsUnavailable(s) || absl::IsDeadlineExceeded(s) || absl::IsCancelled(s) ||
         absl::IsDataLoss(s) || absl::IsAborted(s) || absl::IsResourceExhausted(s) ||
         absl::IsInternal(s) || absl::IsUnknown(s);
}

}  // namespace edgefl

#endif  // EDGEFL_COMMON_TRANSIENT_STATUS_H_
