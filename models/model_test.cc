// Tests of model_spec.h and model_runner.h (torch-free: this TU does not include LibTorch).
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "common/memory.h"
#include "data/dataset.h"
#include "models/model_runner.h"
#include "models/model_spec.h"

namespace edgefl::models {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::string InitCnnPath() {
  const char* env = std::getenv("EDGEFL_WORKLOAD_DIR");
  return std::string(env != nullptr ? env : EDGEFL_DEFAULT_WORKLOAD_DIR) +
         "/init_cnn_seed0.f32";
}

// The first 2000 training and 1000 test images, loaded once.
const data::ImageDataset& TrainSubset() {
  static const auto* data = [] {
    auto d = data::LoadFashionMnist(data::kDefaultFashionMnistDir, data::Split::kTrain, std::nullopt, 2000);
    EXPECT_TRUE(d.ok()) << d.status();
    return new data::ImageDataset(d.ok() ? *d : data::ImageDataset{});
  }();
  return *data;
}
const data::ImageDataset& TestSubset() {
  static const auto* data = [] {
    auto d = data::LoadFashionMnist(data::kDefaultFashionMnistDir, data::Split::kTest, std::nullopt, 1000);
    EXPECT_TRUE(d.ok()) << d.status();
    return new data::ImageDataset(d.ok() ? *d : data::ImageDataset{});
  }();
  return *data;
}

std::vector<std::string> Names(const proto::ModelSpec& spec) {
  std::vector<std::string> names;
  for (const auto& t : spec.tensors()) names.push_back(t.name());
  return names;
}

std::vector<int64_t> Shape(const proto::ModelSpec& spec, int i) {
  return {spec.tensors(i).shape().begin(), spec.tensors(i).shape().end()};
}

TEST(ModelSpec, RegistryNames) {
  EXPECT_THAT(ModelNames(), ElementsAre("fedavg_cnn", "small_cnn", "mlp"));
}

TEST(ModelSpec, FedAvgCnnHasWorkloadLayout) {
  auto spec = SpecForModel("fedavg_cnn");
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->model(), "fedavg_cnn");
  EXPECT_EQ(NumParameters(*spec), 1663370);
  EXPECT_THAT(Names(*spec), ElementsAre("conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias",
                                        "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"));
  EXPECT_THAT(Shape(*spec, 0), ElementsAre(32, 1, 5, 5));
  EXPECT_THAT(Shape(*spec, 1), ElementsAre(32));
  EXPECT_THAT(Shape(*spec, 2), ElementsAre(64, 32, 5, 5));
  EXPECT_THAT(Shape(*spec, 3), ElementsAre(64));
  EXPECT_THAT(Shape(*spec, 4), ElementsAre(512, 3136));
  EXPECT_THAT(Shape(*spec, 5), ElementsAre(512));
  EXPECT_THAT(Shape(*spec, 6), ElementsAre(10, 512));
  EXPECT_THAT(Shape(*spec, 7), ElementsAre(10));
}

TEST(ModelSpec, SmallModels) {
  auto small = SpecForModel("small_cnn");
  ASSERT_TRUE(small.ok()) << small.status();
  EXPECT_LT(NumParameters(*small), 100000);
  EXPECT_EQ(NumParameters(*small), 54314);
  auto mlp = SpecForModel("mlp");
  ASSERT_TRUE(mlp.ok()) << mlp.status();
  EXPECT_EQ(NumParameters(*mlp), 101770);
  EXPECT_THAT(Names(*mlp), ElementsAre("fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"));
}

// fl-client serves blocks under kTrainingMmapThresholdBytes from its heap: a gradient larger than
// that would be a fresh mmap, and a page fault per 4 KiB, in every batch (common/memory.h).
TEST(ModelSpec, EveryGradientFitsUnderTheTrainingMmapThreshold) {
  for (const std::string& name : ModelNames()) {
    auto spec = SpecForModel(name);
    ASSERT_TRUE(spec.ok()) << spec.status();
    for (const auto& t : spec->tensors()) {
      int64_t bytes = sizeof(float);
      for (int64_t d : t.shape()) bytes *= d;
      EXPECT_LT(bytes, edgefl::kTrainingMmapThresholdBytes) << name << " " << t.name();
    }
  }
}

