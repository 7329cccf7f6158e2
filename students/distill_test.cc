// End-to-end tests of the student export (issue #4): the exported C library, compiled for the host
// with gcc and cross-compiled for a Cortex-M4 run under QEMU (mps2-an386), must reproduce the
// LibTorch integer reference bit for bit; fl-distill's bad input gives one line and exit code 2.
// Small data subsets keep each test to seconds (the full-size numbers are bench/student_fmnist's).
#include "students/distill.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/file_util.h"
#include "common/sha256.h"
#include "gmock/gmock.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "students/c_export.h"
#include "data/dataset.h"
#include "models/model_runner.h"
#include "models/model_spec.h"
#include "students/student.h"
#include "students/subprocess.h"
#include "protos/edgefl.pb.h"

namespace edgefl::students {
namespace {

using ::testing::HasSubstr;

#ifndef EDGEFL_MCU_DIR
#error "EDGEFL_MCU_DIR must point at students/mcu"
#endif
#ifndef EDGEFL_FL_DISTILL
#error "EDGEFL_FL_DISTILL must point at the fl-distill binary"
#endif

constexpr double kToolTimeout = 120;

std::string TempDir(const std::string& what) {
  std::string tmpl = absl::StrCat("/tmp/edgefl-", what, "-XXXXXX");
  EXPECT_NE(mkdtemp(tmpl.data()), nullptr);
  return tmpl;
}

data::ImageDataset Train(int64_t rows) {
  absl::StatusOr<data::ImageDataset> d =
      data::LoadFashionMnist(data::kDefaultFashionMnistDir, data::Split::kTrain, std::nullopt, rows);
  EXPECT_TRUE(d.ok()) << d.status();
  return d.ok() ? std::move(*d) : data::ImageDataset{};
}

data::ImageDataset TestSet(int64_t rows) {
  absl::StatusOr<data::ImageDataset> d =
      data::LoadFashionMnist(data::kDefaultFashionMnistDir, data::Split::kTest, std::nullopt, rows);
  EXPECT_TRUE(d.ok()) << d.status();
  return d.ok() ? std::move(*d) : data::ImageDataset{};
}

// A small_cnn teacher trained for one quick epoch (about 80% test accuracy; good enough to teach).
struct Teacher {
  proto::ModelSpec spec;
  std::vector<float> weights;
};
Teacher MakeTeacher() {
  Teacher t;
  auto runner = models::ModelRunner::Create("small_cnn", 1);
  EXPECT_TRUE(runner.ok());
  models::TrainOptions o;
  o.epochs = 1;
  o.lr = 0.05;
  EXPECT_TRUE((*runner)->Train(Train(2000), o, nullptr).ok());
  (*runner)->GetWeights(&t.weights);
  t.spec = (*runner)->spec();
  return t;
}

DistillOptions QuickOptions(const std::string& student) {
  DistillOptions o;
  o.student = student;
  o.epochs = 2;
  o.max_samples = 800;
  o.calibration_samples = 400;
  o.threads = 1;
  o.log = [](const std::string& m) { std::fprintf(stderr, "[distill] %s\n", m.c_str()); };
  return o;
}

// Runs a command; fails the test (and returns an empty result) if it cannot start or times out.
CommandResult RunTool(const std::vector<std::string>& argv, double timeout = kToolTimeout) {
  absl::StatusOr<CommandResult> r = RunCommand(argv, timeout);
  EXPECT_TRUE(r.ok()) << absl::StrJoin(argv, " ") << ": " << r.status();
  if (!r.ok()) return CommandResult{};
  EXPECT_FALSE(r->timed_out) << absl::StrJoin(argv, " ") << " timed out";
  return *r;
}

int ArgMax(const int8_t* row, int n) {
  return static_cast<int>(std::max_element(row, row + n) - row);
}

google::protobuf::Struct ReadManifest(const std::string& dir) {
  google::protobuf::Struct s;
  absl::StatusOr<std::string> text = ReadFile(dir + "/manifest.json");
  EXPECT_TRUE(text.ok()) << text.status();
  if (text.ok()) {
    EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(*text, &s).ok());
  }
  return s;
}

const google::protobuf::Value& Field(const google::protobuf::Struct& s, const std::string& k) {
  static const google::protobuf::Value kMissing;
  auto it = s.fields().find(k);
  return it == s.fields().end() ? kMissing : it->second;
}

// Host harness: reads N images (uint8) from argv[1], writes N x 10 int8 logits to argv[2].
constexpr char kHostHarness[] = R"(#include <stdio.h>
#include "edgefl_student.h"
int main(int argc, char **argv) {
  static uint8_t pixels[EDGEFL_STUDENT_INPUT_SIZE];
  int8_t input[EDGEFL_STUDENT_INPUT_SIZE], logits[EDGEFL_STUDENT_NUM_CLASSES];
  FILE *in, *out;
  long n = 0;
  if (argc != 3) return 2;
  in = fopen(argv[1], "rb");
  out = fopen(argv[2], "wb");
  if (in == NULL || out == NULL) return 2;
  while (fread(pixels, 1, sizeof(pixels), in) == sizeof(pixels)) {
    int cls;
    edgefl_student_quantize_input(pixels, input);
    cls = edgefl_student_predict(input, logits);
    if (cls < 0 || cls >= EDGEFL_STUDENT_NUM_CLASSES) return 3;
    if (edgefl_student_predict(input, NULL) != cls) return 4;
    if (fwrite(logits, 1, sizeof(logits), out) != sizeof(logits)) return 2;
    ++n;
  }
  if (edgefl_student_predict(NULL, logits) != -1) return 5;
  fclose(in);
  fclose(out);
  printf("%ld\n", n);
  return 0;
}
)";

