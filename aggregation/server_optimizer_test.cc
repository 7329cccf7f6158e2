#include "aggregation/server_optimizer.h"

#include <cmath>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "aggregation/accumulator.h"
#include "aggregation/state_format.h"
#include "aggregation/strategy.h"
#include "gtest/gtest.h"

namespace edgefl::aggregation {
namespace {

std::vector<double> RandomDelta(size_t dim, std::mt19937_64* rng, double scale) {
  std::normal_distribution<double> normal(0.0, scale);
  std::vector<double> d(dim);
  for (double& x : d) x = normal(*rng);
  return d;
}

std::vector<float> RandomModel(size_t dim, std::mt19937_64* rng) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(dim);
  for (float& v : x) v = normal(*rng);
  return x;
}

// The textbook rules, written out independently of the implementation, in double with the model
// kept in float (rounded once per step, as the implementation does).
struct Params {
  enum Rule { kAdam, kYogi, kAdagrad, kSgd, kFedDyn } rule;
  double lr, beta1, beta2, tau, momentum;
  double alpha = 0;  // kFedDyn
};

struct Reference : Params {
  explicit Reference(const Params& p) : Params(p) {}
  std::vector<double> m, v, u, h;

  void Init(size_t dim) {
    m.assign(dim, 0.0);
    v.assign(dim, tau * tau);
    u.assign(dim, 0.0);
    h.assign(dim, 0.0);
  }
  void Step(const std::vector<double>& d, std::vector<float>* x) {
    for (size_t i = 0; i < d.size(); ++i) {
      if (rule == kFedDyn) {
        // Acar et al. 2021, Alg. 1 with every device taking part: the devices' mean model is
        // x + d; h -= alpha (mean - x); the new model is mean - h / alpha (lr 1), or x moved
        // lr times as far.
        const double mean = (*x)[i] + d[i];
        h[i] -= alpha * (mean - (*x)[i]);
        (*x)[i] = static_cast<float>((*x)[i] + lr * (mean - h[i] / alpha - (*x)[i]));
        continue;
      }
      if (rule == kSgd) {
        u[i] = momentum * u[i] + d[i];
        (*x)[i] = static_cast<float>((*x)[i] + lr * u[i]);
        continue;
      }
      m[i] = beta1 * m[i] + (1 - beta1) * d[i];
      if (rule == kAdam) {
        v[i] = beta2 * v[i] + (1 - beta2) * d[i] * d[i];
      } else if (rule == kYogi) {
        const double s = (v[i] - d[i] * d[i]) > 0 ? 1 : ((v[i] - d[i] * d[i]) < 0 ? -1 : 0);
        v[i] = v[i] - (1 - beta2) * d[i] * d[i] * s;
      } else {
        v[i] = v[i] + d[i] * d[i];
      }
      (*x)[i] = static_cast<float>((*x)[i] + lr * m[i] / (std::sqrt(v[i]) + tau));
    }
  }
};

std::unique_ptr<ServerOptimizer> Make(Params::Rule rule, size_t dim, const Params& r) {
  absl::StatusOr<std::unique_ptr<ServerOptimizer>> opt;
  switch (rule) {
    case Params::kAdam:
      opt = CreateServerAdam({dim, r.lr, r.beta1, r.beta2, r.tau});
      break;
    case Params::kYogi:
      opt = CreateServerYogi({dim, r.lr, r.beta1, r.beta2, r.tau});
      break;
    case Params::kAdagrad:
      opt = CreateServerAdagrad({dim, r.lr, r.beta1, r.tau});
      break;
    case Params::kSgd:
      opt = CreateServerSgd({dim, r.lr, r.momentum});
      break;
    case Params::kFedDyn:
      EXPECT_EQ(r.lr, 1.0) << "FedDyn's step is fixed at 1";
      opt = CreateServerFedDyn({dim, r.alpha});
      break;
  }
  EXPECT_TRUE(opt.ok()) << opt.status();
  return std::move(opt).value();
}

void ExpectMatchesReference(const Params& params, const std::string& name) {
  Reference ref(params);
  constexpr size_t kDim = 777;
  constexpr int kRounds = 12;
  std::mt19937_64 rng(99);
  std::vector<float> x = RandomModel(kDim, &rng);
  std::vector<float> x_ref = x;
  ref.Init(kDim);
  std::unique_ptr<ServerOptimizer> opt = Make(ref.rule, kDim, ref);
  EXPECT_EQ(opt->name(), name);
  for (int r = 0; r < kRounds; ++r) {
    // Mix scales so Yogi's sign(v - d^2) takes both signs; put exact zeros in to hit sign(0).
    std::vector<double> d = RandomDelta(kDim, &rng, r % 3 == 0 ? 1.0 : 0.01);
    for (size_t i = 0; i < kDim; i += 97) d[i] = 0.0;
    ref.Step(d, &x_ref);
    ASSERT_TRUE(opt->Apply(d, absl::MakeSpan(x)).ok());
    for (size_t i = 0; i < kDim; ++i) {
      ASSERT_EQ(x[i], x_ref[i]) << name << " round " << r << " index " << i;
    }
  }
  EXPECT_EQ(opt->steps(), kRounds);
}

TEST(ServerOptimizer, AdamMatchesReference) {
  ExpectMatchesReference({Params::kAdam, 0.1, 0.9, 0.99, 1e-3, 0}, "adam");
}
TEST(ServerOptimizer, YogiMatchesReference) {
  ExpectMatchesReference({Params::kYogi, 0.01, 0.9, 0.99, 1e-3, 0}, "yogi");
}
TEST(ServerOptimizer, AdagradMatchesReference) {
  ExpectMatchesReference({Params::kAdagrad, 0.1, 0.0, 0.0, 1e-9, 0}, "adagrad");
  ExpectMatchesReference({Params::kAdagrad, 0.1, 0.5, 0.0, 1e-2, 0}, "adagrad");
}
TEST(ServerOptimizer, FedDynMatchesReference) {
  ExpectMatchesReference({Params::kFedDyn, 1.0, 0, 0, 0, 0, 0.01}, "feddyn");
  ExpectMatchesReference({Params::kFedDyn, 1.0, 0, 0, 0, 0, 0.3}, "feddyn");
  // Its step is fixed: another learning rate (a schedule's server_lr) is refused, 1 is fine.
  auto opt = *CreateServerFedDyn({4, 0.1});
  EXPECT_EQ(opt->SetLearningRate(0.5).message(),
            "aggregation.server_optimizer.learning_rate must be 1 with feddyn, got 0.5");
  EXPECT_TRUE(opt->SetLearningRate(1.0).ok());
  EXPECT_EQ(opt->learning_rate(), 1.0);
  // Nor does a saved state with another lr load (FedDyn's own blobs always hold 1).
  StateWriter damped("server_optimizer.feddyn");
  damped.PutU64(4);    // dim
  damped.PutF64(0.5);  // learning rate
  damped.PutU64(2);    // steps
  damped.PutF64Array(std::vector<double>(4, 0.25));
  EXPECT_EQ(opt->LoadState(damped.Finish()).message(),
            "state for server_optimizer.feddyn: learning rate 0.5, FedDyn's is 1");
  StateWriter plain("server_optimizer.feddyn");
  plain.PutU64(4);
  plain.PutF64(1.0);
  plain.PutU64(2);
  plain.PutF64Array(std::vector<double>(4, 0.25));
  EXPECT_TRUE(opt->LoadState(plain.Finish()).ok());
  EXPECT_EQ(opt->steps(), 2);
}
// FedDyn's first step by hand: h = -alpha d, so the model moves by 2 d (lr 1); the second step
// with the same d moves 3 d (h = -2 alpha d).
TEST(ServerOptimizer, FedDynFirstStepsByHand) {
  auto opt = *CreateServerFedDyn({1, 0.1});
  std::vector<float> x{1.0f};
  ASSERT_TRUE(opt->Apply(std::vector<double>{0.25}, absl::MakeSpan(x)).ok());
  EXPECT_FLOAT_EQ(x[0], 1.5f);
  ASSERT_TRUE(opt->Apply(std::vector<double>{0.25}, absl::MakeSpan(x)).ok());
  EXPECT_FLOAT_EQ(x[0], 2.25f);
}
TEST(ServerOptimizer, SgdMomentumMatchesReference) {
  ExpectMatchesReference({Params::kSgd, 0.7, 0, 0, 0, 0.9}, "sgd");
  ExpectMatchesReference({Params::kSgd, 1.0, 0, 0, 0, 0.0}, "sgd");
}

// The first Adam step with v starting at tau^2 is not the textbook "lr * sign(d)": check one
// coordinate by hand.
TEST(ServerOptimizer, AdamFirstStepByHand) {
  auto opt = CreateServerAdam({1, 0.1, 0.9, 0.99, 1e-3});
  ASSERT_TRUE(opt.ok());
  std::vector<float> x = {1.0f};
  const std::vector<double> d = {0.5};
  ASSERT_TRUE((*opt)->Apply(d, absl::MakeSpan(x)).ok());
  const double m = 0.1 * 0.5, v = 0.99 * 1e-6 + 0.01 * 0.25;
  EXPECT_EQ(x[0], static_cast<float>(1.0 + 0.1 * m / (std::sqrt(v) + 1e-3)));
}

TEST(ServerOptimizer, SgdWithoutMomentumIsFedAvgBitForBit) {
  constexpr size_t kDim = 3001;
  std::mt19937_64 rng(5);
  std::uniform_int_distribution<uint64_t> samples(1, 5000);
  std::vector<float> via_fedavg = RandomModel(kDim, &rng);
  std::vector<float> via_sgd = via_fedavg;
  auto fedavg = CreateFedAvg(kDim);
  ASSERT_TRUE(fedavg.ok());
  auto sgd = CreateServerSgd({kDim, 1.0, 0.0});
  ASSERT_TRUE(sgd.ok());
  for (int round = 1; round <= 5; ++round) {
    (*fedavg)->BeginRound(round);
    WeightedMeanAccumulator acc(kDim);
    for (int k = 0; k < 9; ++k) {
      std::vector<float> delta(kDim);
      std::normal_distribution<float> normal(0.0f, 0.05f);
      for (float& v : delta) v = normal(rng);
      const uint64_t n = samples(rng);
      ASSERT_TRUE((*fedavg)->Accumulate(delta, n).ok());
      ASSERT_TRUE(acc.Add(delta, static_cast<double>(n)).ok());
    }
    std::vector<double> mean(kDim);
    for (size_t i = 0; i < kDim; ++i) mean[i] = acc.MeanAt(i);
    ASSERT_TRUE((*fedavg)->Aggregate(absl::MakeSpan(via_fedavg), 0).ok());
    ASSERT_TRUE((*sgd)->Apply(mean, absl::MakeSpan(via_sgd)).ok());
    for (size_t i = 0; i < kDim; ++i) {
      ASSERT_EQ(std::memcmp(&via_fedavg[i], &via_sgd[i], sizeof(float)), 0)
          << "round " << round << " index " << i;
    }
  }
}

TEST(ServerOptimizer, SaveLoadMidRunContinuesIdentically) {
  constexpr size_t kDim = 300;
  for (int kind = 0; kind < 5; ++kind) {
    std::unique_ptr<ServerOptimizer> a, b;
    auto make = [&]() -> std::unique_ptr<ServerOptimizer> {
      switch (kind) {
        case 0:
          return *CreateServerAdam({kDim});
        case 1:
          return *CreateServerYogi({kDim});
        case 2:
          return *CreateServerAdagrad({kDim});
        case 3:
          return *CreateServerFedDyn({kDim, 0.05});
        default:
          return *CreateServerSgd({kDim, 0.5, 0.9});
      }
    };
    a = make();
    std::mt19937_64 rng(kind);
    std::vector<float> x = RandomModel(kDim, &rng);
    for (int r = 0; r < 4; ++r)
      ASSERT_TRUE(a->Apply(RandomDelta(kDim, &rng, 0.1), absl::MakeSpan(x)).ok());
    // A scheduled lr is part of the state (FedDyn's is fixed at 1).
    const double lr = a->name() == "feddyn" ? 1.0 : 0.03;
    ASSERT_TRUE(a->SetLearningRate(lr).ok());
    const std::string saved = a->SaveState();
    std::vector<float> y = x;
    b = make();
    ASSERT_TRUE(b->LoadState(saved).ok()) << a->name();
    EXPECT_EQ(b->steps(), 4);
    EXPECT_EQ(b->learning_rate(), lr);
    EXPECT_EQ(b->SaveState(), saved);
    for (int r = 0; r < 4; ++r) {
      const std::vector<double> d = RandomDelta(kDim, &rng, 0.1);
      ASSERT_TRUE(a->Apply(d, absl::MakeSpan(x)).ok());
      ASSERT_TRUE(b->Apply(d, absl::MakeSpan(y)).ok());
    }
    EXPECT_EQ(std::memcmp(x.data(), y.data(), kDim * sizeof(float)), 0) << a->name();
    EXPECT_EQ(a->SaveState(), b->SaveState());
  }
}

TEST(ServerOptimizer, RefusesCorruptTruncatedAndForeignState) {
  auto adam = *CreateServerAdam({64});
  std::vector<float> x(64, 1.0f);
  ASSERT_TRUE(adam->Apply(std::vector<double>(64, 0.1), absl::MakeSpan(x)).ok());
  const std::string good = adam->SaveState();
  const std::string before = adam->SaveState();

  auto fresh = *CreateServerAdam({64});
  // Every single-byte flip and every truncation is refused.
  for (size_t i = 0; i < good.size(); i += 7) {
    std::string bad = good;
    bad[i] ^= 0x10;
    EXPECT_EQ(fresh->LoadState(bad).code(), absl::StatusCode::kInvalidArgument) << "flip " << i;
  }
  for (size_t n : {size_t{0}, size_t{5}, size_t{30}, good.size() / 2, good.size() - 1}) {
    EXPECT_EQ(fresh->LoadState(good.substr(0, n)).code(), absl::StatusCode::kInvalidArgument);
  }
  EXPECT_EQ(fresh->LoadState(good + "x").code(), absl::StatusCode::kInvalidArgument);
  // Wrong dim and wrong kind.
  auto other_dim = *CreateServerAdam({65});
  absl::Status s = other_dim->LoadState(good);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("dim 64"), std::string::npos) << s;
  auto yogi = *CreateServerYogi({64});
  s = yogi->LoadState(good);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("server_optimizer.adam"), std::string::npos) << s;
  auto sgd = *CreateServerSgd({64, 1.0, 0.9});
  EXPECT_EQ(sgd->LoadState(good).code(), absl::StatusCode::kInvalidArgument);
  auto plain_sgd = *CreateServerSgd({64});
  EXPECT_EQ(plain_sgd->LoadState(sgd->SaveState()).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*CreateServerFedDyn({64, 0.1}))->LoadState(good).code(),
            absl::StatusCode::kInvalidArgument);
  // A refused load leaves the state as it was.
  EXPECT_EQ(fresh->SaveState(), (*CreateServerAdam({64}))->SaveState());
  EXPECT_EQ(adam->SaveState(), before);
}

