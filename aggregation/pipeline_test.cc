#include "aggregation/pipeline.h"

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "common/status_reason.h"
#include "compression/chain.h"
#include "compression/update_codec.h"
#include "gtest/gtest.h"

namespace edgefl::aggregation {
namespace {

std::vector<float> Random(size_t dim, std::mt19937_64* rng, float scale) {
  std::normal_distribution<float> normal(0.0f, scale);
  std::vector<float> v(dim);
  for (float& x : v) x = normal(*rng);
  return v;
}

std::unique_ptr<Pipeline> Make(const PipelineOptions& o) {
  auto p = Pipeline::Create(o);
  EXPECT_TRUE(p.ok()) << p.status();
  return p.ok() ? std::move(*p) : nullptr;
}

double Norm(const std::vector<float>& v) {
  double s = 0;
  for (float x : v) s += static_cast<double>(x) * x;
  return std::sqrt(s);
}

// Hierarchical FedAvg (server/upstream_link.h): regions send CombinedUpdate with the total of
// their samples, the root takes their weighted mean. Against the flat mean of the same updates the
// only extra error is each region's mean rounded to float once: per coordinate
//   |hier - flat| <= ulp(model) + 2^-24 * sum_r (N_r / N) |m_r|
// (the first term: the root's final rounding may fall on the other side). Not bit-identical in
// general; the test shows how many coordinates differ.
TEST(Pipeline, RegionalCombinedUpdatesComposeToFlatFedAvgWithinOneRounding) {
  constexpr size_t kDim = 20000;
  std::mt19937_64 rng(7);
  const std::vector<float> start = Random(kDim, &rng, 0.5f);
  std::vector<std::vector<float>> deltas;
  std::vector<uint64_t> samples;
  std::uniform_int_distribution<int> count(10, 3000);
  for (int i = 0; i < 6; ++i) {
    deltas.push_back(Random(kDim, &rng, 0.01f * (i + 1)));
    samples.push_back(static_cast<uint64_t>(count(rng)));
  }
  PipelineOptions o;
  o.dim = kDim;
  // Flat: one server, six devices.
  auto flat = Make(o);
  flat->BeginRound(1);
  for (int i = 0; i < 6; ++i) ASSERT_TRUE(flat->Accumulate(deltas[i], samples[i]).ok());
  std::vector<float> flat_model = start;
  ASSERT_TRUE(flat->Aggregate(absl::MakeSpan(flat_model), 0).ok());
  // Hierarchical: two regions of three, then the root.
  auto root = Make(o);
  root->BeginRound(1);
  std::vector<std::vector<float>> region_means;
  std::vector<uint64_t> region_samples;
  for (int r = 0; r < 2; ++r) {
    auto region = Make(o);
    region->BeginRound(1);
    uint64_t n = 0;
    for (int i = 3 * r; i < 3 * r + 3; ++i) {
      ASSERT_TRUE(region->Accumulate(deltas[i], samples[i]).ok());
      n += samples[i];
    }
    std::vector<float> mean(kDim);
    ASSERT_TRUE(region->CombinedUpdate(absl::MakeSpan(mean)).ok());
    ASSERT_TRUE(root->Accumulate(mean, n).ok());
    region_means.push_back(std::move(mean));
    region_samples.push_back(n);
  }
  std::vector<float> hier_model = start;
  ASSERT_TRUE(root->Aggregate(absl::MakeSpan(hier_model), 0).ok());
  const double total = static_cast<double>(region_samples[0] + region_samples[1]);
  int differ = 0;
  for (size_t j = 0; j < kDim; ++j) {
    const float big = std::max(std::fabs(flat_model[j]), std::fabs(hier_model[j]));
    const double ulp = std::nextafter(big, INFINITY) - big;
    double mean_error = 0;
    for (int r = 0; r < 2; ++r) {
      mean_error +=
          region_samples[r] / total * std::fabs(region_means[r][j]) * std::ldexp(1.0, -24);
    }
    const double diff = std::fabs(static_cast<double>(hier_model[j]) - flat_model[j]);
    ASSERT_LE(diff, ulp + mean_error) << "coordinate " << j;
    differ += diff > 0;
  }
  // Rounding each region's mean does move some coordinates by an ulp (not bit identity), and
  // only a minority.
  EXPECT_LT(differ, static_cast<int>(kDim / 4));
  std::printf("hierarchical vs flat FedAvg: %d of %zu coordinates differ (each by <= 1 ulp)\n",
              differ, kDim);
}

TEST(Pipeline, CombinedUpdateRefusesRulesThatDoNotOnlyAverage) {
  PipelineOptions o;
  o.dim = 2;
  o.combiner = PipelineOptions::Combiner::kBuffered;
  o.buffered.rule = RobustRule::kMedian;
  o.buffered.max_updates = 4;
  auto buffered = Make(o);
  ASSERT_NE(buffered, nullptr);
  std::vector<float> out(2);
  EXPECT_EQ(buffered->CombinedUpdate(absl::MakeSpan(out)).code(), absl::StatusCode::kUnimplemented);
  PipelineOptions plain;
  plain.dim = 2;
  auto mean = Make(plain);
  mean->BeginRound(1);
  absl::Status none = mean->CombinedUpdate(absl::MakeSpan(out));
  EXPECT_EQ(none.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(ReasonOf(none), "no_updates");
  const std::vector<float> a = {1, 2}, b = {4, 8};
  ASSERT_TRUE(mean->Accumulate(a, 1).ok());
  ASSERT_TRUE(mean->Accumulate(b, 2).ok());
  ASSERT_TRUE(mean->CombinedUpdate(absl::MakeSpan(out)).ok());
  EXPECT_FLOAT_EQ(out[0], 3.0f);
  EXPECT_FLOAT_EQ(out[1], 6.0f);
}

TEST(Pipeline, NormBoundRejectsWithReasonAndLeavesTheRoundUnchanged) {
  PipelineOptions o;
  o.dim = 3;
  o.norm_bound = NormBoundFilter::Options{1.0, NormBoundFilter::Mode::kReject};
  auto p = Make(o);
  p->BeginRound(1);
  const std::vector<float> big = {3, 4, 0};  // norm 5
  absl::Status s = p->Accumulate(big, 10);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ReasonOf(s), "update_norm");
  EXPECT_EQ(p->num_accumulated(), 0);
  const std::vector<float> ok = {0.3f, 0.4f, 0};
  ASSERT_TRUE(p->Accumulate(ok, 10).ok());
  std::vector<float> global = {1, 1, 1};
  ASSERT_TRUE(p->Aggregate(absl::MakeSpan(global), 0).ok());
  EXPECT_FLOAT_EQ(global[0], 1.3f);
  EXPECT_FLOAT_EQ(global[1], 1.4f);
  EXPECT_EQ(p->report().updates_clipped, 0);
}

TEST(Pipeline, NormBoundClipScalesAndCounts) {
  PipelineOptions o;
  o.dim = 2;
  o.norm_bound = NormBoundFilter::Options{1.0, NormBoundFilter::Mode::kClip};
  auto p = Make(o);
  p->BeginRound(1);
  ASSERT_TRUE(p->Accumulate(std::vector<float>{3, 4}, 1).ok());  // clipped to (0.6, 0.8)
  ASSERT_TRUE(p->Accumulate(std::vector<float>{0, 0.5f}, 3).ok());
  std::vector<float> global = {0, 0};
  ASSERT_TRUE(p->Aggregate(absl::MakeSpan(global), 0).ok());
  EXPECT_NEAR(global[0], 0.6 / 4, 1e-7);
  EXPECT_NEAR(global[1], (0.8 + 1.5) / 4, 1e-7);
  EXPECT_EQ(p->report().updates_clipped, 1);
}

// With a filter the encoded path decodes into a dense scratch: the result must equal the dense
// path fed the decoded update.
TEST(Pipeline, EncodedUpdateThroughFiltersEqualsItsDecodedDenseForm) {
  constexpr size_t kDim = 5000;
  std::mt19937_64 rng(7);
  const std::vector<compression::TensorLayout> layout = {{"w", kDim}};
  auto chain = compression::ParseChain("topk:0.1|int8");
  ASSERT_TRUE(chain.ok());
  PipelineOptions o;
  o.dim = kDim;
  o.norm_bound = NormBoundFilter::Options{0.5, NormBoundFilter::Mode::kClip};
  auto encoded_pipeline = Make(o);
  auto dense_pipeline = Make(o);
  encoded_pipeline->BeginRound(1);
  dense_pipeline->BeginRound(1);
  for (int k = 0; k < 4; ++k) {
    std::vector<float> delta = Random(kDim, &rng, 0.02f);
    const std::vector<compression::TensorView> views = {{"w", delta}};
    auto encoded = compression::EncodeUpdate(*chain, views, nullptr, k);
    ASSERT_TRUE(encoded.ok()) << encoded.status();
    std::vector<float> decoded;
    ASSERT_TRUE(compression::DecodeToDense(*encoded, layout, &decoded).ok());
    ASSERT_TRUE(encoded_pipeline->AccumulateEncoded(*encoded, layout, *chain, 10 + k).ok());
    ASSERT_TRUE(dense_pipeline->Accumulate(decoded, 10 + k).ok());
  }
  std::vector<float> a(kDim, 0.25f), b(kDim, 0.25f);
  ASSERT_TRUE(encoded_pipeline->Aggregate(absl::MakeSpan(a), 0).ok());
  ASSERT_TRUE(dense_pipeline->Aggregate(absl::MakeSpan(b), 0).ok());
  EXPECT_EQ(std::memcmp(a.data(), b.data(), kDim * sizeof(float)), 0);
  EXPECT_GT(encoded_pipeline->report().updates_clipped, 0);
}

TEST(Pipeline, KrumWithTooFewUpdatesFailsWithAReasonAndKeepsTheModel) {
  PipelineOptions o;
  o.dim = 4;
  o.name = "krum";
  o.combiner = PipelineOptions::Combiner::kBuffered;
  o.buffered.rule = RobustRule::kKrum;
  o.buffered.num_byzantine = 1;
  o.buffered.max_updates = 8;
  auto p = Make(o);
  EXPECT_EQ(p->max_updates_per_round(), 8);
  p->BeginRound(1);
  for (int k = 0; k < 4; ++k) ASSERT_TRUE(p->Accumulate(std::vector<float>(4, k), 1).ok());
  std::vector<float> global = {1, 2, 3, 4};
  const std::vector<float> before = global;
  absl::Status s = p->Aggregate(absl::MakeSpan(global), 0);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(ReasonOf(s), "krum_too_few_updates");
  EXPECT_EQ(global, before);
  // One more update (n = 5 > 2f + 2) and the round can close.
  ASSERT_TRUE(p->Accumulate(std::vector<float>(4, 1.5f), 1).ok());
  ASSERT_TRUE(p->Aggregate(absl::MakeSpan(global), 0).ok());
}

TEST(Pipeline, MedianRejectsTheOutlierThatMovesTheMean) {
  PipelineOptions o;
  o.dim = 1;
  o.name = "fedmedian";
  o.combiner = PipelineOptions::Combiner::kBuffered;
  o.buffered.rule = RobustRule::kMedian;
  o.buffered.max_updates = 4;
  o.buffered.max_updates = 5;
  auto p = Make(o);
  p->BeginRound(1);
  for (float v : {0.1f, 0.2f, 0.3f, 0.2f, -400.0f}) ASSERT_TRUE(p->Accumulate({&v, 1}, 7).ok());
  std::vector<float> global = {0};
  ASSERT_TRUE(p->Aggregate(absl::MakeSpan(global), 0).ok());
  EXPECT_FLOAT_EQ(global[0], 0.2f);
}

TEST(Pipeline, RoundContextServerLrChangesTheStep) {
  PipelineOptions o;
  o.dim = 1;
  auto p = Make(o);
  RoundContext ctx(1);
  ctx.server_lr = 0.5;
  p->BeginRound(ctx);
  ASSERT_TRUE(p->Accumulate(std::vector<float>{2}, 1).ok());
  std::vector<float> global = {0};
  ASSERT_TRUE(p->Aggregate(absl::MakeSpan(global), 0).ok());
  EXPECT_FLOAT_EQ(global[0], 1.0f);
  EXPECT_DOUBLE_EQ(p->report().server_lr, 0.5);
}

PipelineOptions DpOptions(size_t dim, double sigma) {
  PipelineOptions o;
  o.dim = dim;
  o.name = "dp_fedavg";
  o.combiner = PipelineOptions::Combiner::kMean;
  PipelineOptions::Dp dp;
  dp.clip_norm = 0.5;
  dp.noise_multiplier = sigma;
  dp.delta = 1e-5;
  dp.seed = 99;
  o.dp = dp;
  return o;
}

TEST(Pipeline, DpNoiseHasStdSigmaCOverKAndEpsilonMatchesTheAccountant) {
  constexpr size_t kDim = 200000;
  constexpr int kUpdates = 4;
  std::mt19937_64 rng(3);
  std::vector<std::vector<float>> updates;
  for (int k = 0; k < kUpdates; ++k) updates.push_back(Random(kDim, &rng, 0.01f));
  auto run = [&](double sigma, std::vector<float>* global, RoundReport* report) {
    auto p = Make(DpOptions(kDim, sigma));
    RoundContext ctx(1);
    ctx.num_selected = kUpdates;
    ctx.num_eligible = 40;
    p->BeginRound(ctx);
    for (int k = 0; k < kUpdates; ++k) ASSERT_TRUE(p->Accumulate(updates[k], 100 * (k + 1)).ok());
    global->assign(kDim, 0.0f);
    ASSERT_TRUE(p->Aggregate(absl::MakeSpan(*global), 0).ok());
    *report = p->report();
  };
  std::vector<float> clean, noisy;
  RoundReport clean_report, noisy_report;
  run(0.0, &clean, &clean_report);
  run(2.0, &noisy, &noisy_report);
  // Noise-free: the unweighted mean of the updates clipped to 0.5 (each has norm ~4.5).
  for (size_t i = 0; i < 10; ++i) {
    double expect = 0;
    for (int k = 0; k < kUpdates; ++k) expect += updates[k][i] * (0.5 / Norm(updates[k]));
    EXPECT_NEAR(clean[i], expect / kUpdates, 1e-7);
  }
  EXPECT_EQ(clean_report.updates_dp_clipped, kUpdates);
  EXPECT_TRUE(std::isinf(*clean_report.dp_epsilon));
  // The noise: std sigma C / K = 2 * 0.5 / 4 = 0.25, mean 0 (200k draws: 1% and 0.003 slack).
  double sum = 0, sq = 0;
  for (size_t i = 0; i < kDim; ++i) {
    const double d = static_cast<double>(noisy[i]) - clean[i];
    sum += d;
    sq += d * d;
  }
  const double mean = sum / kDim;
  const double sd = std::sqrt(sq / kDim - mean * mean);
  EXPECT_NEAR(sd, 0.25, 0.0025);
  EXPECT_NEAR(mean, 0.0, 0.003);
  // Epsilon: an independent accountant composing one step with q = 4 / 40, sigma = 2.
  auto accountant = RdpAccountant::Create({});
  ASSERT_TRUE(accountant.ok());
  ASSERT_TRUE((*accountant)->Compose(0.1, 2.0).ok());
  auto eps = (*accountant)->GetEpsilon(1e-5);
  ASSERT_TRUE(eps.ok());
  ASSERT_TRUE(noisy_report.dp_epsilon.has_value());
  EXPECT_DOUBLE_EQ(*noisy_report.dp_epsilon, eps->epsilon);
  EXPECT_DOUBLE_EQ(*noisy_report.dp_clip_norm, 0.5);
}

TEST(Pipeline, DpRequiresTheUnweightedMean) {
  PipelineOptions o = DpOptions(4, 1.0);
  o.combiner = PipelineOptions::Combiner::kWeightedMean;
  auto p = Pipeline::Create(o);
  EXPECT_EQ(p.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(p.status().message().find("mean"), std::string::npos) << p.status();
}

// A pipeline restored from SaveState after round r continues exactly as the uninterrupted one:
// optimizer moments, DP noise stream, adaptive clip norm and accountant all round-trip.
void ExpectResumeIsBitIdentical(const PipelineOptions& o) {
  constexpr int kRounds = 4;
  const size_t dim = o.dim;
  std::mt19937_64 rng(11);
  std::vector<std::vector<std::vector<float>>> rounds(kRounds);
  for (auto& r : rounds) {
    for (int k = 0; k < 5; ++k) r.push_back(Random(dim, &rng, 0.05f * (k + 1)));
  }
  auto play = [&](Pipeline* p, int from, int to, std::vector<float>* global) {
    for (int r = from; r < to; ++r) {
      RoundContext ctx(r + 1);
      ctx.num_selected = 5;
      ctx.num_eligible = 20;
      p->BeginRound(ctx);
      for (int k = 0; k < 5; ++k) ASSERT_TRUE(p->Accumulate(rounds[r][k], 10 + k).ok());
      ASSERT_TRUE(p->Aggregate(absl::MakeSpan(*global), 0).ok());
    }
  };
  std::vector<float> straight(dim, 0.1f);
  auto a = Make(o);
  play(a.get(), 0, kRounds, &straight);

  std::vector<float> resumed(dim, 0.1f);
  auto b = Make(o);
  play(b.get(), 0, 2, &resumed);
  const std::string state = b->SaveState();
  b.reset();  // the process dies
  auto c = Make(o);
  ASSERT_TRUE(c->LoadState(state).ok());
  play(c.get(), 2, kRounds, &resumed);
  EXPECT_EQ(std::memcmp(straight.data(), resumed.data(), dim * sizeof(float)), 0) << o.name;
  EXPECT_EQ(a->report().dp_epsilon, c->report().dp_epsilon);
  EXPECT_EQ(a->report().dp_clip_norm, c->report().dp_clip_norm);
  ASSERT_EQ(a->averaged_model().has_value(), o.averaging.has_value());
  ASSERT_EQ(c->averaged_model().has_value(), o.averaging.has_value());
  if (o.averaging.has_value()) {
    EXPECT_EQ(*a->averaged_model(), *c->averaged_model()) << o.name;
  }
}

PipelineOptions FedAdam(size_t dim) {
  PipelineOptions o;
  o.dim = dim;
  o.name = "fedadam";
  o.optimizer = "adam";
  return o;
}

TEST(Pipeline, FedAdamResumesBitIdentically) { ExpectResumeIsBitIdentical(FedAdam(300)); }

TEST(Pipeline, FedAvgMResumesBitIdentically) {
  PipelineOptions o;
  o.dim = 300;
  o.name = "fedavgm";
  o.sgd.momentum = 0.9;
  ExpectResumeIsBitIdentical(o);
}

TEST(Pipeline, AdaptiveDpResumesBitIdentically) {
  PipelineOptions o = DpOptions(300, 1.1);
  o.name = "dp_fedavg_adaptive";
  AdaptiveClipping::Options ac;
  ac.count_noise_stddev = 1.0;
  ac.seed = 5;
  o.dp->adaptive = ac;
  ExpectResumeIsBitIdentical(o);
}

TEST(Pipeline, FedAdamWithModelAveragingResumesBitIdentically) {
  PipelineOptions o = FedAdam(300);
  ModelAverage::Options avg;
  avg.from_round = 2;  // the state saved after round 2 holds one model
  o.averaging = avg;
  ExpectResumeIsBitIdentical(o);
  o.averaging->ema_decay = 0.7;
  ExpectResumeIsBitIdentical(o);
}

// Averaging changes nothing the devices see: the global model moves as without it, and the
// averaged model is the mean of the global models since from_round (none before).
TEST(Pipeline, ModelAveragingLeavesTheGlobalModelAndAveragesItsRounds) {
  const PipelineOptions plain = FedAdam(50);
  PipelineOptions averaged = plain;
  averaged.averaging = ModelAverage::Options();
  averaged.averaging->from_round = 3;
  auto p = Make(plain);
  auto q = Make(averaged);
  std::mt19937_64 rng(7);
  std::vector<float> gp(50, 0.0f), gq(50, 0.0f);
  std::vector<std::vector<float>> globals;
  for (int r = 1; r <= 5; ++r) {
    p->BeginRound(r);
    q->BeginRound(r);
    for (int k = 0; k < 3; ++k) {
      const std::vector<float> d = Random(50, &rng, 0.1f);
      ASSERT_TRUE(p->Accumulate(d, 5).ok());
      ASSERT_TRUE(q->Accumulate(d, 5).ok());
    }
    ASSERT_TRUE(p->Aggregate(absl::MakeSpan(gp), 0).ok());
    ASSERT_TRUE(q->Aggregate(absl::MakeSpan(gq), 0).ok());
    EXPECT_EQ(gp, gq) << "round " << r;
    EXPECT_FALSE(p->averaged_model().has_value());
    globals.push_back(gq);
    if (r < 3) {
      EXPECT_FALSE(q->averaged_model().has_value()) << "round " << r;
      continue;
    }
    ASSERT_TRUE(q->averaged_model().has_value()) << "round " << r;
    std::vector<float> want(50);
    for (size_t i = 0; i < 50; ++i) {
      double sum = 0;
      for (int t = 3; t <= r; ++t) sum += globals[t - 1][i];
      want[i] = static_cast<float>(sum / (r - 2));
    }
    EXPECT_EQ(*q->averaged_model(), want) << "round " << r;
  }
  // A state with averaging does not load without it, nor the other way round.
  EXPECT_EQ(p->LoadState(q->SaveState()).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(q->LoadState(p->SaveState()).code(), absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(q->averaged_model().has_value());
}

TEST(Pipeline, LoadStateRefusesForeignOrCorruptStateAndKeepsItsOwn) {
  const PipelineOptions adam = FedAdam(10);
  auto p = Make(adam);
  p->BeginRound(1);
  ASSERT_TRUE(p->Accumulate(std::vector<float>(10, 0.5f), 1).ok());
  std::vector<float> global(10, 0.0f);
  ASSERT_TRUE(p->Aggregate(absl::MakeSpan(global), 0).ok());
  const std::string own = p->SaveState();

  PipelineOptions yogi = adam;
  yogi.name = "fedyogi";
  yogi.optimizer = "yogi";
  EXPECT_EQ(p->LoadState(Make(yogi)->SaveState()).code(), absl::StatusCode::kInvalidArgument);
  std::string corrupt = own;
  corrupt[corrupt.size() / 2] ^= 1;
  EXPECT_EQ(p->LoadState(corrupt).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(p->LoadState(own.substr(0, own.size() - 5)).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(p->SaveState(), own);
}

}  // namespace
}  // namespace edgefl::aggregation