class ExportTest : public ::testing::TestWithParam<std::string> {};

// (a) The library built for the host agrees with the LibTorch integer reference on every test
// image used (the first 2,000 of the test set here; bench/student_fmnist checks all 10,000 through
// the export's own self-check): the same logits bit for bit, hence the same classes.
TEST_P(ExportTest, HostLibraryMatchesIntegerReferenceOnEveryTestImage) {
  const Teacher teacher = MakeTeacher();
  const data::ImageDataset local = Train(3000);
  const data::ImageDataset test = TestSet(2000);
  ASSERT_EQ(test.size(), 2000);
  const std::string root = TempDir("distill-host");
  const std::string out = root + "/export";
  absl::StatusOr<DistillReport> report =
      DistillAndExport(QuickOptions(GetParam()), teacher.spec, teacher.weights, local, &test, out);
  ASSERT_TRUE(report.ok()) << report.status();
  ASSERT_NE(report->model, nullptr);
  EXPECT_EQ(report->student, GetParam());
  EXPECT_LE(report->weight_bytes, 32 * 1024);
  EXPECT_LE(report->arena_bytes, 32 * 1024);
  ASSERT_TRUE(report->student_int8_test_accuracy.has_value());
  EXPECT_GT(*report->student_int8_test_accuracy, 0.3);  // it learned something (chance: 0.1)
  // int8 stays close to float even after this short training.
  EXPECT_NEAR(*report->student_int8_test_accuracy, *report->student_float_test_accuracy, 0.03);

  absl::StatusOr<std::vector<int8_t>> ref = Int8ReferenceLogits(*report->model, test);
  ASSERT_TRUE(ref.ok()) << ref.status();

  ASSERT_TRUE(WriteFileAtomically(root + "/harness.c", kHostHarness).ok());
  ASSERT_TRUE(
      WriteFileAtomically(root + "/images.bin", std::string(test.pixels.begin(), test.pixels.end()))
          .ok());
  CommandResult cc =
      RunTool({"gcc", "-std=c99", "-pedantic", "-Wall", "-Wextra", "-Wconversion", "-Wshadow",
               "-Werror", "-O2", "-I", out, out + "/edgefl_student.c",
               out + "/edgefl_student_kernels.c", root + "/harness.c", "-o", root + "/harness"});
  ASSERT_EQ(cc.exit_code, 0) << cc.output;
  CommandResult run = RunTool({root + "/harness", root + "/images.bin", root + "/logits.bin"});
  ASSERT_EQ(run.exit_code, 0) << run.output;
  EXPECT_EQ(run.output, "2000\n");
  absl::StatusOr<std::string> got = ReadFile(root + "/logits.bin");
  ASSERT_TRUE(got.ok());
  ASSERT_EQ(got->size(), ref->size());
  int64_t class_mismatches = 0, logit_mismatches = 0, correct = 0;
  for (int64_t i = 0; i < test.size(); ++i) {
    const int8_t* r = ref->data() + i * 10;
    const int8_t* g = reinterpret_cast<const int8_t*>(got->data()) + i * 10;
    logit_mismatches += std::memcmp(r, g, 10) != 0;
    class_mismatches += ArgMax(r, 10) != ArgMax(g, 10);
    correct += ArgMax(g, 10) == test.labels[i];
  }
  EXPECT_EQ(logit_mismatches, 0);
  EXPECT_EQ(class_mismatches, 0);
  // The manifest's int8 accuracy is the library's own.
  EXPECT_DOUBLE_EQ(*report->student_int8_test_accuracy, correct / 2000.0);
  // The export's own self-check (cc -O2) ran on the same images and found no difference.
  ASSERT_TRUE(report->host_check.has_value()) << report->host_check_unavailable_reason;
  EXPECT_EQ(report->host_check->images, 2000);
  EXPECT_EQ(report->host_check->logit_mismatches, 0);
  EXPECT_GT(report->host_check->cpu_us_per_inference, 0);

  // The manifest carries what a firmware engineer needs.
  const google::protobuf::Struct m = ReadManifest(out);
  EXPECT_EQ(Field(m, "format").string_value(), "edgefl-student-c/1");
  EXPECT_EQ(Field(m, "weight_bytes").number_value(), report->weight_bytes);
  EXPECT_EQ(Field(m, "arena_bytes").number_value(), report->arena_bytes);
  EXPECT_EQ(Field(m, "class_names").list_value().values_size(), 10);
  EXPECT_EQ(Field(Field(m, "host_check").struct_value(), "logit_mismatches").number_value(), 0);
  const auto& input = Field(m, "input").struct_value();
  EXPECT_EQ(Field(input, "zero_point").number_value(), -128);
  EXPECT_NEAR(Field(input, "scale").number_value(), 1 / 255.0, 1e-12);
  EXPECT_GT(Field(Field(m, "accuracy").struct_value(), "teacher_test").number_value(), 0.5);
  // The library is integer-only and needs nothing beyond the C library on the Cortex-M4: its only
  // undefined symbols may be libgcc's 64-bit integer helpers and memset / memcpy (which gcc may
  // emit for plain loops). No float helpers (__aeabi_f*, __aeabi_d*), no malloc, no printf.
  ASSERT_TRUE(report->mcu.has_value()) << report->mcu_unavailable_reason;
  EXPECT_GT(report->mcu->flash_bytes, report->weight_bytes);
  EXPECT_GE(report->mcu->ram_bytes, report->arena_bytes);
  const std::set<std::string> allowed = {"__aeabi_lasr", "__aeabi_llsl", "__aeabi_llsr",
                                         "__aeabi_lmul", "memset",       "memcpy"};
  for (const std::string& sym : report->mcu->undefined_symbols) {
    EXPECT_EQ(allowed.count(sym), 1u) << "the library needs " << sym;
  }
  EXPECT_EQ(Field(Field(m, "mcu").struct_value(), "flash_bytes").number_value(),
            report->mcu->flash_bytes);
  RunTool({"rm", "-rf", root});
}