TEST(ModelSpec, UnknownModelIsNotFound) {
  auto spec = SpecForModel("resnet50");
  EXPECT_EQ(spec.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(spec.status().message(), HasSubstr("resnet50"));
  EXPECT_THAT(spec.status().message(), HasSubstr("fedavg_cnn"));
  EXPECT_EQ(InitialWeights("resnet50", 0).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(ModelRunner::Create("resnet50", 1).status().code(), absl::StatusCode::kNotFound);
}

TEST(ModelSpec, CheckSpecMatchesNamesTheTensor) {
  const proto::ModelSpec want = *SpecForModel("fedavg_cnn");
  EXPECT_TRUE(CheckSpecMatches(want, want).ok());

  proto::ModelSpec reshaped = want;
  reshaped.mutable_tensors(4)->set_shape(1, 3137);
  absl::Status s = CheckSpecMatches(want, reshaped);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("fc1.weight"));
  EXPECT_THAT(s.message(), HasSubstr("[512,3136]"));

  proto::ModelSpec renamed = want;
  renamed.mutable_tensors(2)->set_name("conv2.w");
  EXPECT_THAT(CheckSpecMatches(want, renamed).message(), HasSubstr("conv2.weight"));

  proto::ModelSpec shorter = want;
  shorter.mutable_tensors()->RemoveLast();
  EXPECT_THAT(CheckSpecMatches(want, shorter).message(), HasSubstr("fc2.bias"));
  EXPECT_THAT(CheckSpecMatches(shorter, want).message(), HasSubstr("fc2.bias"));
}

TEST(ModelSpec, LoadsInitCnnSeed0) {
  const proto::ModelSpec spec = *SpecForModel("fedavg_cnn");
  auto w = LoadRawWeights(InitCnnPath(), spec);
  ASSERT_TRUE(w.ok()) << w.status();
  ASSERT_EQ(w->size(), 1663370u);
  double max_abs = 0;
  for (float x : *w) {
    ASSERT_TRUE(std::isfinite(x));
    max_abs = std::max(max_abs, std::abs(static_cast<double>(x)));
  }
  // Default (kaiming-uniform) init: |w| <= 1/sqrt(fan_in) <= 1/sqrt(25) = 0.2.
  EXPECT_LE(max_abs, 0.2 + 1e-6);
  EXPECT_GT(max_abs, 0.1);
}

TEST(ModelSpec, LoadRawWeightsChecksSize) {
  auto w = LoadRawWeights(InitCnnPath(), *SpecForModel("small_cnn"));
  EXPECT_EQ(w.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(w.status().message(), HasSubstr("6653480 bytes"));
  EXPECT_EQ(LoadRawWeights("/nonexistent/w.f32", *SpecForModel("mlp")).status().code(),
            absl::StatusCode::kNotFound);
}

TEST(ModelSpec, InitialWeightsAreSeeded) {
  auto a = InitialWeights("small_cnn", 1);
  auto b = InitialWeights("small_cnn", 1);
  auto c = InitialWeights("small_cnn", 2);
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  EXPECT_EQ(a->size(), 54314u);
  EXPECT_EQ(*a, *b);
  EXPECT_NE(*a, *c);
}

TEST(ModelSpec, InitialWeightsSeed0ReproduceWorkloadInit) {
  // init_cnn_seed0.f32 is PyTorch's default init under torch.manual_seed(0); LibTorch's C++
  // modules draw the same numbers in the same order.
  auto file = LoadRawWeights(InitCnnPath(), *SpecForModel("fedavg_cnn"));
  ASSERT_TRUE(file.ok()) << file.status();
  auto init = InitialWeights("fedavg_cnn", 0);
  ASSERT_TRUE(init.ok()) << init.status();
  EXPECT_TRUE(*init == *file);
}

TEST(ModelRunner, SetGetWeightsRoundTrip) {
  auto runner = ModelRunner::Create("fedavg_cnn", 1);
  ASSERT_TRUE(runner.ok()) << runner.status();
  EXPECT_EQ((*runner)->num_parameters(), 1663370);
  EXPECT_TRUE(CheckSpecMatches(*SpecForModel("fedavg_cnn"), (*runner)->spec()).ok());
  // A new runner starts from InitialWeights(name, 0).
  std::vector<float> got;
  (*runner)->GetWeights(&got);
  EXPECT_EQ(got, *InitialWeights("fedavg_cnn", 0));

  auto w = LoadRawWeights(InitCnnPath(), (*runner)->spec());
  ASSERT_TRUE(w.ok()) << w.status();
  ASSERT_TRUE((*runner)->SetWeights(*w).ok());
  (*runner)->GetWeights(&got);
  EXPECT_EQ(got, *w);
}

TEST(ModelRunner, WrongSizeSetWeightsFails) {
  auto runner = ModelRunner::Create("small_cnn", 1);
  ASSERT_TRUE(runner.ok()) << runner.status();
  std::vector<float> w(54313, 0.f);
  absl::Status s = (*runner)->SetWeights(w);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("54313"));
}

TEST(ModelRunner, RejectsBadInputs) {
  auto runner = ModelRunner::Create("mlp", 1);
  ASSERT_TRUE(runner.ok()) << runner.status();
  data::ImageDataset empty;
  EXPECT_EQ((*runner)->Train(empty, {}, nullptr).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*runner)->Evaluate(empty, 100).status().code(), absl::StatusCode::kInvalidArgument);
  TrainOptions bad;
  bad.batch_size = 0;
  EXPECT_EQ((*runner)->Train(TestSubset(), bad, nullptr).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*runner)->Evaluate(TestSubset(), 0).status().code(),
            absl::StatusCode::kInvalidArgument);
  data::ImageDataset ragged = TestSubset();
  ragged.pixels.pop_back();
  EXPECT_EQ((*runner)->Evaluate(ragged, 100).status().code(), absl::StatusCode::kInvalidArgument);
  data::ImageDataset bad_label = TestSubset();
  bad_label.labels[7] = 10;
  EXPECT_EQ((*runner)->Evaluate(bad_label, 100).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(ModelRunner, UntrainedFedAvgCnnIsAtChance) {
  auto runner = ModelRunner::Create("fedavg_cnn", 1);
  ASSERT_TRUE(runner.ok()) << runner.status();
  ASSERT_TRUE((*runner)->SetWeights(*LoadRawWeights(InitCnnPath(), (*runner)->spec())).ok());
  auto eval = (*runner)->Evaluate(TestSubset(), 500);
  ASSERT_TRUE(eval.ok()) << eval.status();
  EXPECT_EQ(eval->samples, 1000);
  EXPECT_NEAR(eval->loss, std::log(10.0), 0.1);
  EXPECT_LT(eval->accuracy, 0.3);
}

TEST(ModelRunner, SmallCnnLearnsFashionMnist) {
  auto runner = ModelRunner::Create("small_cnn", 1);
  ASSERT_TRUE(runner.ok()) << runner.status();
  TrainOptions options;  // 1 epoch, batch 32, lr 0.05
  // 63 plain-SGD steps from the default init only reach ~50%; a little momentum gets ~60%.
  options.momentum = 0.5;
  options.seed = 1;
  int calls = 0;
  int64_t last_done = 0, last_total = 0;
  auto train = (*runner)->Train(TrainSubset(), options, [&](int64_t done, int64_t total, double) {
    ++calls;
    last_done = done;
    last_total = total;
  });
  ASSERT_TRUE(train.ok()) << train.status();
  EXPECT_EQ(train->samples, 2000);
  EXPECT_EQ(calls, 63);  // ceil(2000 / 32): the last partial batch is kept
  EXPECT_EQ(last_done, 2000);
  EXPECT_EQ(last_total, 2000);
  EXPECT_LT(train->mean_loss, std::log(10.0));
  EXPECT_GT(train->accuracy, 0.2);
  auto eval = (*runner)->Evaluate(TestSubset(), 500);
  ASSERT_TRUE(eval.ok()) << eval.status();
  std::printf(
      "small_cnn 1 epoch on 2000: train loss %.3f acc %.3f (%.2f s); test loss %.3f "
      "acc %.3f\n",
      train->mean_loss, train->accuracy, train->seconds, eval->loss, eval->accuracy);
  EXPECT_GT(eval->accuracy, 0.5);
}

TEST(ModelRunner, TrainingIsDeterministicForASeed) {
  auto runner = ModelRunner::Create("small_cnn", 1);
  ASSERT_TRUE(runner.ok()) << runner.status();
  const std::vector<float> init = *InitialWeights("small_cnn", 5);
  TrainOptions options;
  options.max_samples = 500;
  options.epochs = 2;
  options.momentum = 0.9;
  options.seed = 42;
  auto run = [&](uint64_t seed, std::vector<float>* out) {
    ASSERT_TRUE((*runner)->SetWeights(init).ok());
    options.seed = seed;
    auto r = (*runner)->Train(TrainSubset(), options, nullptr);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->samples, 500);
    (*runner)->GetWeights(out);
  };
  std::vector<float> a, b, c;
  run(42, &a);
  run(42, &b);
  run(43, &c);
  EXPECT_NE(a, init);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
}


