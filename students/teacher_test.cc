#include "students/teacher.h"

#include <unistd.h>

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/sha256.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "models/model_spec.h"

namespace edgefl::students {
namespace {

using ::testing::HasSubstr;

std::string TempPath(const std::string& name) {
  const char* tmp = getenv("TMPDIR");
  return absl::StrCat(tmp ? tmp : "/tmp", "/edgefl-teacher-", getpid(), "-", name);
}

std::string Bytes(const std::vector<float>& w) {
  return std::string(reinterpret_cast<const char*>(w.data()), w.size() * sizeof(float));
}

TEST(Teacher, ReadsACheckpoint) {
  absl::StatusOr<std::vector<float>> w = models::InitialWeights("mlp", 3);
  ASSERT_TRUE(w.ok());
  proto::Checkpoint ckpt;
  ckpt.set_round(7);
  *ckpt.mutable_spec() = *models::SpecForModel("mlp");
  ckpt.set_weights(Bytes(*w));
  ckpt.set_sha256(Sha256::Of(ckpt.weights()));
  const std::string path = TempPath("checkpoint.pb");
  ASSERT_TRUE(WriteFileAtomically(path, ckpt.SerializeAsString(), 0644).ok());
  absl::StatusOr<Teacher> t = LoadTeacher(path, "");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->weights, *w);
  EXPECT_EQ(t->round, 7);
  EXPECT_EQ(t->spec.model(), "mlp");
  EXPECT_EQ(t->source, absl::StrCat(path, " (round 7)"));
  // Named as another model: refused.
  absl::StatusOr<Teacher> other = LoadTeacher(path, "small_cnn");
  EXPECT_EQ(other.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(other.status().message()), HasSubstr("a checkpoint of mlp"));
  // A flipped weight byte fails the digest.
  ckpt.mutable_weights()->at(5) ^= 1;
  ASSERT_TRUE(WriteFileAtomically(path, ckpt.SerializeAsString(), 0644).ok());
  absl::StatusOr<Teacher> bad = LoadTeacher(path, "");
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(bad.status().message()), HasSubstr("fail their sha256"));
  std::remove(path.c_str());
}

TEST(Teacher, ReadsRawWeightsOfANamedModel) {
  absl::StatusOr<std::vector<float>> w = models::InitialWeights("mlp", 4);
  ASSERT_TRUE(w.ok());
  const std::string path = TempPath("model_final.f32");
  ASSERT_TRUE(WriteFileAtomically(path, Bytes(*w), 0644).ok());
  absl::StatusOr<Teacher> t = LoadTeacher(path, "mlp");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->weights, *w);
  EXPECT_EQ(t->round, -1);
  EXPECT_EQ(t->source, path);
  // Without --model the file cannot be read, and the message says so.
  absl::StatusOr<Teacher> unnamed = LoadTeacher(path, "");
  EXPECT_EQ(unnamed.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(unnamed.status().message()), HasSubstr("give --model"));
  std::remove(path.c_str());
  EXPECT_EQ(LoadTeacher(path, "mlp").status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace edgefl::students
