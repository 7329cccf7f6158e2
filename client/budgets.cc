#include "client/budgets.h"

#include <algorithm>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"

namespace edgefl::client {
namespace {

bool ParseClock(absl::string_view text, int* minute) {
  std::vector<absl::string_view> hm = absl::StrSplit(text, ':');
  int h = 0, m = 0;
  if (hm.size() != 2 || hm[0].size() != 2 || hm[1].size() != 2 || !absl::SimpleAtoi(hm[0], &h) ||
      !absl::SimpleAtoi(hm[1], &m) || h < 0 || h > 23 || m < 0 || m > 59) {
    return false;
  }
  *minute = h * 60 + m;
  return true;
}

}  // namespace

absl::StatusOr<TrainWindow> ParseTrainWindow(const std::string& text) {
  std::vector<absl::string_view> ends = absl::StrSplit(text, '-');
  TrainWindow w;
  if (ends.size() != 2 || !ParseClock(ends[0], &w.start_minute) ||
      !ParseClock(ends[1], &w.end_minute)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--train_window must be HH:MM-HH:MM (local time, e.g. 22:00-06:00), got '",
        absl::CHexEscape(text.substr(0, 64)), "'"));
  }
  if (w.start_minute == w.end_minute) {
    return absl::InvalidArgumentError(
        absl::StrCat("--train_window '", text, "' is empty (start equals end); leave it unset to "
                     "train at any time"));
  }
  return w;
}

bool TrainWindow::Contains(absl::Time t, absl::TimeZone tz) const {
  const absl::CivilSecond cs = absl::ToCivilSecond(t, tz);
  const int minute = cs.hour() * 60 + cs.minute();
  if (start_minute < end_minute) return minute >= start_minute && minute < end_minute;
  return minute >= start_minute || minute < end_minute;  // wraps past midnight
}

std::string TrainWindow::ToString() const {
  return absl::StrFormat("%02d:%02d-%02d:%02d", start_minute / 60, start_minute % 60,
                         end_minute / 60, end_minute % 60);
}

int BatchWithinRssBudget(int64_t budget_bytes, int64_t resident_bytes, int64_t model_bytes,
                         int64_t activation_bytes_per_sample, int batch_size, int64_t* estimate) {
  const int64_t fixed = resident_bytes + 4 * model_bytes;
  for (int b = std::max(1, batch_size);; b /= 2) {
    *estimate = fixed + static_cast<int64_t>(b) * activation_bytes_per_sample;
    if (*estimate <= budget_bytes) return b;
    if (b == 1) return 0;
  }
}

absl::Duration UploadPacer::Sent(uint64_t bytes, absl::Time now) {
  sent_ += bytes;
  if (kbps_ <= 0) return absl::ZeroDuration();
  const absl::Time due = start_ + absl::Seconds(static_cast<double>(sent_) * 8 / (kbps_ * 1000));
  return std::max(absl::ZeroDuration(), due - now);
}

}  // namespace edgefl::client