// max_i |a_i - b_i| in double; infinite when the sizes differ.
double MaxAbsDiff(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return std::numeric_limits<double>::infinity();
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    m = std::max(m, std::abs(static_cast<double>(a[i]) - static_cast<double>(b[i])));
  }
  return m;
}

// The first n images of TrainSubset().
data::ImageDataset FirstTrainImages(int64_t n) {
  data::ImageDataset subset = TrainSubset();
  subset.labels.resize(n);
  subset.pixels.resize(n * 784);
  return subset;
}

// Plain SGD options of one full batch per step (epochs = steps), as the references below take.
TrainOptions FullBatch(int steps, int64_t samples, double lr, uint64_t seed) {
  TrainOptions options;
  options.epochs = steps;
  options.batch_size = static_cast<int>(samples);
  options.lr = lr;
  options.seed = seed;
  return options;
}

// The local-training terms the double reference below can add to plain SGD.
struct ReferenceTerms {
  double mu = 0;                    // FedProx: + mu (w - w_start) on every gradient
  std::vector<double> logit_scale;  // FedRS: logits multiplied by this (empty = 1)
  std::vector<double> linear;       // FedDyn: - linear on every gradient (empty = 0)
  bool freeze_head = false;         // FedBABU: fc2 takes no step
  double ntd_beta = 0, ntd_tau = 1; // FedNTD: + beta tau^2 KL(start || current), not-true classes
};