INSTANTIATE_TEST_SUITE_P(Students, ExportTest, ::testing::Values("student_tiny", "student_dw"));

// (b) Cross-compiled for -mcpu=cortex-m4 -mthumb and run under qemu-system-arm -M mps2-an386, the
// library prints the host's classes and logits for images embedded in the firmware.
TEST(Mcu, CortexM4UnderQemuMatchesHost) {
  for (const char* tool : {"arm-none-eabi-gcc", "arm-none-eabi-size", "qemu-system-arm"}) {
    ASSERT_FALSE(FindProgram(tool).empty())
        << tool << " is missing: apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi "
        << "qemu-system-arm";
  }
  const Teacher teacher = MakeTeacher();
  const data::ImageDataset local = Train(3000);
  const data::ImageDataset test = TestSet(16);
  const std::string root = TempDir("distill-mcu");
  const std::string out = root + "/export";
  DistillOptions o = QuickOptions("student_tiny");
  absl::StatusOr<DistillReport> report =
      DistillAndExport(o, teacher.spec, teacher.weights, local, nullptr, out);
  ASSERT_TRUE(report.ok()) << report.status();
  absl::StatusOr<std::vector<int8_t>> ref = Int8ReferenceLogits(*report->model, test);
  ASSERT_TRUE(ref.ok()) << ref.status();

  // The images for mcu/student_main.c.
  std::string images_h = absl::StrCat("#include <stdint.h>\nstatic const uint8_t images[",
                                      test.size(), "][784] = {\n");
  for (int64_t i = 0; i < test.size(); ++i) {
    std::vector<int> px(test.pixels.begin() + i * 784, test.pixels.begin() + (i + 1) * 784);
    absl::StrAppend(&images_h, "{", absl::StrJoin(px, ","), "},\n");
  }
  absl::StrAppend(&images_h, "};\n");
  ASSERT_TRUE(WriteFileAtomically(root + "/student_images.h", images_h).ok());
  const std::string mcu = EDGEFL_MCU_DIR;
  const std::string elf = root + "/student.elf";
  CommandResult cc = RunTool({"arm-none-eabi-gcc",
                              "-mcpu=cortex-m4",
                              "-mthumb",
                              "-O2",
                              "-std=c99",
                              "-Wall",
                              "-Wextra",
                              "-Werror",
                              "--specs=nano.specs",
                              "--specs=rdimon.specs",
                              "-nostartfiles",
                              "-T",
                              mcu + "/mps2_an386.ld",
                              "-Wl,--gc-sections",
                              "-I",
                              out,
                              "-I",
                              root,
                              mcu + "/startup.c",
                              out + "/edgefl_student.c",
                              out + "/edgefl_student_kernels.c",
                              mcu + "/student_main.c",
                              "-o",
                              elf});
  ASSERT_EQ(cc.exit_code, 0) << cc.output;
  CommandResult size = RunTool({"arm-none-eabi-size", "-B", elf});
  ASSERT_EQ(size.exit_code, 0) << size.output;
  // Flash and RAM of the whole firmware (library + newlib's printf + the embedded images).
  std::vector<std::string> lines = absl::StrSplit(size.output, '\n', absl::SkipEmpty());
  ASSERT_GE(lines.size(), 2u);
  std::vector<std::string> cols =
      absl::StrSplit(lines[1], absl::ByAnyChar(" \t"), absl::SkipEmpty());
  int64_t text = 0, data = 0, bss = 0;
  ASSERT_TRUE(cols.size() >= 3 && absl::SimpleAtoi(cols[0], &text) &&
              absl::SimpleAtoi(cols[1], &data) && absl::SimpleAtoi(cols[2], &bss));
  EXPECT_LE(text + data, 1024 * 1024);
  EXPECT_LE(data + bss, 256 * 1024 - 8 * 1024);
  EXPECT_GE(bss, report->arena_bytes);

  CommandResult q =
      RunTool({"qemu-system-arm", "-M", "mps2-an386", "-cpu", "cortex-m4", "-nographic", "-monitor",
               "none", "-semihosting-config", "enable=on,target=native", "-kernel", elf},
              60);
  ASSERT_THAT(q.output, HasSubstr("EDGEFL_DONE")) << q.output;
  int seen = 0;
  for (absl::string_view line : absl::StrSplit(q.output, '\n', absl::SkipEmpty())) {
    line = absl::StripTrailingAsciiWhitespace(line);
    if (!absl::StartsWith(line, "EDGEFL ")) continue;
    std::vector<std::string> f = absl::StrSplit(line, ' ', absl::SkipEmpty());
    ASSERT_EQ(f.size(), 13u) << line;
    int i = 0, cls = 0;
    ASSERT_TRUE(absl::SimpleAtoi(f[1], &i) && absl::SimpleAtoi(f[2], &cls)) << line;
    ASSERT_LT(i, test.size());
    const int8_t* r = ref->data() + i * 10;
    EXPECT_EQ(cls, ArgMax(r, 10)) << "image " << i;
    for (int c = 0; c < 10; ++c) {
      int v = 0;
      ASSERT_TRUE(absl::SimpleAtoi(f[3 + c], &v));
      EXPECT_EQ(v, r[c]) << "image " << i << " logit " << c;
    }
    ++seen;
  }
  EXPECT_EQ(seen, test.size());
  RunTool({"rm", "-rf", root});
}