TEST(ServerOptimizer, BadParametersNameTheField) {
  struct Case {
    absl::Status status;
    std::string expected;
  };
  const Case cases[] = {
      {CreateServerAdam({10, 0.1, 1.2, 0.99, 1e-3}).status(),
       "aggregation.server_optimizer.beta1 must be in [0, 1), got 1.2"},
      {CreateServerYogi({10, 0.1, 0.9, 1.0, 1e-3}).status(),
       "aggregation.server_optimizer.beta2 must be in [0, 1), got 1"},
      {CreateServerYogi({10, 0.1, -0.1, 0.9, 1e-3}).status(),
       "aggregation.server_optimizer.beta1 must be in [0, 1), got -0.1"},
      {CreateServerAdagrad({10, 0.1, 0.0, 0.0}).status(),
       "aggregation.server_optimizer.tau must be finite and > 0, got 0"},
      {CreateServerAdam({10, -1, 0.9, 0.99, 1e-3}).status(),
       "aggregation.server_optimizer.learning_rate must be finite and > 0, got -1"},
      {CreateServerSgd({10, 1.0, 1.0}).status(),
       "aggregation.server_optimizer.momentum must be in [0, 1), got 1"},
      {CreateServerSgd({0}).status(), "aggregation.server_optimizer.dim must be > 0, got 0"},
      {CreateServerFedDyn({10, 0.0}).status(),
       "aggregation.server_optimizer.alpha must be finite and > 0, got 0"},
      {(*CreateServerSgd({3}))->SetLearningRate(0),
       "aggregation.server_optimizer.learning_rate must be finite and > 0, got 0"},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(c.status.code(), absl::StatusCode::kInvalidArgument) << c.status;
    EXPECT_EQ(c.status.message(), c.expected);
  }
  EXPECT_EQ(CreateServerAdam({10, 0.1, 0.9, 0.99, std::nan("")}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(ServerOptimizer, OverflowAndBadInputLeaveModelAndStateUnchanged) {
  auto sgd = *CreateServerSgd({3, 1.0, 0.5});
  std::vector<float> x = {1.0f, 2.0f, 3.0f};
  ASSERT_TRUE(sgd->Apply(std::vector<double>{0.1, 0.2, 0.3}, absl::MakeSpan(x)).ok());
  const std::vector<float> x_before = x;
  const std::string state_before = sgd->SaveState();
  EXPECT_EQ(sgd->Apply(std::vector<double>{0, 0, 1e300}, absl::MakeSpan(x)).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(sgd->Apply(std::vector<double>{0, std::nan(""), 0}, absl::MakeSpan(x)).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(sgd->Apply(std::vector<double>{0, 0}, absl::MakeSpan(x)).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(x, x_before);
  EXPECT_EQ(sgd->SaveState(), state_before);
  EXPECT_EQ(sgd->steps(), 1);

  auto adam = *CreateServerAdam({2, 1e38, 0.9, 0.99, 1e-9});
  std::vector<float> z = {3e38f, 0.0f};
  EXPECT_EQ(adam->Apply(std::vector<double>{1.0, 1.0}, absl::MakeSpan(z)).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(z[0], 3e38f);
  EXPECT_EQ(adam->steps(), 0);
}

}  // namespace
}  // namespace edgefl::aggregation