// Local training terms against a double-precision reference: the mlp (784-128-ReLU-10),
// full-batch plain SGD steps on real images with `terms`, written out by hand in double. Full
// batches make the result independent of the shuffling order.
std::vector<float> ReferenceMlpSgd(const std::vector<float>& start, const data::ImageDataset& data,
                                   int64_t n, int steps, double lr, const ReferenceTerms& terms = {}) {
  constexpr int kIn = 784, kHidden = 128, kOut = 10;
  const double mu = terms.mu;
  const std::vector<double>& logit_scale = terms.logit_scale;
  const std::vector<double>& linear = terms.linear;
  std::vector<double> w(start.begin(), start.end());
  const std::vector<double> w0 = w;
  // Spec order: fc1.weight [128, 784], fc1.bias [128], fc2.weight [10, 128], fc2.bias [10].
  const size_t w1 = 0, b1 = w1 + kHidden * kIn, w2 = b1 + kHidden, b2 = w2 + kOut * kHidden;
  std::vector<double> x(kIn), z1(kHidden), h(kHidden), z2(kOut), dh(kHidden);
  // The mlp's logits for sample s with weights v (no scale).
  auto logits_of = [&](const std::vector<double>& v, int64_t s) {
    std::vector<double> hidden(kHidden), out(kOut);
    for (int i = 0; i < kHidden; ++i) {
      double acc = v[b1 + i];
      for (int j = 0; j < kIn; ++j) acc += v[w1 + i * kIn + j] * (data.pixels[s * kIn + j] / 255.0);
      hidden[i] = acc > 0 ? acc : 0;
    }
    for (int k = 0; k < kOut; ++k) {
      double acc = v[b2 + k];
      for (int i = 0; i < kHidden; ++i) acc += v[w2 + k * kHidden + i] * hidden[i];
      out[k] = acc;
    }
    return out;
  };
  // softmax(z / tau) over every class but `label` (its own entry 0).
  auto not_true_softmax = [&](const std::vector<double>& z, int label) {
    std::vector<double> p(kOut, 0.0);
    double max = -1e300, sum = 0;
    for (int k = 0; k < kOut; ++k) {
      if (k != label) max = std::max(max, z[k] / terms.ntd_tau);
    }
    for (int k = 0; k < kOut; ++k) {
      if (k != label) sum += (p[k] = std::exp(z[k] / terms.ntd_tau - max));
    }
    for (double& v : p) v /= sum;
    return p;
  };
  for (int step = 0; step < steps; ++step) {
    std::vector<double> g(w.size(), 0.0);
    for (int64_t s = 0; s < n; ++s) {
      for (int j = 0; j < kIn; ++j) x[j] = data.pixels[s * kIn + j] / 255.0;
      for (int i = 0; i < kHidden; ++i) {
        double acc = w[b1 + i];
        for (int j = 0; j < kIn; ++j) acc += w[w1 + i * kIn + j] * x[j];
        z1[i] = acc;
        h[i] = acc > 0 ? acc : 0;
      }
      double max = -1e300;
      for (int k = 0; k < kOut; ++k) {
        double acc = w[b2 + k];
        for (int i = 0; i < kHidden; ++i) acc += w[w2 + k * kHidden + i] * h[i];
        z2[k] = logit_scale.empty() ? acc : acc * logit_scale[k];
        max = std::max(max, z2[k]);
      }
      double denom = 0;
      for (int k = 0; k < kOut; ++k) denom += std::exp(z2[k] - max);
      // FedNTD: d/dz_k of beta tau^2 KL(t || s) / n over the not-true softmaxes at temperature
      // tau is beta tau (s_k - t_k) / n (0 for the true class).
      std::vector<double> ntd(kOut, 0.0);
      if (terms.ntd_beta > 0) {
        const int label = data.labels[s];
        const std::vector<double> student = not_true_softmax(z2, label);
        const std::vector<double> teacher = not_true_softmax(logits_of(w0, s), label);
        for (int k = 0; k < kOut; ++k) {
          ntd[k] = terms.ntd_beta * terms.ntd_tau * (student[k] - teacher[k]) / n;
        }
      }
      std::fill(dh.begin(), dh.end(), 0.0);
      for (int k = 0; k < kOut; ++k) {
        // d loss / d raw logit: the softmax's gradient times the logit's scale.
        const double dz = ((std::exp(z2[k] - max) / denom - (k == data.labels[s] ? 1 : 0)) / n +
                           ntd[k]) *
                          (logit_scale.empty() ? 1.0 : logit_scale[k]);
        g[b2 + k] += dz;
        for (int i = 0; i < kHidden; ++i) {
          g[w2 + k * kHidden + i] += dz * h[i];
          dh[i] += dz * w[w2 + k * kHidden + i];
        }
      }
      for (int i = 0; i < kHidden; ++i) {
        if (z1[i] <= 0) continue;
        g[b1 + i] += dh[i];
        for (int j = 0; j < kIn; ++j) g[w1 + i * kIn + j] += dh[i] * x[j];
      }
    }
    // A frozen head (fc2's weight and bias, the tail of the vector) takes no step.
    for (size_t p = 0; p < (terms.freeze_head ? w2 : w.size()); ++p) {
      w[p] -= lr * (g[p] + mu * (w[p] - w0[p]) - (linear.empty() ? 0.0 : linear[p]));
    }
  }
  return std::vector<float>(w.begin(), w.end());
}

