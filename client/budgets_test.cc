// The train window, the RSS budget's batch choice and the upload pacer.
#include "client/budgets.h"

#include "absl/time/civil_time.h"
#include "gtest/gtest.h"

namespace edgefl::client {
namespace {

absl::Time At(int hour, int minute) {
  return absl::FromCivil(absl::CivilSecond(2026, 12, 2, hour, minute, 0), absl::UTCTimeZone());
}

TEST(TrainWindow, WrapsPastMidnight) {
  absl::StatusOr<TrainWindow> w = ParseTrainWindow("22:00-06:00");
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ(w->ToString(), "22:00-06:00");
  const absl::TimeZone utc = absl::UTCTimeZone();
  EXPECT_TRUE(w->Contains(At(22, 0), utc));
  EXPECT_TRUE(w->Contains(At(23, 59), utc));
  EXPECT_TRUE(w->Contains(At(0, 0), utc));
  EXPECT_TRUE(w->Contains(At(5, 59), utc));
  EXPECT_FALSE(w->Contains(At(6, 0), utc));  // the end is exclusive
  EXPECT_FALSE(w->Contains(At(12, 0), utc));
  EXPECT_FALSE(w->Contains(At(21, 59), utc));
}

TEST(TrainWindow, SameDayWindowAndTimeZone) {
  absl::StatusOr<TrainWindow> w = ParseTrainWindow("09:30-17:00");
  ASSERT_TRUE(w.ok());
  EXPECT_TRUE(w->Contains(At(9, 30), absl::UTCTimeZone()));
  EXPECT_FALSE(w->Contains(At(9, 29), absl::UTCTimeZone()));
  EXPECT_FALSE(w->Contains(At(17, 0), absl::UTCTimeZone()));
  // 08:00 UTC is 10:00 at UTC+2.
  EXPECT_TRUE(w->Contains(At(8, 0), absl::FixedTimeZone(2 * 3600)));
}

TEST(TrainWindow, RefusesWhatDoesNotParse) {
  for (const char* bad : {"", "22-06", "22:00", "22:00-6:00", "24:00-06:00", "22:60-06:00",
                          "22:00-06:00-07:00", "ab:cd-ef:gh", "22:00 - 06:00", "10:00-10:00"}) {
    absl::StatusOr<TrainWindow> w = ParseTrainWindow(bad);
    EXPECT_FALSE(w.ok()) << bad;
    EXPECT_EQ(w.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_NE(w.status().message().find("--train_window"), std::string::npos) << bad;
  }
}

TEST(RssBudget, HalvesTheBatchUntilItFitsOrDeclines) {
  const int64_t MiB = 1 << 20;
  int64_t estimate = 0;
  // 100 MiB resident + 4 x 5 MiB model + 32 x 1 MiB activations = 152 MiB.
  EXPECT_EQ(BatchWithinRssBudget(200 * MiB, 100 * MiB, 5 * MiB, MiB, 32, &estimate), 32);
  EXPECT_EQ(estimate, 152 * MiB);
  // 130 MiB: 120 fixed leaves room for 10 samples: batch 8.
  EXPECT_EQ(BatchWithinRssBudget(130 * MiB, 100 * MiB, 5 * MiB, MiB, 32, &estimate), 8);
  EXPECT_EQ(estimate, 128 * MiB);
  // Not even batch 1 fits.
  EXPECT_EQ(BatchWithinRssBudget(120 * MiB, 100 * MiB, 5 * MiB, MiB, 32, &estimate), 0);
  EXPECT_EQ(estimate, 121 * MiB);
}

TEST(UploadPacer, KeepsTheAverageUnderTheCap) {
  UploadPacer off(0);
  const absl::Time t0 = absl::FromUnixSeconds(1000);
  off.Start(t0);
  EXPECT_EQ(off.Sent(1 << 20, t0), absl::ZeroDuration());
  UploadPacer p(80);  // 80 kbit/s = 10,000 bytes/s
  p.Start(t0);
  EXPECT_EQ(p.Sent(10000, t0), absl::Seconds(1));
  EXPECT_EQ(p.Sent(10000, t0 + absl::Seconds(1)), absl::Seconds(1));
  // A stream that fell behind the cap (slow network) does not wait.
  EXPECT_EQ(p.Sent(10000, t0 + absl::Seconds(10)), absl::ZeroDuration());
}

}  // namespace
}  // namespace edgefl::client
