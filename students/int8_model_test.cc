// Unit tests of the integer arithmetic, arena planning, student footprints, C rendering and the
// all-or-nothing export folder. No LibTorch training, no subprocesses.
#include "students/int8_model.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <random>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "students/c_export.h"
#include "students/distill.h"
#include "students/student.h"

namespace edgefl::students {
namespace {

using ::testing::HasSubstr;

std::string TempDir() {
  char tmpl[] = "/tmp/edgefl-int8-test-XXXXXX";
  EXPECT_NE(mkdtemp(tmpl), nullptr);
  return tmpl;
}

bool IsDir(const std::string& p) {
  struct stat st;
  return stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

// The exact value of the requantization formula with 128-bit arithmetic.
int64_t ExactRequantize(int32_t acc, int32_t m, int32_t shift) {
  const int rs = 31 - shift;
  const __int128 prod = static_cast<__int128>(acc) * m + (static_cast<__int128>(1) << (rs - 1));
  __int128 q = prod / (static_cast<__int128>(1) << rs);
  if (prod < 0 && q * (static_cast<__int128>(1) << rs) != prod) --q;  // floor
  return static_cast<int64_t>(q);
}

TEST(QuantizeMultiplier, RepresentsTheRealFactor) {
  std::mt19937_64 rng(1);
  std::uniform_real_distribution<double> exponent(-30, 20);
  for (int i = 0; i < 2000; ++i) {
    const double real = std::pow(2.0, exponent(rng));
    int32_t m = 0, s = 0;
    ASSERT_TRUE(QuantizeMultiplier(real, &m, &s).ok()) << real;
    ASSERT_GE(m, int32_t{1} << 30);
    ASSERT_GE(s, -31);
    ASSERT_LE(s, 30);
    const double back = std::ldexp(static_cast<double>(m), s - 31);
    EXPECT_NEAR(back / real, 1.0, 1e-9) << real;
  }
}

TEST(QuantizeMultiplier, EdgeCases) {
  int32_t m = 7, s = 7;
  ASSERT_TRUE(QuantizeMultiplier(0.0, &m, &s).ok());
  EXPECT_EQ(m, 0);
  ASSERT_TRUE(QuantizeMultiplier(1e-12, &m, &s).ok());
  EXPECT_EQ(m, 0);
  ASSERT_TRUE(QuantizeMultiplier(1.0, &m, &s).ok());
  EXPECT_EQ(m, int32_t{1} << 30);
  EXPECT_EQ(s, 1);
  // Rounding up to 2^31 renormalises.
  ASSERT_TRUE(QuantizeMultiplier(std::nextafter(1.0, 0.0), &m, &s).ok());
  EXPECT_EQ(m, int32_t{1} << 30);
  EXPECT_EQ(s, 1);
  EXPECT_FALSE(QuantizeMultiplier(-1.0, &m, &s).ok());
  EXPECT_FALSE(QuantizeMultiplier(std::nan(""), &m, &s).ok());
  EXPECT_FALSE(QuantizeMultiplier(std::ldexp(1.0, 31), &m, &s).ok());
}

TEST(Requantize, MatchesExactArithmeticAndRoundsHalfUp) {
  std::mt19937_64 rng(2);
  std::uniform_int_distribution<int32_t> acc_dist(-(1 << 30), 1 << 30);
  std::uniform_int_distribution<int32_t> m_dist(1 << 30, INT32_MAX);
  std::uniform_int_distribution<int32_t> s_dist(-31, 10);
  for (int i = 0; i < 20000; ++i) {
    const int32_t acc = acc_dist(rng), m = m_dist(rng), s = s_dist(rng);
    int64_t want = ExactRequantize(acc, m, s) - 5;
    want = std::clamp<int64_t>(want, -128, 127);
    ASSERT_EQ(Requantize(acc, m, s, -5, -128, 127), want) << acc << " " << m << " " << s;
  }
  // 0.5 scaled: 3 * 0.5 = 1.5 -> 2, -3 * 0.5 = -1.5 -> -1 (half up), ReLU clamp at the zero point.
  EXPECT_EQ(Requantize(3, 1 << 30, 0, 0, -128, 127), 2);
  EXPECT_EQ(Requantize(-3, 1 << 30, 0, 0, -128, 127), -1);
  EXPECT_EQ(Requantize(-300, 1 << 30, 1, -128, -128, 127), -128);
  EXPECT_EQ(Requantize(100000, 1 << 30, 1, 0, -128, 127), 127);
}

TEST(PlanArena, InputOutputAndScratchNeverOverlap) {
  // student_tiny's activations; conv layers 0, 2, 4 need a patch buffer.
  const std::vector<TensorShape> outs = {{28, 28, 16}, {14, 14, 16}, {14, 14, 32},
                                         {7, 7, 32},   {7, 7, 32},   {1, 1, 10}};
  const std::vector<int64_t> scratch = {18, 0, 288, 0, 576, 0};
  const ArenaPlan plan = PlanArena(outs, scratch);
  EXPECT_EQ(plan.arena_bytes, 12544 + 3136);
  ASSERT_EQ(plan.offsets.size(), 5u);
  ASSERT_EQ(plan.scratch_offsets.size(), 6u);
  using Range = std::pair<int64_t, int64_t>;
  for (size_t i = 0; i < outs.size(); ++i) {
    std::vector<Range> live;
    if (i > 0) live.push_back({plan.offsets[i - 1], plan.offsets[i - 1] + outs[i - 1].bytes()});
    if (i + 1 < outs.size()) live.push_back({plan.offsets[i], plan.offsets[i] + outs[i].bytes()});
    if (scratch[i] > 0) {
      EXPECT_EQ(plan.scratch_offsets[i] % 2, 0) << "layer " << i;
      live.push_back({plan.scratch_offsets[i], plan.scratch_offsets[i] + scratch[i]});
    } else {
      EXPECT_EQ(plan.scratch_offsets[i], -1);
    }
    for (size_t a = 0; a < live.size(); ++a) {
      EXPECT_GE(live[a].first, 0);
      EXPECT_LE(live[a].second, plan.arena_bytes) << "layer " << i;
      for (size_t b = a + 1; b < live.size(); ++b) {
        EXPECT_TRUE(live[a].second <= live[b].first || live[b].second <= live[a].first)
            << "layer " << i << ": buffers " << a << " and " << b << " overlap";
      }
    }
  }
  // A large patch grows the arena past the biggest pair.
  EXPECT_EQ(PlanArena({{4, 4, 1}, {1, 1, 10}}, {0, 0}).arena_bytes, 16);
  EXPECT_EQ(PlanArena({{3, 3, 1}, {3, 3, 4}, {1, 1, 10}}, {0, 100, 0}).arena_bytes, 10 + 100 + 36);
}

TEST(Students, FitTheMicrocontrollerBudget) {
  for (const std::string& name : StudentNames()) {
    absl::StatusOr<StudentArch> arch = StudentArchByName(name);
    ASSERT_TRUE(arch.ok());
    absl::StatusOr<StudentFootprint> fp = FootprintOf(*arch);
    ASSERT_TRUE(fp.ok()) << fp.status();
    EXPECT_LE(fp->weight_bytes, 32 * 1024) << name;
    EXPECT_LE(fp->arena_bytes, 32 * 1024) << name;
    EXPECT_GT(fp->int8_weight_bytes, 1000) << name;
  }
  EXPECT_TRUE(absl::IsNotFound(StudentArchByName("student_huge").status()));
}

// A hand-made two-layer model: conv 3x3 on 28x28x1 -> 2 channels, dense -> 10.
Int8Model TinyModel() {
  Int8Model m;
  m.name = "handmade";
  Int8Layer conv;
  conv.kind = LayerKind::kConv;
  conv.in = {28, 28, 1};
  conv.out = {28, 28, 2};
  conv.kernel = 3;
  conv.pad = 1;
  conv.relu = true;
  conv.weights.assign(2 * 9, 1);
  conv.bias = {10, -10};
  conv.multiplier = {1 << 30, 1 << 30};
  conv.shift = {-4, -4};
  conv.input_zero_point = -128;
  conv.output_zero_point = -128;
  conv.act_min = -128;
  Int8Layer dense;
  dense.kind = LayerKind::kDense;
  dense.in = conv.out;
  dense.out = {1, 1, 10};
  dense.weights.assign(10 * 28 * 28 * 2, -1);
  dense.bias.assign(10, 0);
  dense.multiplier.assign(10, 1 << 30);
  dense.shift.assign(10, -8);
  dense.input_zero_point = -128;
  m.layers = {conv, dense};
  return m;
}

TEST(ValidateInt8Model, AcceptsConsistentAndRejectsBrokenModels) {
  EXPECT_TRUE(ValidateInt8Model(TinyModel()).ok());
  Int8Model m = TinyModel();
  m.layers[1].weights.pop_back();
  EXPECT_THAT(std::string(ValidateInt8Model(m).message()), HasSubstr("weights"));
  m = TinyModel();
  m.layers[0].bias[0] = INT32_MAX - 10;  // could overflow the accumulator
  EXPECT_THAT(std::string(ValidateInt8Model(m).message()), HasSubstr("overflow"));
  m = TinyModel();
  m.layers[0].multiplier[1] = 5;
  EXPECT_FALSE(ValidateInt8Model(m).ok());
  m = TinyModel();
  m.layers[1].in = {14, 14, 2};
  EXPECT_FALSE(ValidateInt8Model(m).ok());
}

TEST(RenderCLibrary, ProducesIntegerOnlyC) {
  absl::StatusOr<std::map<std::string, std::string>> files =
      RenderCLibrary(TinyModel(), FashionMnistClassNames());
  ASSERT_TRUE(files.ok()) << files.status();
  for (const char* name : {"edgefl_student.h", "edgefl_student.c", "edgefl_student_kernels.h",
                           "edgefl_student_kernels.c"}) {
    ASSERT_EQ(files->count(name), 1u) << name;
  }
  for (const auto& [name, text] : *files) {
    for (const char* banned : {"float", "double", "malloc", "free(", "#include <math.h>",
                               "#include <stdlib.h>", "#include <stdio.h>"}) {
      EXPECT_FALSE(absl::StrContains(text, banned)) << name << " contains " << banned;
    }
  }
  const std::string& c = files->at("edgefl_student.c");
  EXPECT_THAT(c, HasSubstr("static const int8_t l0_weights[18]"));
  EXPECT_THAT(c, HasSubstr("static int16_t edgefl_student_arena16[793]"));
  EXPECT_THAT(c, HasSubstr("\"Ankle boot\""));
  EXPECT_THAT(files->at("edgefl_student.h"), HasSubstr("#define EDGEFL_STUDENT_ARENA_BYTES 1586"));
  EXPECT_THAT(files->at("edgefl_student.h"),
              HasSubstr("int edgefl_student_predict(const int8_t *input, int8_t *logits);"));
  EXPECT_FALSE(RenderCLibrary(TinyModel(), {"a", "b"}).ok());
}

TEST(StagedDirectory, CommitsWholeAndReplacesAPreviousExport) {
  const std::string root = TempDir();
  const std::string out = root + "/nested/student";
  {
    absl::StatusOr<std::unique_ptr<StagedDirectory>> s = StagedDirectory::Create(out);
    ASSERT_TRUE(s.ok()) << s.status();
    ASSERT_TRUE(
        (*s)->WriteFile("manifest.json", "{\"format\": \"edgefl-student-c/1\", \"v\": 1}").ok());
    EXPECT_FALSE(IsDir(out));  // nothing visible before the commit
    ASSERT_TRUE((*s)->Commit().ok());
  }
  EXPECT_TRUE(IsDir(out));
  {
    absl::StatusOr<std::unique_ptr<StagedDirectory>> s = StagedDirectory::Create(out);
    ASSERT_TRUE(s.ok()) << s.status();
    ASSERT_TRUE(
        (*s)->WriteFile("manifest.json", "{\"format\": \"edgefl-student-c/1\", \"v\": 2}").ok());
    ASSERT_TRUE((*s)->WriteFile("a.c", "int a;").ok());
    ASSERT_TRUE((*s)->Commit().ok());
  }
  EXPECT_THAT(ReadFile(out + "/manifest.json").value(), HasSubstr("\"v\": 2"));
  EXPECT_TRUE(FileExists(out + "/a.c"));
  {  // An abandoned export leaves neither a staging folder nor changes.
    absl::StatusOr<std::unique_ptr<StagedDirectory>> s = StagedDirectory::Create(out);
    ASSERT_TRUE(s.ok());
    const std::string staging = (*s)->path();
    ASSERT_TRUE((*s)->WriteFile("manifest.json", "half").ok());
    s->reset();
    EXPECT_FALSE(IsDir(staging));
  }
  EXPECT_THAT(ReadFile(out + "/manifest.json").value(), HasSubstr("\"v\": 2"));
  // Only the previous export and the new one are in the parent: no leftovers.
  int entries = 0;
  for (const char* n : {"student"}) entries += FileExists(root + "/nested/" + n);
  EXPECT_EQ(entries, 1);
  RemoveFlatDirectory(out);
  rmdir((root + "/nested").c_str());
  rmdir(root.c_str());
}

TEST(StagedDirectory, RefusesForeignFoldersAndUnwritablePaths) {
  const std::string root = TempDir();
  ASSERT_TRUE(MakeDirs(root + "/mine").ok());
  ASSERT_TRUE(WriteFileAtomically(root + "/mine/notes.txt", "precious").ok());
  absl::StatusOr<std::unique_ptr<StagedDirectory>> s = StagedDirectory::Create(root + "/mine");
  EXPECT_TRUE(absl::IsFailedPrecondition(s.status())) << s.status();
  EXPECT_TRUE(FileExists(root + "/mine/notes.txt"));
  ASSERT_TRUE(WriteFileAtomically(root + "/file", "x").ok());
  s = StagedDirectory::Create(root + "/file/out");
  EXPECT_FALSE(s.ok());
  s = StagedDirectory::Create(root + "/file");
  EXPECT_TRUE(absl::IsFailedPrecondition(s.status())) << s.status();
  unlink((root + "/mine/notes.txt").c_str());
  unlink((root + "/file").c_str());
  rmdir((root + "/mine").c_str());
  rmdir(root.c_str());
}

}  // namespace
}  // namespace edgefl::students