TEST(ModelRunner, FedProxMatchesADoublePrecisionReference) {
  constexpr int64_t kSamples = 64;
  constexpr int kSteps = 4;
  auto runner = ModelRunner::Create("mlp", 1);
  ASSERT_TRUE(runner.ok()) << runner.status();
  const data::ImageDataset subset = FirstTrainImages(kSamples);
  // Start away from the anchor's neighbourhood so the proximal term is large: a few plain steps
  // first would not do (the anchor is where Train starts), so use a big lr and mu.
  const std::vector<float> start = *InitialWeights("mlp", 3);
  TrainOptions options = FullBatch(kSteps, kSamples, 0.5, 9);
  auto train = [&](double mu) {
    EXPECT_TRUE((*runner)->SetWeights(start).ok());
    options.proximal_mu = mu;
    EXPECT_TRUE((*runner)->Train(subset, options, nullptr).ok());
    std::vector<float> out;
    (*runner)->GetWeights(&out);
    return out;
  };
  const std::vector<float> prox = train(0.8);
  const std::vector<float> plain = train(0.0);
  ReferenceTerms prox_terms;
  prox_terms.mu = 0.8;
  const std::vector<float> ref_prox = ReferenceMlpSgd(start, subset, kSamples, kSteps, 0.5, prox_terms);
  const std::vector<float> ref_plain = ReferenceMlpSgd(start, subset, kSamples, kSteps, 0.5);
  const double err_prox = MaxAbsDiff(prox, ref_prox);
  const double err_plain = MaxAbsDiff(plain, ref_plain);
  const double prox_effect = MaxAbsDiff(ref_prox, ref_plain);
  // float32 training vs the double reference: a few 1e-6 after 4 steps; the proximal term
  // moves weights by orders of magnitude more, so a missing or wrong term cannot pass.
  EXPECT_LT(err_prox, 2e-5);
  EXPECT_LT(err_plain, 2e-5);
  EXPECT_GT(prox_effect, 100 * err_prox);
  std::printf("fedprox: max |torch - ref| %.2e (mu 0.8), %.2e (mu 0); prox term moved %.2e\n",
              err_prox, err_plain, prox_effect);
  options.proximal_mu = -1;
  EXPECT_EQ((*runner)->Train(subset, options, nullptr).status().code(),
            absl::StatusCode::kInvalidArgument);
}

