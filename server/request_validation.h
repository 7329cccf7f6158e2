// Pure checks of what clients send: request bodies, credentials metadata, report headers and
// report payloads. No gRPC, no I/O, no shared state: CoordinatorService calls these, and so do the
// fuzzers in server/fuzz/ (which is why they live apart from the service).
#ifndef EDGEFL_SERVER_REQUEST_VALIDATION_H_
#define EDGEFL_SERVER_REQUEST_VALIDATION_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "compression/chain.h"
#include "compression/update_codec.h"
#include "protos/edgefl.pb.h"

namespace edgefl::server {

inline constexpr size_t kMaxClientIdBytes = 128;

// Client ids are 1..kMaxClientIdBytes characters of [A-Za-z0-9._:@-] (what registry ids and
// certificate names use); anything else is refused before it reaches a log or a map.
bool IsValidClientId(absl::string_view id);
// The id, escaped and cut to 64 chars, safe to put into a message or a log line.
std::string PrintableId(absl::string_view id);

// INVALID_ARGUMENT for out-of-range profile fields (oversized strings, negative cores).
absl::Status ValidateJoinRequest(const proto::JoinRequest& request);
// INVALID_ARGUMENT for a malformed client id or a model version below -1.
absl::Status ValidateCheckInRequest(const proto::CheckInRequest& request);

// PERMISSION_DENIED unless `claimed` (a client id from a request body) is the caller's
// `authenticated` id: a client may only act for itself.
absl::Status CheckClientBinding(absl::string_view authenticated, absl::string_view claimed,
                                absl::string_view what);

// The token of an "authorization" metadata value "Bearer <token>" (scheme case-insensitive).
// "" when `value` is empty; UNAUTHENTICATED (reason unauthenticated_malformed) for another
// scheme, an empty or oversized token, or characters outside printable ASCII.
absl::StatusOr<std::string> ParseBearer(absl::string_view value);

// "ipv4:10.0.0.7:5123" -> "10.0.0.7", "ipv6:[::1]:5123" -> "::1", anything else unchanged.
std::string PeerHost(absl::string_view peer);

// What a report header is checked against.
struct ReportLimits {
  proto::ModelSpec spec;
  std::vector<compression::TensorLayout> layout;  // LayoutOf(spec)
  uint64_t dense_bytes = 0;                       // 4 * parameters
};

// How to receive and decode the payload that follows a valid header.
struct ReportPlan {
  bool dense = true;
  compression::ChainSpec chain;  // the parsed uplink chain when !dense
  uint64_t max_bytes = 0;        // the largest payload the header may announce
};

// Checks a report header's content against the model and the round's uplink chain (canonical
// text, "dense" for raw float32): a valid client id, the exact tensor spec, a codec that parses
// and equals the round's, an announced size that fits the codec, a 32-byte digest and
// num_samples > 0. INVALID_ARGUMENT naming the problem. Round, attempt, version and selection
// are the scheduler's business (RoundScheduler::CheckReport).
absl::StatusOr<ReportPlan> ValidateReportHeader(const proto::ReportHeader& header,
                                                const ReportLimits& limits,
                                                absl::string_view round_uplink);

// Checks a fully received payload under `plan` and returns the update's L2 norm (of the decoded
// delta, accumulated in double). Dense: the size must be dense_bytes and every value finite;
// encoded: compression::ValidateUpdate plus a decode pass. INVALID_ARGUMENT otherwise.
absl::StatusOr<double> UpdateL2Norm(const ReportPlan& plan, absl::string_view payload,
                                    absl::Span<const compression::TensorLayout> layout);

}  // namespace edgefl::server

#endif  // EDGEFL_SERVER_REQUEST_VALIDATION_H_
