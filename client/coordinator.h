// What the device loop needs from the coordinator: the four calls of the wire contract and the
// session they share. CoordinatorClient (coordinator_client.h) implements it over gRPC; tests
// implement it in memory (device_runtime_test.cc), so the loop runs without processes.
#ifndef EDGEFL_CLIENT_COORDINATOR_H_
#define EDGEFL_CLIENT_COORDINATOR_H_

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "protos/edgefl.pb.h"

namespace edgefl::client {

// Implementations must be safe to call from one thread at a time (the device loop); the session
// accessors may be called from any thread.
class Coordinator {
 public:
  struct CheckInResult {
    // kFinalModel: the federation is finished and `payload` is its final model (only when asked
    // for with want_final_model).
    enum class Kind { kIdle, kFinished, kTask, kFinalModel };
    Kind kind = Kind::kIdle;
    proto::Task task;
    std::string payload;      // the model, verified against task.sha256()
    uint64_t bytes_down = 0;  // payload bytes received
  };

  virtual ~Coordinator() = default;

  // Errors are the server's status: NOT_FOUND for an unknown client (the server restarted),
  // UNAUTHENTICATED for a refused credential (expired or revoked session), UNAVAILABLE when the
  // server is unreachable, DEADLINE_EXCEEDED, FAILED_PRECONDITION for a transport that retrying
  // cannot fix (TLS), DATA_LOSS for a model that fails its digest.
  //
  // Join registers the device and keeps the session it returns (session_token/session_expires)
  // for later calls; it presents the held session when there is one, else the enrollment token.
  virtual absl::StatusOr<proto::JoinResponse> Join(const proto::JoinRequest& request) = 0;
  // Long-polls for work for at most `timeout`; a task comes with its (verified) model download.
  // `extras` carries the request's optional fields (the refreshed profile, a declined task); its
  // client_id, have_model_version and want_final_model are ignored.
  virtual absl::StatusOr<CheckInResult> CheckIn(const std::string& client_id, int64_t have_version,
                                                absl::Duration timeout, bool want_final_model,
                                                const proto::CheckInRequest& extras) = 0;
  // For shutdown, from any thread: ends a CheckIn in flight on another thread at once (its long
  // poll would otherwise hold the caller for up to the server's poll), and makes every later
  // CheckIn return CANCELLED without calling the server. Report and Join are left alone: they
  // are bounded, and a report in flight is worth finishing. The default does nothing (in-memory
  // coordinators return at once anyway).
  virtual void CancelCheckIns() {}
  // Uploads one update. `header.total_bytes` and `header.sha256` are filled in from `payload`.
  // The call's deadline is `deadline` (or later); `*bytes_up` (if not null) receives the bytes
  // sent. FAILED_PRECONDITION / PERMISSION_DENIED / INVALID_ARGUMENT: the update was refused.
  virtual absl::StatusOr<proto::ReportResponse> Report(proto::ReportHeader header,
                                                       std::string_view payload,
                                                       absl::Time deadline, uint64_t* bytes_up) = 0;

  // ---- the session (thread-safe)
  // Installs a session (e.g. one saved across a restart of the client); "" clears it.
  virtual void SetSession(std::string token, absl::Time expires) = 0;
  virtual std::string session_token() const = 0;
  virtual absl::Time session_expires() const = 0;
};

// The largest model a device accepts (CoordinatorClient::Options::max_model_bytes' default).
inline constexpr uint64_t kMaxModelBytes = 2ULL << 30;

// The deadline of a CheckIn after `join`: the server's long poll, 15 s of margin, and the
// model's dense size (JoinResponse.model_bytes) at `min_download_bytes_per_second`, since the
// download runs inside the same call as the poll. A poll answered late in its hold, with many
// devices downloading at once, must not lose a half-done download to the deadline (1,000
// devices on one loopback each downloaded fedavg_cnn twice with the poll + 30 s alone).
// What the server announces is not trusted beyond sense: the poll counts at most an hour and the
// size at most kMaxModelBytes (a larger model is refused anyway), so a broken or hostile server
// cannot make the deadline unbounded (2 GiB at 128 KiB/s: 4.6 h).
inline constexpr double kDefaultMinDownloadBytesPerSecond = 128 * 1024;
// A minimum download rate a flag or option may set (in bytes or KiB per second): at least 1 and
// finite (NaN fails too), so that CheckInTimeout's deadline is finite and positive.
inline bool IsValidMinDownloadRate(double rate) { return rate >= 1 && !std::isinf(rate); }
inline constexpr double kMaxCheckInPollSeconds = 3600;
inline absl::Duration CheckInTimeout(const proto::JoinResponse& join,
                                     double min_download_bytes_per_second) {
  double poll = join.checkin_poll_seconds();
  if (!(poll > 0)) poll = 0;  // also NaN
  poll = std::min(poll, kMaxCheckInPollSeconds);
  const uint64_t bytes = std::min<uint64_t>(join.model_bytes(), kMaxModelBytes);
  return absl::Seconds(poll + 15 + static_cast<double>(bytes) / min_download_bytes_per_second);
}

}  // namespace edgefl::client

#endif  // EDGEFL_CLIENT_COORDINATOR_H_