// FedDyn: the device's linear term g is subtracted from every gradient, on top of the proximal
// term (mu = alpha). Against the same double reference with the term written in.
TEST(ModelRunner, FedDynLinearTermMatchesADoublePrecisionReference) {
  constexpr int64_t kSamples = 64;
  constexpr int kSteps = 4;
  constexpr double kLr = 0.5, kMu = 0.3;
  auto runner = ModelRunner::Create("mlp", 1);
  ASSERT_TRUE(runner.ok()) << runner.status();
  const data::ImageDataset subset = FirstTrainImages(kSamples);
  const std::vector<float> start = *InitialWeights("mlp", 4);
  // A linear term of the size FedDyn's g reaches: alpha times a round's weight change.
  std::mt19937_64 rng(17);
  std::normal_distribution<float> normal(0.0f, 0.02f);
  std::vector<float> linear(start.size());
  for (float& v : linear) v = normal(rng);
  TrainOptions options = FullBatch(kSteps, kSamples, kLr, 5);
  options.proximal_mu = kMu;
  options.linear_term = linear;
  ASSERT_TRUE((*runner)->SetWeights(start).ok());
  ASSERT_TRUE((*runner)->Train(subset, options, nullptr).ok());
  std::vector<float> dyn;
  (*runner)->GetWeights(&dyn);
  const std::vector<double> linear_d(linear.begin(), linear.end());
  ReferenceTerms prox_terms;
  prox_terms.mu = kMu;
  ReferenceTerms dyn_terms = prox_terms;
  dyn_terms.linear = linear_d;
  const std::vector<float> ref = ReferenceMlpSgd(start, subset, kSamples, kSteps, kLr, dyn_terms);
  const std::vector<float> ref_without = ReferenceMlpSgd(start, subset, kSamples, kSteps, kLr, prox_terms);
  const double err = MaxAbsDiff(dyn, ref);
  const double effect = MaxAbsDiff(ref, ref_without);
  EXPECT_LT(err, 2e-5);
  EXPECT_GT(effect, 100 * err);
  std::printf("feddyn: max |torch - ref| %.2e; the linear term moved %.2e\n", err, effect);
  // A term of the wrong size is refused before any step.
  linear.pop_back();
  options.linear_term = linear;
  ASSERT_TRUE((*runner)->SetWeights(start).ok());
  EXPECT_EQ((*runner)->Train(subset, options, nullptr).status().code(),
            absl::StatusCode::kInvalidArgument);
  std::vector<float> after;
  (*runner)->GetWeights(&after);
  EXPECT_EQ(after, start);
}

