// Tests of model_spec.h and model_runner.h (torch-free: this TU does not include LibTorch).
#include <cmath>
#include <cstdlib>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
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

}  // namespace
}  // namespace edgefl::models