// ---- fl-distill ----

class FlDistill : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = TempDir("fl-distill");
    absl::StatusOr<std::vector<float>> w = models::InitialWeights("small_cnn", 3);
    ASSERT_TRUE(w.ok());
    small_weights_ = *w;
    proto::Checkpoint ckpt;
    ckpt.set_round(3);
    *ckpt.mutable_spec() = models::SpecForModel("small_cnn").value();
    ckpt.set_weights(std::string(reinterpret_cast<const char*>(w->data()), w->size() * 4));
    ckpt.set_sha256(Sha256::Of(ckpt.weights()));
    ASSERT_TRUE(WriteFileAtomically(root_ + "/checkpoint.pb", ckpt.SerializeAsString()).ok());
    ASSERT_TRUE(WriteFileAtomically(root_ + "/model_final.f32", ckpt.weights()).ok());
    // Client 0 holds 300 rows, client 1 none.
    std::vector<int> rows;
    for (int i = 0; i < 300; ++i) rows.push_back(i * 7);
    ASSERT_TRUE(
        WriteFileAtomically(root_ + "/partition.txt",
                            absl::StrCat("# test\n0 300 ", absl::StrJoin(rows, " "), "\n1 0\n"))
            .ok());
  }
  void TearDown() override { RunTool({"rm", "-rf", root_}); }

  CommandResult Distill(std::vector<std::string> args) {
    std::vector<std::string> argv = {EDGEFL_FL_DISTILL,
                                     "--data=fmnist",
                                     "--epochs=1",
                                     "--max_test_rows=200",
                                     "--calibration_samples=100",
                                     "--toolchain_prefix=",
                                     "--host_check_samples=50"};
    argv.insert(argv.end(), args.begin(), args.end());
    return RunTool(argv);
  }

  // Exit code 2 with exactly one line, "fl-distill: ..." containing `what`, and no staging
  // folder left in `root_`.
  void ExpectBadInput(const CommandResult& r, const std::string& what) {
    EXPECT_EQ(r.exit_code, 2) << r.output;
    std::vector<std::string> lines = absl::StrSplit(r.output, '\n', absl::SkipEmpty());
    ASSERT_EQ(lines.size(), 1u) << r.output;
    EXPECT_TRUE(absl::StartsWith(lines[0], "fl-distill: ")) << lines[0];
    EXPECT_THAT(lines[0], HasSubstr(what));
    EXPECT_EQ(RunTool({"find", root_, "-name", ".*tmp-*"}).output, "");
  }

  std::string root_;
  std::vector<float> small_weights_;
};