// FedBABU: with freeze_head the final layer keeps its weights bit for bit and the body trains
// exactly as the double reference with a frozen head (here beside the proximal term, whose
// gradient the head then must not take either); every zoo model's head is its last layer.
TEST(ModelRunner, FrozenHeadTrainsTheBodyOnlyAsTheDoublePrecisionReference) {
  constexpr int64_t kSamples = 64;
  constexpr int kSteps = 4;
  constexpr double kLr = 0.5, kMu = 0.3;
  auto runner = ModelRunner::Create("mlp", 1);
  ASSERT_TRUE(runner.ok()) << runner.status();
  const data::ImageDataset subset = FirstTrainImages(kSamples);
  const std::vector<float> start = *InitialWeights("mlp", 6);
  const size_t head = 10 * 128 + 10;  // fc2.weight [10, 128] and fc2.bias [10], last in spec order
  TrainOptions options = FullBatch(kSteps, kSamples, kLr, 2);
  options.proximal_mu = kMu;
  options.freeze_head = true;
  ASSERT_TRUE((*runner)->SetWeights(start).ok());
  ASSERT_TRUE((*runner)->Train(subset, options, nullptr).ok());
  std::vector<float> frozen;
  (*runner)->GetWeights(&frozen);
  ASSERT_EQ(frozen.size(), start.size());
  EXPECT_TRUE(std::equal(frozen.end() - head, frozen.end(), start.end() - head));
  ReferenceTerms prox_terms;
  prox_terms.mu = kMu;
  ReferenceTerms frozen_terms = prox_terms;
  frozen_terms.freeze_head = true;
  const std::vector<float> ref = ReferenceMlpSgd(start, subset, kSamples, kSteps, kLr, frozen_terms);
  const std::vector<float> ref_whole = ReferenceMlpSgd(start, subset, kSamples, kSteps, kLr, prox_terms);
  const double err = MaxAbsDiff(frozen, ref);
  // Freezing changes the body's path too (its gradients flow through the unchanged head).
  const double body_effect = MaxAbsDiff(std::vector<float>(ref.begin(), ref.end() - head),
                                        std::vector<float>(ref_whole.begin(), ref_whole.end() - head));
  EXPECT_LT(err, 2e-5);
  EXPECT_GT(body_effect, 100 * err);
  EXPECT_GT(MaxAbsDiff(std::vector<float>(frozen.begin(), frozen.end() - head),
                       std::vector<float>(start.begin(), start.end() - head)), 1e-3);
  std::printf("frozen head: max |torch - ref| %.2e; freezing moved the body by %.2e\n", err,
              body_effect);
  // fedavg_cnn (with momentum and weight decay, which must not touch the head either): fc2's
  // 5,130 values stay, the rest moves.
  auto cnn = ModelRunner::Create("fedavg_cnn", 1);
  ASSERT_TRUE(cnn.ok()) << cnn.status();
  const std::vector<float> cnn_start = *InitialWeights("fedavg_cnn", 1);
  options = TrainOptions{};
  options.batch_size = 16;
  options.momentum = 0.9;
  options.weight_decay = 1e-3;
  options.freeze_head = true;
  ASSERT_TRUE((*cnn)->SetWeights(cnn_start).ok());
  ASSERT_TRUE((*cnn)->Train(subset, options, nullptr).ok());
  std::vector<float> cnn_after;
  (*cnn)->GetWeights(&cnn_after);
  const size_t cnn_head = 10 * 512 + 10;
  EXPECT_TRUE(std::equal(cnn_after.end() - cnn_head, cnn_after.end(), cnn_start.end() - cnn_head));
  EXPECT_FALSE(std::equal(cnn_after.end() - cnn_head - 512, cnn_after.end() - cnn_head,
                          cnn_start.end() - cnn_head - 512));  // fc1's bias, just before the head
  EXPECT_FALSE(std::equal(cnn_after.begin(), cnn_after.begin() + 800, cnn_start.begin()));  // conv1
}

// FedNTD: not-true distillation from the weights Train starts from, against the double reference
// (whose gradient is the closed form beta tau (s_k - t_k) / n on the not-true logits). Train is
// run twice from different weights: the teacher must be the second start, not the first.
TEST(ModelRunner, NotTrueDistillationMatchesADoublePrecisionReference) {
  constexpr int64_t kSamples = 64;
  constexpr int kSteps = 6;
  constexpr double kLr = 0.5, kBeta = 4, kTau = 3;
  auto runner = ModelRunner::Create("mlp", 1);
  ASSERT_TRUE(runner.ok()) << runner.status();
  const data::ImageDataset subset = FirstTrainImages(kSamples);
  TrainOptions options = FullBatch(kSteps, kSamples, kLr, 4);
  options.not_true_distillation_beta = kBeta;
  options.not_true_distillation_tau = kTau;
  ASSERT_TRUE((*runner)->SetWeights(*InitialWeights("mlp", 7)).ok());
  ASSERT_TRUE((*runner)->Train(subset, options, nullptr).ok());  // teacher: seed 7's weights
  const std::vector<float> start = *InitialWeights("mlp", 8);
  ASSERT_TRUE((*runner)->SetWeights(start).ok());
  absl::StatusOr<TrainResult> trained = (*runner)->Train(subset, options, nullptr);
  ASSERT_TRUE(trained.ok()) << trained.status();
  std::vector<float> ntd;
  (*runner)->GetWeights(&ntd);
  ReferenceTerms terms;
  terms.ntd_beta = kBeta;
  terms.ntd_tau = kTau;
  const std::vector<float> ref = ReferenceMlpSgd(start, subset, kSamples, kSteps, kLr, terms);
  const std::vector<float> ref_plain = ReferenceMlpSgd(start, subset, kSamples, kSteps, kLr);
  const double err = MaxAbsDiff(ntd, ref);
  const double effect = MaxAbsDiff(ref, ref_plain);
  EXPECT_LT(err, 2e-5);
  EXPECT_GT(effect, 100 * err);
  std::printf("fedntd: max |torch - ref| %.2e; the distillation term moved %.2e\n", err, effect);
  // The reported loss stays the cross-entropy alone: finite and positive.
  EXPECT_GT(trained->mean_loss, 0);
  for (auto [beta, tau] : {std::pair{-1.0, 3.0}, std::pair{1.0, 0.0}, std::pair{1.0, -2.0},
                           std::pair{std::nan(""), 3.0}, std::pair{1.0, HUGE_VAL}}) {
    options.not_true_distillation_beta = beta;
    options.not_true_distillation_tau = tau;
    EXPECT_EQ((*runner)->Train(subset, options, nullptr).status().code(),
              absl::StatusCode::kInvalidArgument) << beta << " " << tau;
  }
}

