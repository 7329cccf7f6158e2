#include "aggregation/dp.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace edgefl::aggregation {
namespace {

double Rdp(double q, double sigma, double alpha) {
  absl::StatusOr<double> rdp = SampledGaussianRdp(q, sigma, alpha);
  EXPECT_TRUE(rdp.ok()) << rdp.status();
  return rdp.value_or(NAN);
}

// Independent evaluation: log of the integral of N(x; 0, s^2) * (P(x) / Q(x))^alpha where
// P = (1-q) N(0, s^2) + q N(1, s^2) and Q = N(0, s^2), by composite Simpson on a fine grid, in
// log space (the largest integrand value is factored out).
double NumericalRdp(double q, double s, double alpha) {
  const double lo = -40 * s, hi = alpha + 40 * s;
  const int n = 400000;  // even
  const double h = (hi - lo) / n;
  auto log_integrand = [&](double x) {
    const double log_ratio = std::log((1 - q) + q * std::exp((2 * x - 1) / (2 * s * s)));
    return -x * x / (2 * s * s) - std::log(s * std::sqrt(2 * M_PI)) + alpha * log_ratio;
  };
  std::vector<double> g(n + 1);
  double peak = -INFINITY;
  for (int i = 0; i <= n; ++i) {
    g[i] = log_integrand(lo + i * h);
    peak = std::max(peak, g[i]);
  }
  double sum = 0;
  for (int i = 0; i <= n; ++i) {
    const double w = (i == 0 || i == n) ? 1 : (i % 2 == 1 ? 4 : 2);
    sum += w * std::exp(g[i] - peak);
  }
  const double log_a = peak + std::log(sum * h / 3);
  return log_a / (alpha - 1);
}

TEST(SampledGaussianRdp, FullBatchIsTheGaussianMechanism) {
  for (double sigma : {0.5, 0.9, 1.0, 3.0, 20.0}) {
    for (double alpha : {2.0, 3.0, 10.0, 32.0, 64.0, 255.0, 256.0}) {
      const double expected = alpha / (2 * sigma * sigma);
      EXPECT_NEAR(Rdp(1.0, sigma, alpha), expected, 1e-12 * expected)
          << "sigma " << sigma << " alpha " << alpha;
    }
    EXPECT_EQ(Rdp(1.0, sigma, 2.5), 2.5 / (2 * sigma * sigma));
    EXPECT_EQ(Rdp(0.0, sigma, 7.0), 0.0);
  }
}

// At alpha = 2 the sum has the closed form A = 1 + q^2 (exp(1/sigma^2) - 1): the RDP must keep
// its relative precision even when it is ~1e-15 (a naive log-sum-exp loses it all).
TEST(SampledGaussianRdp, TinyRatesKeepRelativePrecision) {
  for (double q : {1e-6, 1e-4, 0.01}) {
    for (double sigma : {0.7, 5.0, 50.0}) {
      const double expected = std::log1p(q * q * std::expm1(1 / (sigma * sigma)));
      EXPECT_NEAR(Rdp(q, sigma, 2), expected, 1e-12 * expected) << q << " " << sigma;
    }
  }
}

TEST(SampledGaussianRdp, MatchesNumericalIntegration) {
  struct Case {
    double q, sigma, alpha;
  };
  const Case cases[] = {
      // integer orders (closed-form binomial sum)
      {0.01, 1.1, 2},
      {0.01, 1.1, 8},
      {0.01, 1.1, 32},
      {0.05, 0.8, 3},
      {0.1, 2.0, 16},
      {0.5, 1.0, 5},
      {0.9, 1.5, 4},
      // fractional orders (TF-Privacy's two-sided series)
      {0.01, 1.1, 1.1},
      {0.01, 1.1, 2.5},
      {0.01, 1.1, 4.7},
      {0.1, 2.0, 10.25},
      {0.05, 0.8, 1.5},
      {0.3, 1.5, 7.3},
      {0.5, 1.0, 3.9},
      {0.02, 0.7, 20.5},
  };
  for (const Case& c : cases) {
    const double closed = Rdp(c.q, c.sigma, c.alpha);
    const double numeric = NumericalRdp(c.q, c.sigma, c.alpha);
    EXPECT_NEAR(closed, numeric, 1e-6 * numeric)
        << "q " << c.q << " sigma " << c.sigma << " alpha " << c.alpha;
  }
}

TEST(SampledGaussianRdp, FractionalSeriesAgreesWithIntegerFormulaNearIntegers) {
  for (double alpha : {2.0, 3.0, 7.0, 20.0}) {
    const double exact = Rdp(0.03, 1.2, alpha);
    EXPECT_NEAR(Rdp(0.03, 1.2, alpha + 1e-7), exact, 1e-5 * exact);
    EXPECT_NEAR(Rdp(0.03, 1.2, alpha - 1e-7), exact, 1e-5 * exact);
  }
}

TEST(SampledGaussianRdp, MonotoneAndBelowTheUnsampledMechanism) {
  const std::vector<double> orders = RdpAccountant::DefaultOrders();
  for (double alpha : orders) {
    double previous = 0;
    for (double q : {0.001, 0.01, 0.1, 0.5, 1.0}) {
      const double r = Rdp(q, 1.3, alpha);
      EXPECT_GE(r, previous) << "alpha " << alpha << " q " << q;
      EXPECT_LE(r, alpha / (2 * 1.3 * 1.3) * (1 + 1e-12));
      previous = r;
    }
    EXPECT_GT(Rdp(0.01, 0.8, alpha), Rdp(0.01, 1.6, alpha));
  }
  double previous = 0;
  for (double alpha : {1.5, 2.0, 2.5, 3.0, 5.0, 9.5, 12.0, 64.0}) {
    const double r = Rdp(0.02, 1.0, alpha);
    EXPECT_GE(r, previous) << alpha;  // RDP is non-decreasing in the order
    previous = r;
  }
}

TEST(SampledGaussianRdp, WholeDefaultGridFiniteOverWideParameterSweep) {
  for (double sigma : {0.3, 0.5, 1.0, 5.0, 50.0}) {
    for (double q : {1e-5, 1e-3, 0.2, 0.7, 0.99}) {
      double previous = 0;  // the default grid is ascending; RDP is non-decreasing in the order
      for (double alpha : RdpAccountant::DefaultOrders()) {
        absl::StatusOr<double> rdp = SampledGaussianRdp(q, sigma, alpha);
        ASSERT_TRUE(rdp.ok()) << rdp.status() << " q " << q << " sigma " << sigma << " alpha "
                              << alpha;
        EXPECT_TRUE(std::isfinite(*rdp) && *rdp >= 0) << *rdp;
        EXPECT_LE(*rdp, alpha / (2 * sigma * sigma) * (1 + 1e-9))
            << "q " << q << " sigma " << sigma << " alpha " << alpha;
        // The fractional series (as TF-Privacy's) sums terms near 1 in log space: its absolute
        // error is ~1e-14 / (alpha - 1), visible only where the RDP itself is ~1e-14.
        EXPECT_GE(*rdp, previous * (1 - 1e-9) - 2e-13)
            << "q " << q << " sigma " << sigma << " alpha " << alpha;
        previous = *rdp;
      }
    }
  }
}

TEST(SampledGaussianRdp, BadArgumentsRefused) {
  EXPECT_EQ(SampledGaussianRdp(1.5, 1, 2).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(SampledGaussianRdp(0.1, 0, 2).status().message(),
            "aggregation.dp.noise_multiplier must be finite and > 0, got 0");
  EXPECT_EQ(SampledGaussianRdp(0.1, 1, 1).status().message(),
            "aggregation.dp.rdp_order must be finite and > 1, got 1");
}

TEST(RdpAccountant, CompositionIsAdditiveAndConversionsOrdered) {
  auto one = *RdpAccountant::Create({});
  auto many = *RdpAccountant::Create({});
  ASSERT_TRUE(one->Compose(0.01, 1.1, 1).ok());
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(many->Compose(0.01, 1.1, 250).ok());
  for (size_t j = 0; j < one->orders().size(); ++j) {
    EXPECT_NEAR(many->rdp()[j], 1000 * one->rdp()[j], 1e-12 * many->rdp()[j]);
  }
  EXPECT_EQ(many->steps(), 1000);

  auto acc = *RdpAccountant::Create({});
  double previous = 0;
  for (int round = 0; round < 20; ++round) {
    ASSERT_TRUE(acc->Compose(0.01, 1.1, 300).ok());
    const auto balle = *acc->GetEpsilon(1e-5);
    const auto classic = *acc->GetEpsilonClassic(1e-5);
    EXPECT_LE(balle.epsilon, classic.epsilon);
    EXPECT_GT(balle.epsilon, previous);  // more rounds, more privacy spent
    previous = balle.epsilon;
  }
  // More noise, less privacy spent.
  auto noisier = *RdpAccountant::Create({});
  ASSERT_TRUE(noisier->Compose(0.01, 2.0, 6000).ok());
  EXPECT_LT(noisier->GetEpsilon(1e-5)->epsilon, acc->GetEpsilon(1e-5)->epsilon);
  // Smaller delta, larger epsilon.
  EXPECT_GT(acc->GetEpsilon(1e-8)->epsilon, acc->GetEpsilon(1e-5)->epsilon);
}

// Published values from TF-Privacy's tests (github.com/tensorflow/privacy,
// tensorflow_privacy/privacy/analysis/rdp_accountant_test.py at 385fefc8): compute_rdp(q, sigma,
// steps, orders), and get_privacy_spent(target_delta) of that version, which used the classic
// conversion eps = rdp - log(delta) / (alpha - 1).
TEST(RdpAccountant, MatchesTfPrivacyPublishedValues) {
  // test_compute_rdp_scalar: compute_rdp(0.1, 2, 10, 5) = 0.07737 (places=5).
  EXPECT_NEAR(10 * Rdp(0.1, 2, 5), 0.07737, 0.5e-5);
  // test_compute_rdp_sequence: compute_rdp(0.01, 2.5, 50, [1.5, 2.5, 5, 50, 100]) (delta=1e-5).
  const double orders[] = {1.5, 2.5, 5, 50, 100};
  const double expected[] = {0.00065, 0.001085, 0.00218075, 0.023846, 167.416307};
  for (int i = 0; i < 5; ++i) {
    EXPECT_NEAR(50 * Rdp(0.01, 2.5, orders[i]), expected[i], 1e-5) << orders[i];
  }
  // test_get_privacy_spent_check_target_delta: orders 2..32, compute_rdp(0.01, 4, 10000),
  // delta 1e-5 -> eps 1.258575 at order 20.
  RdpAccountant::Options options;
  options.orders.clear();
  for (int a = 2; a <= 32; ++a) options.orders.push_back(a);
  auto acc = *RdpAccountant::Create(options);
  ASSERT_TRUE(acc->Compose(0.01, 4, 10000).ok());
  auto classic = *acc->GetEpsilonClassic(1e-5);
  EXPECT_NEAR(classic.epsilon, 1.258575, 0.5e-5);
  EXPECT_EQ(classic.order, 20);
  // test_check_composition: two mechanisms composed, delta 1e-5 -> eps 8.509656 at order 2.5.
  options.orders = {1.25, 1.5, 1.75, 2.,  2.5, 3.,  4.,  5.,  6.,  7.,  8.,
                    10.,  12., 14.,  16., 20., 24., 28., 32., 64., 256.};
  auto composed = *RdpAccountant::Create(options);
  ASSERT_TRUE(composed->Compose(1e-4, 0.4, 40000).ok());
  ASSERT_TRUE(composed->Compose(0.1, 2, 100).ok());
  classic = *composed->GetEpsilonClassic(1e-5);
  EXPECT_NEAR(classic.epsilon, 8.509656, 0.5e-5);
  EXPECT_EQ(classic.order, 2.5);
}

// Printed for the record, not asserted: the DP-SGD settings of TF-Privacy's MNIST tutorial
// (N = 60000, batch 256, sigma 1.1, 60 epochs) and q = 0.01 with 6000 steps.
TEST(RdpAccountant, ReportsTutorialSettings) {
  struct Setting {
    double q;
    int64_t steps;
  };
  for (const Setting& s : {Setting{256.0 / 60000, 60 * 60000 / 256}, Setting{0.01, 6000}}) {
    auto acc = *RdpAccountant::Create({});
    ASSERT_TRUE(acc->Compose(s.q, 1.1, s.steps).ok());
    const auto balle = *acc->GetEpsilon(1e-5);
    const auto classic = *acc->GetEpsilonClassic(1e-5);
    std::printf(
        "q=%.6f sigma=1.1 steps=%lld delta=1e-5: eps=%.4f (order %.1f), classic eps=%.4f "
        "(order %.1f)\n",
        s.q, static_cast<long long>(s.steps), balle.epsilon, balle.order, classic.epsilon,
        classic.order);
    EXPECT_LT(balle.epsilon, classic.epsilon);
  }
}

TEST(RdpAccountant, StateRoundTripAndRefusals) {
  auto acc = *RdpAccountant::Create({});
  ASSERT_TRUE(acc->Compose(0.02, 1.0, 100).ok());
  const std::string saved = acc->SaveState();
  auto restored = *RdpAccountant::Create({});
  ASSERT_TRUE(restored->LoadState(saved).ok());
  EXPECT_EQ(restored->rdp(), acc->rdp());
  EXPECT_EQ(restored->steps(), 100);
  ASSERT_TRUE(acc->Compose(0.02, 1.0, 50).ok());
  ASSERT_TRUE(restored->Compose(0.02, 1.0, 50).ok());
  EXPECT_EQ(restored->SaveState(), acc->SaveState());

  RdpAccountant::Options other;
  other.orders = {2, 4, 8};
  auto different = *RdpAccountant::Create(other);
  EXPECT_EQ(different->LoadState(saved).code(), absl::StatusCode::kInvalidArgument);
  std::string corrupt = saved;
  corrupt[corrupt.size() / 2] ^= 1;
  EXPECT_EQ(restored->LoadState(corrupt).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(restored->LoadState(saved.substr(0, saved.size() - 3)).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(restored->steps(), 150);

  other.orders = {2, 0.5};
  EXPECT_EQ(RdpAccountant::Create(other).status().code(), absl::StatusCode::kInvalidArgument);
  other.orders = {2, 2};
  EXPECT_EQ(RdpAccountant::Create(other).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(acc->GetEpsilon(0).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(GaussianNoiseStage, StdMatchesSigmaCOverK) {
  constexpr size_t kDim = 400000;
  constexpr double kSigma = 1.2, kClip = 0.5;
  constexpr int kUpdates = 10;
  const double expected = kSigma * kClip / kUpdates;  // 0.06
  auto noise = *GaussianNoiseStage::Create({kSigma, 12345});
  std::vector<double> mean(kDim, 0.0);
  ASSERT_TRUE(noise->AddNoise(absl::MakeSpan(mean), kUpdates, kClip).ok());
  double sum = 0, sum2 = 0;
  int within_one = 0;
  for (double x : mean) {
    sum += x;
    sum2 += x * x;
    if (std::abs(x) <= expected) ++within_one;
  }
  const double m = sum / kDim;
  const double sd = std::sqrt(sum2 / kDim - m * m);
  // Standard errors: mean 0.06/sqrt(4e5) = 9.5e-5, std 0.06/sqrt(8e5) = 6.7e-5; allow ~5.
  EXPECT_NEAR(m, 0.0, 5e-4);
  EXPECT_NEAR(sd, expected, 4e-4);
  EXPECT_NEAR(static_cast<double>(within_one) / kDim, 0.682689, 0.004);  // P(|Z| <= 1)
}

TEST(GaussianNoiseStage, SeededAndResumable) {
  auto a = *GaussianNoiseStage::Create({1.0, 7});
  auto b = *GaussianNoiseStage::Create({1.0, 7});
  auto c = *GaussianNoiseStage::Create({1.0, 8});
  std::vector<double> x(101, 0.0), y(101, 0.0), z(101, 0.0);
  ASSERT_TRUE(a->AddNoise(absl::MakeSpan(x), 3, 1.0).ok());
  ASSERT_TRUE(b->AddNoise(absl::MakeSpan(y), 3, 1.0).ok());
  ASSERT_TRUE(c->AddNoise(absl::MakeSpan(z), 3, 1.0).ok());
  EXPECT_EQ(x, y);
  EXPECT_NE(x, z);
  // Odd dim: the saved state holds a cached Box-Muller spare.
  const std::string saved = a->SaveState();
  auto resumed = *GaussianNoiseStage::Create({1.0, 999});
  ASSERT_TRUE(resumed->LoadState(saved).ok());
  std::vector<double> next_a(50, 0.0), next_r(50, 0.0);
  ASSERT_TRUE(a->AddNoise(absl::MakeSpan(next_a), 3, 1.0).ok());
  ASSERT_TRUE(resumed->AddNoise(absl::MakeSpan(next_r), 3, 1.0).ok());
  EXPECT_EQ(next_a, next_r);
  std::string bad = saved;
  bad[40] ^= 4;
  EXPECT_EQ(resumed->LoadState(bad).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(resumed->AddNoise(absl::MakeSpan(next_r), 0, 1.0).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(GaussianNoiseStage::Create({-1.0}).status().message(),
            "aggregation.dp.noise_multiplier must be finite and >= 0, got -1");
}

TEST(AdaptiveClipping, GeometricUpdateFormula) {
  AdaptiveClipping::Options options;
  options.initial_clip_norm = 1.0;
  options.target_quantile = 0.5;
  options.learning_rate = 0.2;
  auto clip = *AdaptiveClipping::Create(options);
  EXPECT_EQ(*clip->Update(8, 10), 1.0 * std::exp(-0.2 * (0.8 - 0.5)));
  const double c1 = clip->clip_norm();
  EXPECT_EQ(*clip->Update(0, 4), c1 * std::exp(-0.2 * (0.0 - 0.5)));
  EXPECT_EQ(clip->Update(5, 4).status().code(), absl::StatusCode::kInvalidArgument);
  options.target_quantile = 1.5;
  EXPECT_EQ(AdaptiveClipping::Create(options).status().message(),
            "aggregation.dp.adaptive_clipping.target_quantile must be in [0, 1], got 1.5");
}

TEST(AdaptiveClipping, TracksTheTargetQuantileWithNoise) {
  // Norms uniform on [0, 10]: the 0.3-quantile is 3.
  AdaptiveClipping::Options options;
  options.initial_clip_norm = 0.1;
  options.target_quantile = 0.3;
  options.learning_rate = 0.2;
  options.count_noise_stddev = 100 / 20.0;  // Andrew et al.'s K / 20
  options.seed = 3;
  auto clip = *AdaptiveClipping::Create(options);
  std::mt19937_64 rng(1);
  std::uniform_real_distribution<double> norm(0, 10);
  double tail_sum = 0;
  std::string mid_state;
  std::vector<double> after_mid;
  for (int round = 0; round < 600; ++round) {
    int within = 0;
    for (int k = 0; k < 100; ++k) within += norm(rng) <= clip->clip_norm() ? 1 : 0;
    ASSERT_TRUE(clip->Update(within, 100).ok());
    if (round >= 400) tail_sum += clip->clip_norm();
  }
  EXPECT_NEAR(tail_sum / 200, 3.0, 0.3);

  // Save mid-run: the restored clipper continues with the same noise and the same C.
  auto a = *AdaptiveClipping::Create(options);
  for (int r = 0; r < 5; ++r) ASSERT_TRUE(a->Update(30, 100).ok());
  auto b = *AdaptiveClipping::Create(options);
  ASSERT_TRUE(b->LoadState(a->SaveState()).ok());
  for (int r = 0; r < 5; ++r) EXPECT_EQ(*a->Update(40, 100), *b->Update(40, 100));
}

TEST(AdaptiveClipping, SharedBudgetNoiseMultiplier) {
  // z = 1 and sigma_b = K/20 = 5 for K = 100: (1 - 1/100)^(-1/2).
  EXPECT_NEAR(*UpdateNoiseMultiplierWithAdaptiveClipping(1.0, 5.0), 1 / std::sqrt(0.99), 1e-15);
  EXPECT_EQ(UpdateNoiseMultiplierWithAdaptiveClipping(1.0, 0.5).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace edgefl::aggregation
