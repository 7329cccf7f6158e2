// fl-distill: distils a saved global model into a microcontroller student on one device's data
// and exports it as a C99 library (models/distill.h does the work).
#include <cstdio>
#include <optional>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "data/shard_flags.h"
#include "students/teacher.h"
#include "common/flags.h"
#include "common/log.h"
#include "common/memory.h"
#include "common/threads.h"
#include "data/dataset.h"
#include "data/device_data.h"
#include "students/distill.h"
#include "models/model_spec.h"
#include "students/student.h"
#include "protos/edgefl.pb.h"

namespace edgefl::students {
namespace {

constexpr char kProgram[] = "fl-distill";

struct DistillFlags {
  std::string checkpoint;
  std::string model;
  std::string out;
  data::ShardFlags shard;  // --data ... --seed
  int threads = 1;
  bool test = true;
  int64_t max_test_rows = 0;
};

std::string OneLine(absl::string_view s) {
  return absl::StrReplaceAll(s, {{"\n", " "}, {"\r", " "}});
}

// Bad input (exit 2) for everything but internal failures (exit 1).
[[noreturn]] void Fail(const absl::Status& s) {
  if (absl::IsInternal(s) || absl::IsUnknown(s)) {
    std::fprintf(stderr, "%s: %s\n", kProgram, OneLine(s.message()).c_str());
    std::exit(1);
  }
  ExitUsageError(kProgram, OneLine(s.message()));
}

std::string Pct(const std::optional<double>& a) {
  return a ? absl::StrFormat("%.2f%%", *a * 100) : std::string("n/a");
}

int Main(int argc, char** argv) {
  DistillFlags f;
  students::DistillOptions o;
  o.threads = 1;
  bool labels = true;
  FlagSet flags(kProgram,
                "Distils a saved global model into a microcontroller student (knowledge\n"
                "distillation on one device's data only), quantizes it to int8 and exports a C99\n"
                "library with manifest.json to --out. Exit code 2 on bad input.\n\n"
                "  fl-distill --checkpoint runs/R/checkpoint.pb --data fmnist \\\n"
                "      --partition_file P --client_index 0 --out student/\n"
                "  fl-distill --checkpoint runs/R/model_final.f32 --model fedavg_cnn \\\n"
                "      --partition dirichlet:0.5 --num_partitions 10 --client_index 3 --out s/");
  flags.String("checkpoint", &f.checkpoint,
               "the teacher: a server checkpoint.pb, or a raw float32 file with --model");
  flags.String("model", &f.model, "the teacher's model name (required for a raw float32 file)");
  flags.String("out", &f.out, "output folder for the C library (replaced atomically)");
  data::RegisterShardFlags(flags, &f.shard, "seed of the partition and of the distillation");
  flags.Int("threads", &f.threads, "torch and OpenBLAS compute threads");
  flags.String("student", &o.student,
               absl::StrCat("student architecture: ", absl::StrJoin(students::StudentNames(), ", "),
                            ", or auto (the largest that fits the budgets)"));
  flags.Int64("max_weight_bytes", &o.max_weight_bytes, "budget: constant parameter bytes");
  flags.Int64("max_arena_bytes", &o.max_arena_bytes, "budget: activation arena bytes");
  flags.Int("epochs", &o.epochs, "distillation epochs over the local data");
  flags.Int("batch_size", &o.batch_size, "minibatch size");
  flags.Double("lr", &o.lr, "Adam learning rate (cosine decay)");
  flags.Double("temperature", &o.temperature, "distillation temperature T");
  flags.Double("alpha", &o.alpha,
               "weight of the teacher's soft targets (1 - alpha on the labels); 0 = no teacher");
  flags.Bool("labels", &labels, "use the local labels (--nolabels: soft targets alone)");
  flags.Bool("augment", &o.augment, "random 2-pixel shifts and flips during distillation");
  flags.Int64("max_samples", &o.max_samples, "use at most this many local images (0 = all)");
  flags.Int64("calibration_samples", &o.calibration_samples,
              "local images used to calibrate the int8 activation ranges");
  flags.Bool("test", &f.test, "report test-set accuracies in the manifest (Fashion-MNIST t10k)");
  flags.Int64("max_test_rows", &f.max_test_rows, "use the first N test images (0 = all)");
  flags.String("toolchain_prefix", &o.toolchain_prefix,
               "Arm cross toolchain measuring flash/RAM (empty = skip)");
  flags.String("mcu_cflags", &o.mcu_cflags, "flags for that measurement");
  flags.String("host_compiler", &o.host_compiler,
               "C compiler for the export's self-check against the integer reference and the "
               "host latency (empty = skip)");
  flags.Int64("host_check_samples", &o.host_check_samples,
              "images in that self-check (test images if --test, else local; 0 = all)");
  flags.ParseOrExit(argc, argv);
  if (!flags.positional().empty()) {
    ExitUsageError(kProgram, absl::StrCat("unexpected argument '", flags.positional()[0], "'"));
  }
  if (f.checkpoint.empty()) ExitUsageError(kProgram, "--checkpoint is required");
  if (f.out.empty()) ExitUsageError(kProgram, "--out is required");
  if (f.threads < 1) ExitUsageError(kProgram, "--threads must be >= 1");
  if (absl::Status s = data::ValidateShardFlags(f.shard); !s.ok()) {
    ExitUsageError(kProgram, std::string(s.message()));
  }
  if (f.max_test_rows < 0) ExitUsageError(kProgram, "--max_test_rows must be >= 0");
  o.use_labels = labels;
  o.seed = static_cast<uint64_t>(f.shard.seed);
  o.threads = f.threads;
  SetLogTag("distill");
  SetBlasThreads(f.threads);
  TuneMallocForTraining();  // activations are reused between batches without page faults

  absl::StatusOr<Teacher> teacher = LoadTeacher(f.checkpoint, f.model);
  if (!teacher.ok()) Fail(teacher.status());
  o.teacher_source = teacher->source;
  o.teacher_round = teacher->round;
  absl::StatusOr<data::ImageDataset> local = data::LoadDeviceShard(data::ShardSourceFrom(f.shard));
  if (!local.ok()) Fail(local.status());
  std::optional<data::ImageDataset> test;
  if (f.test) {
    absl::StatusOr<data::ImageDataset> t = data::LoadFashionMnist(
        f.shard.data_dir, data::Split::kTest, std::nullopt, f.max_test_rows);
    if (!t.ok()) Fail(t.status());
    test = std::move(*t);
  }
  o.log = [](const std::string& m) { EDGEFL_LOG_INFO(m); };
  absl::StatusOr<students::DistillReport> r = students::DistillAndExport(
      o, teacher->spec, teacher->weights, *local, test ? &*test : nullptr, f.out);
  if (!r.ok()) Fail(r.status());
  std::string mcu =
      r->mcu ? absl::StrFormat(", flash %d B, RAM %d B", r->mcu->flash_bytes, r->mcu->ram_bytes)
             : std::string();
  if (r->host_check) {
    absl::StrAppendFormat(&mcu, ", bit-exact on %d host-run images (%.1f us each)",
                          r->host_check->images, r->host_check->cpu_us_per_inference);
  }
  std::printf(
      "fl-distill: exported %s to %s: %lld weight bytes, %lld arena bytes%s; test accuracy: "
      "teacher %s, student float %s, int8 %s\n",
      r->student.c_str(), r->out_dir.c_str(), static_cast<long long>(r->weight_bytes),
      static_cast<long long>(r->arena_bytes), mcu.c_str(), Pct(r->teacher_test_accuracy).c_str(),
      Pct(r->student_float_test_accuracy).c_str(), Pct(r->student_int8_test_accuracy).c_str());
  return 0;
}

}  // namespace
}  // namespace edgefl::students

int main(int argc, char** argv) { return edgefl::students::Main(argc, argv); }