// FedRS: on a device whose data has only some classes, Train scales the other classes' logits
// by alpha. Checked against the double reference with those classes' logits scaled, on real
// images of classes 0, 3 and 7 only.
TEST(ModelRunner, RestrictedSoftmaxMatchesADoublePrecisionReference) {
  constexpr int64_t kSamples = 48;
  constexpr int kSteps = 4;
  constexpr double kLr = 0.5, kAlpha = 0.25;
  auto runner = ModelRunner::Create("mlp", 1);
  ASSERT_TRUE(runner.ok()) << runner.status();
  const data::ImageDataset& all = TrainSubset();
  data::ImageDataset subset;
  for (int64_t i = 0; i < all.size() && subset.size() < kSamples; ++i) {
    const uint8_t label = all.labels[i];
    if (label != 0 && label != 3 && label != 7) continue;
    subset.labels.push_back(label);
    subset.pixels.insert(subset.pixels.end(), all.pixels.begin() + i * 784,
                         all.pixels.begin() + (i + 1) * 784);
  }
  ASSERT_EQ(subset.size(), kSamples);
  std::vector<double> scale(10, kAlpha);
  scale[0] = scale[3] = scale[7] = 1;
  const std::vector<float> start = *InitialWeights("mlp", 5);
  TrainOptions options = FullBatch(kSteps, kSamples, kLr, 4);
  auto train = [&](double alpha) {
    EXPECT_TRUE((*runner)->SetWeights(start).ok());
    options.restricted_softmax_alpha = alpha;
    absl::StatusOr<TrainResult> r = (*runner)->Train(subset, options, nullptr);
    EXPECT_TRUE(r.ok()) << r.status();
    std::vector<float> out;
    (*runner)->GetWeights(&out);
    return out;
  };
  const std::vector<float> rs = train(kAlpha);
  const std::vector<float> plain = train(1.0);
  ReferenceTerms rs_terms;
  rs_terms.logit_scale = scale;
  const std::vector<float> ref_rs = ReferenceMlpSgd(start, subset, kSamples, kSteps, kLr, rs_terms);
  const std::vector<float> ref_plain = ReferenceMlpSgd(start, subset, kSamples, kSteps, kLr);
  const double err_rs = MaxAbsDiff(rs, ref_rs);
  const double err_plain = MaxAbsDiff(plain, ref_plain);
  const double effect = MaxAbsDiff(ref_rs, ref_plain);
  EXPECT_LT(err_rs, 2e-5);
  EXPECT_LT(err_plain, 2e-5);
  EXPECT_GT(effect, 100 * err_rs);
  std::printf("fedrs: max |torch - ref| %.2e (alpha %.2f), %.2e (alpha 1); restriction moved %.2e\n",
              err_rs, kAlpha, err_plain, effect);
  // An absent class's score is pushed down less than under the plain softmax (what FedRS is
  // for): fc2.bias of class 5, which the data lacks, moves less.
  const size_t bias5 = rs.size() - 10 + 5;
  EXPECT_LT(std::abs(rs[bias5] - start[bias5]), std::abs(plain[bias5] - start[bias5]));
  for (double bad : {-0.1, 1.5, std::nan("")}) {
    options.restricted_softmax_alpha = bad;
    EXPECT_EQ((*runner)->Train(subset, options, nullptr).status().code(),
              absl::StatusCode::kInvalidArgument) << bad;
  }
}

}  // namespace
}  // namespace edgefl::models
