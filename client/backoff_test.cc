#include "client/backoff.h"

#include "gtest/gtest.h"

namespace edgefl::client {
namespace {

TEST(Backoff, GrowsExponentiallyWithinJitterAndCaps) {
  Backoff::Options o;
  o.initial = absl::Milliseconds(100);
  o.max = absl::Seconds(2);
  o.multiplier = 2;
  o.jitter = 0.25;
  Backoff b(o, 42);
  double expected = 0.1;
  for (int i = 0; i < 10; ++i) {
    const double got = absl::ToDoubleSeconds(b.Next());
    const double base = std::min(expected, 2.0);
    EXPECT_GE(got, base * 0.75 - 1e-9) << i;
    EXPECT_LE(got, base * 1.25 + 1e-9) << i;
    expected *= 2;
  }
  b.Reset();
  EXPECT_LE(absl::ToDoubleSeconds(b.Next()), 0.125 + 1e-9);
}

TEST(Backoff, JitterSpreadsClients) {
  Backoff::Options o;
  Backoff a(o, 1), b(o, 2);
  bool differ = false;
  for (int i = 0; i < 5; ++i) differ |= a.Next() != b.Next();
  EXPECT_TRUE(differ);
}

}  // namespace
}  // namespace edgefl::client
