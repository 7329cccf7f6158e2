#include "client/update_pipeline.h"

#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "common/file_util.h"
#include "common/model_layout.h"
#include "compression/chain.h"
#include "compression/update_codec.h"
#include "gtest/gtest.h"

namespace edgefl::client {
namespace {

proto::Task MakeTask(const std::string& uplink, int64_t version) {
  proto::Task task;
  task.set_round(version + 1);
  task.set_model_version(version);
  task.mutable_config()->set_uplink(uplink);
  task.mutable_config()->set_ef_max_staleness(3);
  auto* spec = task.mutable_spec();
  spec->set_model("test");
  auto* a = spec->add_tensors();
  a->set_name("a");
  a->add_shape(40);
  a->add_shape(10);
  auto* b = spec->add_tensors();
  b->set_name("b");
  b->add_shape(100);
  return task;
}

std::vector<float> Random(size_t n, int seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal;
  std::vector<float> v(n);
  for (float& x : v) x = normal(rng);
  return v;
}

std::string TempPath(const std::string& name) {
  const char* tmp = getenv("TMPDIR");
  return std::string(tmp ? tmp : "/tmp") + "/edgefl-pipeline-" + std::to_string(getpid()) + "-" + name;
}

TEST(UpdatePipeline, DenseIsRawFloat32) {
  UpdatePipeline p("");
  const std::vector<float> delta = Random(500, 1);
  auto out = p.Encode(MakeTask("dense", 0), delta, 1);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(out->codec, "dense");
  EXPECT_EQ(out->bytes, std::string(reinterpret_cast<const char*>(delta.data()), 2000));
}

TEST(UpdatePipeline, DenseFromRvalueKeepsTheVector) {
  UpdatePipeline p("");
  const std::vector<float> delta = Random(500, 1);
  std::vector<float> moved = delta;
  const float* data = moved.data();
  auto out = p.Encode(MakeTask("dense", 0), std::move(moved), 1);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(out->codec, "dense");
  EXPECT_EQ(out->dense.data(), data);  // no copy
  EXPECT_EQ(out->payload(), std::string(reinterpret_cast<const char*>(delta.data()), 2000));
  // Other chains encode the same bytes from an rvalue as from a span.
  UpdatePipeline q("");
  auto from_span = q.Encode(MakeTask("int8", 0), delta, 3);
  auto from_rvalue = p.Encode(MakeTask("int8", 0), std::vector<float>(delta), 3);
  ASSERT_TRUE(from_span.ok() && from_rvalue.ok());
  EXPECT_EQ(from_rvalue->payload(), from_span->bytes);
  EXPECT_TRUE(from_rvalue->dense.empty());
}

TEST(UpdatePipeline, ErrorFeedbackConservesMassAndSurvivesRestart) {
  const std::string file = TempPath("ef1");
  std::remove(file.c_str());
  const proto::Task task = MakeTask("topk:0.1|int8|ef", 4);
  const auto layout = LayoutOf(task.spec());
  std::vector<float> sent_total(500, 0.0f), input_total(500, 0.0f);
  std::vector<float> residual_after;
  {
    UpdatePipeline p(file);
    ASSERT_TRUE(p.Load().ok());
    for (int round = 0; round < 3; ++round) {
      proto::Task t = task;
      t.set_model_version(4 + round);
      const std::vector<float> delta = Random(500, 10 + round);
      std::vector<float> before(500, 0.0f);
      if (p.residual() != nullptr) {
        before.assign(p.residual()->residual().begin(), p.residual()->residual().end());
      }
      auto out = p.Encode(t, delta, round);
      ASSERT_TRUE(out.ok()) << out.status();
      EXPECT_EQ(out->codec, "topk:0.1|int8|ef");
      std::vector<float> decoded;
      ASSERT_TRUE(compression::DecodeToDense(out->bytes, layout, &decoded).ok());
      // decoded + new residual == delta + old residual, exactly.
      for (size_t i = 0; i < 500; ++i) {
        EXPECT_EQ(decoded[i] + p.residual()->residual()[i], delta[i] + before[i]) << i;
      }
      ASSERT_TRUE(p.Commit().ok());
    }
    residual_after.assign(p.residual()->residual().begin(), p.residual()->residual().end());
  }
  // A restarted client picks the residual up from its state file.
  UpdatePipeline restarted(file);
  ASSERT_TRUE(restarted.Load().ok());
  ASSERT_NE(restarted.residual(), nullptr);
  EXPECT_EQ(std::vector<float>(restarted.residual()->residual().begin(),
                               restarted.residual()->residual().end()),
            residual_after);
  EXPECT_EQ(restarted.residual()->model_version(), 6);
  std::remove(file.c_str());
}

TEST(UpdatePipeline, CorruptStateIsDiscarded) {
  const std::string file = TempPath("ef2");
  ASSERT_TRUE(WriteFileAtomically(file, "garbage that is not a residual at all, 32+ bytes long").ok());
  UpdatePipeline p(file);
  EXPECT_EQ(p.Load().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(p.residual(), nullptr);
  std::remove(file.c_str());
}

TEST(UpdatePipeline, RollbackRestoresTheResidual) {
  UpdatePipeline p("");
  const proto::Task task = MakeTask("topk:0.05|ef", 1);
  ASSERT_TRUE(p.Encode(task, Random(500, 1), 1).ok());
  ASSERT_TRUE(p.Commit().ok());
  const std::vector<float> kept(p.residual()->residual().begin(), p.residual()->residual().end());
  proto::Task next = task;
  next.set_model_version(2);
  ASSERT_TRUE(p.Encode(next, Random(500, 2), 2).ok());
  p.Rollback();
  EXPECT_EQ(std::vector<float>(p.residual()->residual().begin(), p.residual()->residual().end()),
            kept);
}

TEST(UpdatePipeline, StaleResidualIsReset) {
  UpdatePipeline p("");
  proto::Task task = MakeTask("topk:0.05|ef", 1);
  ASSERT_TRUE(p.Encode(task, Random(500, 1), 1).ok());
  ASSERT_TRUE(p.Commit().ok());
  // 10 versions later (> ef_max_staleness 3): the old residual must not leak into the update.
  task.set_model_version(11);
  const std::vector<float> zeros(500, 0.0f);
  auto out = p.Encode(task, zeros, 2);
  ASSERT_TRUE(out.ok());
  std::vector<float> decoded;
  ASSERT_TRUE(compression::DecodeToDense(out->bytes, LayoutOf(task.spec()), &decoded).ok());
  EXPECT_EQ(decoded, zeros);
}

TEST(UpdatePipeline, BadInputIsRejected) {
  UpdatePipeline p("");
  EXPECT_EQ(p.Encode(MakeTask("topk:2", 0), Random(500, 1), 1).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(p.Encode(MakeTask("int8", 0), Random(499, 1), 1).status().code(),
            absl::StatusCode::kInvalidArgument);
  std::vector<float> nan = Random(500, 1);
  nan[7] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_EQ(p.Encode(MakeTask("int8", 0), nan, 1).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(UpdatePipeline, DownloadFullAndDelta) {
  proto::Task task = MakeTask("dense", 3);
  const std::vector<float> full = Random(500, 3);
  std::vector<float> model;
  task.set_base_version(-1);
  ASSERT_TRUE(UpdatePipeline::ApplyDownload(
                  task, std::string(reinterpret_cast<const char*>(full.data()), 2000), -1, &model)
                  .ok());
  EXPECT_EQ(model, full);

  // A delta against version 3 under int8.
  const std::vector<float> change = Random(500, 4);
  auto chain = compression::ParseChain("int8");
  const auto layout = LayoutOf(task.spec());
  auto encoded = compression::EncodeUpdate(*chain, ViewsOf(layout, change), nullptr, 1);
  ASSERT_TRUE(encoded.ok());
  std::vector<float> decoded;
  ASSERT_TRUE(compression::DecodeToDense(*encoded, layout, &decoded).ok());
  proto::Task next = MakeTask("dense", 4);
  next.set_base_version(3);
  next.set_downlink_codec("int8");
  // Wrong held version: refused, model untouched.
  EXPECT_EQ(UpdatePipeline::ApplyDownload(next, *encoded, 2, &model).code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(model, full);
  // Malformed delta: refused, model untouched.
  EXPECT_EQ(UpdatePipeline::ApplyDownload(next, encoded->substr(0, 20), 3, &model).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(model, full);
  ASSERT_TRUE(UpdatePipeline::ApplyDownload(next, *encoded, 3, &model).ok());
  for (size_t i = 0; i < 500; ++i) EXPECT_EQ(model[i], full[i] + decoded[i]);
}

}  // namespace
}  // namespace edgefl::client