TEST_F(FlDistill, ExportsFromACheckpointAndReplacesThePreviousExport) {
  const std::string out = root_ + "/student";
  CommandResult r =
      Distill({"--checkpoint=" + root_ + "/checkpoint.pb",
               "--partition_file=" + root_ + "/partition.txt", "--client_index=0", "--out=" + out});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("exported student_tiny to " + out));
  google::protobuf::Struct m = ReadManifest(out);
  EXPECT_EQ(Field(Field(m, "teacher").struct_value(), "model").string_value(), "small_cnn");
  EXPECT_EQ(Field(Field(m, "teacher").struct_value(), "round").number_value(), 3);
  EXPECT_EQ(Field(Field(m, "accuracy").struct_value(), "local_samples").number_value(), 300);
  EXPECT_EQ(Field(Field(m, "accuracy").struct_value(), "test_samples").number_value(), 200);
  EXPECT_TRUE(FileExists(out + "/edgefl_student.c"));
  // Again from the raw weights, soft targets only, into the same folder: replaced whole.
  r = Distill({"--checkpoint=" + root_ + "/model_final.f32", "--model=small_cnn", "--nolabels",
               "--student=student_dw", "--partition=iid", "--num_partitions=200",
               "--client_index=5", "--out=" + out});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  m = ReadManifest(out);
  EXPECT_EQ(Field(m, "student").string_value(), "student_dw");
  EXPECT_FALSE(Field(Field(m, "distillation").struct_value(), "labels_used").bool_value());
  EXPECT_EQ(RunTool({"find", root_, "-name", ".*tmp-*"}).output, "");
  // A failing run leaves that export untouched.
  const std::string before = ReadFile(out + "/manifest.json").value();
  r = Distill({"--checkpoint=" + root_ + "/checkpoint.pb",
               "--partition_file=" + root_ + "/partition.txt", "--client_index=0",
               "--max_weight_bytes=1000", "--out=" + out});
  ExpectBadInput(r, "budget");
  EXPECT_EQ(ReadFile(out + "/manifest.json").value(), before);
}

