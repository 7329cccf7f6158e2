// fl-client's resource budgets: when it may train (--train_window), how much memory a round may
// take (--max_rss_mb), and how fast it may upload (--max_upload_kbps). Pure functions and a small
// pacer, so each is unit-tested without processes or real time.
#ifndef EDGEFL_CLIENT_BUDGETS_H_
#define EDGEFL_CLIENT_BUDGETS_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace edgefl::client {

// A daily window of local time, "HH:MM-HH:MM"; it may wrap past midnight ("22:00-06:00").
// Start is inclusive, end exclusive; equal ends are refused (use no window for "always").
struct TrainWindow {
  int start_minute = 0;  // minutes after local midnight
  int end_minute = 0;
  bool Contains(absl::Time t, absl::TimeZone tz) const;
  std::string ToString() const;
};
// INVALID_ARGUMENT "--train_window must be HH:MM-HH:MM (local time, e.g. 22:00-06:00), got '..'".
absl::StatusOr<TrainWindow> ParseTrainWindow(const std::string& text);

// The batch size that keeps a round's estimated peak resident memory under `budget_bytes`:
// resident now + 4 x the model (weights, gradients, the global model, the delta) + batch x the
// activation memory per sample. Halves `batch_size` until it fits; 0 when even a batch of 1 does
// not (the task is then declined with "rss_budget"). *estimate receives the estimated peak at the
// returned batch size (or at batch 1 when 0 is returned).
int BatchWithinRssBudget(int64_t budget_bytes, int64_t resident_bytes, int64_t model_bytes,
                         int64_t activation_bytes_per_sample, int batch_size, int64_t* estimate);

// Paces a stream to at most `kbps` kilobits (1000 bits) per second on average since Start.
class UploadPacer {
 public:
  explicit UploadPacer(double kbps) : kbps_(kbps) {}
  void Start(absl::Time now) { start_ = now; sent_ = 0; }
  // Records `bytes` more sent; returns how long to wait before sending more (zero when the cap is
  // off or the stream is behind it).
  absl::Duration Sent(uint64_t bytes, absl::Time now);

 private:
  double kbps_;
  absl::Time start_;
  uint64_t sent_ = 0;
};

}  // namespace edgefl::client

#endif  // EDGEFL_CLIENT_BUDGETS_H_