TEST_F(FlDistill, UnwritableOutputFolder) {
  ASSERT_TRUE(WriteFileAtomically(root_ + "/a_file", "x").ok());
  ExpectBadInput(Distill({"--checkpoint=" + root_ + "/checkpoint.pb",
                          "--partition_file=" + root_ + "/partition.txt", "--client_index=0",
                          "--out=" + root_ + "/a_file/student"}),
                 "a_file");
  // A non-empty folder that is not an export is never replaced.
  ASSERT_TRUE(MakeDirs(root_ + "/precious").ok());
  ASSERT_TRUE(WriteFileAtomically(root_ + "/precious/notes.txt", "keep").ok());
  ExpectBadInput(Distill({"--checkpoint=" + root_ + "/checkpoint.pb",
                          "--partition_file=" + root_ + "/partition.txt", "--client_index=0",
                          "--out=" + root_ + "/precious"}),
                 "refusing");
  EXPECT_EQ(ReadFile(root_ + "/precious/notes.txt").value(), "keep");
}

TEST_F(FlDistill, StudentOverBudget) {
  ExpectBadInput(Distill({"--checkpoint=" + root_ + "/checkpoint.pb",
                          "--partition_file=" + root_ + "/partition.txt", "--client_index=0",
                          "--student=auto", "--max_arena_bytes=8000", "--out=" + root_ + "/s"}),
                 "no student fits the budget");
  EXPECT_FALSE(FileExists(root_ + "/s"));
}

TEST_F(FlDistill, CheckpointOfAnotherModel) {
  ExpectBadInput(Distill({"--checkpoint=" + root_ + "/checkpoint.pb", "--model=fedavg_cnn",
                          "--partition_file=" + root_ + "/partition.txt", "--client_index=0",
                          "--out=" + root_ + "/s"}),
                 "checkpoint of small_cnn, not of fedavg_cnn");
  ExpectBadInput(Distill({"--checkpoint=" + root_ + "/model_final.f32", "--model=mlp",
                          "--partition_file=" + root_ + "/partition.txt", "--client_index=0",
                          "--out=" + root_ + "/s"}),
                 "another model");
  ExpectBadInput(Distill({"--checkpoint=" + root_ + "/model_final.f32",
                          "--partition_file=" + root_ + "/partition.txt", "--client_index=0",
                          "--out=" + root_ + "/s"}),
                 "give --model");
  EXPECT_FALSE(FileExists(root_ + "/s"));
}

TEST_F(FlDistill, NoLocalData) {
  ExpectBadInput(Distill({"--checkpoint=" + root_ + "/checkpoint.pb",
                          "--partition_file=" + root_ + "/partition.txt", "--client_index=1",
                          "--out=" + root_ + "/s"}),
                 "no local data");
  ExpectBadInput(Distill({"--checkpoint=" + root_ + "/checkpoint.pb", "--data_dir=" + root_,
                          "--partition=iid", "--out=" + root_ + "/s"}),
                 "train-labels-idx1-ubyte.gz");
  EXPECT_FALSE(FileExists(root_ + "/s"));
}

}  // namespace
}  // namespace edgefl::students
