// Distil a global model into a microcontroller student and export it as a C99 library: the one
// call fl-client (--distill-to) and fl-distill make. Torch-free (LibTorch stays in student.cc).
#ifndef EDGEFL_STUDENTS_DISTILL_H_
#define EDGEFL_STUDENTS_DISTILL_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "students/c_export.h"
#include "data/dataset.h"
#include "students/int8_model.h"
#include "protos/edgefl.pb.h"

namespace edgefl::students {

// Fashion-MNIST's class names, label order.
const std::vector<std::string>& FashionMnistClassNames();

struct DistillOptions {
  // Student architecture (StudentNames()), or "auto": the first registered student (largest
  // first) whose footprint fits both budgets.
  std::string student = "student_tiny";
  // Budgets, checked from the architecture before any training and again on the exported model.
  int64_t max_weight_bytes = 32 * 1024;  // all constant parameter bytes (see int8_model.h)
  int64_t max_arena_bytes = 32 * 1024;   // activation arena

  // Knowledge distillation (see DistillTrainOptions in student.h for the loss).
  int epochs = 8;
  int batch_size = 64;
  double lr = 0.004;  // Adam, cosine decay
  double temperature = 4.0;
  double alpha = 0.7;       // weight of the teacher's soft targets; 0 = labels only (no teacher)
  bool use_labels = true;   // false: soft targets alone (alpha is taken as 1), e.g. a device
                            // without labels; local accuracies are then not reported
  bool augment = true;      // random 2-pixel shifts and flips
  int64_t max_samples = 0;  // > 0: use a seeded random subset of the local data of this size
  int64_t calibration_samples = 2000;  // local images used to calibrate activation ranges
  uint64_t seed = 0;                   // student initialisation, shuffling, subsets
  int threads = 0;                     // torch intra-op threads; 0 leaves the process setting alone

  std::vector<std::string> class_names = FashionMnistClassNames();
  // Where the manifest says the teacher came from (free text, e.g. "checkpoint.pb round 20").
  std::string teacher_source;
  int64_t teacher_round = -1;  // -1 = unknown

  // Cross toolchain used to measure flash / RAM (arm-none-eabi-size) into the manifest. Empty, or
  // not installed: the manifest's "mcu" is null (with a reason) and the export still succeeds.
  std::string toolchain_prefix = "arm-none-eabi-";
  std::string mcu_cflags = kDefaultMcuCflags;

  // Self-check of every export: the library is compiled for the host with this C compiler and
  // run on up to `host_check_samples` images (0 = all) of the test data (else the local data);
  // any logit differing from the LibTorch integer reference fails the export (INTERNAL). The
  // manifest records the check and the host's time per inference. Empty, or not installed: the
  // check is skipped and the manifest says why.
  std::string host_compiler = "cc";
  std::string host_cflags = kDefaultHostCflags;
  int64_t host_check_samples = 2000;

  // Called with one-line progress messages (stages, epochs); may be empty.
  std::function<void(const std::string&)> log;
};

struct DistillReport {
  std::string student;
  std::string out_dir;
  int64_t local_samples = 0;  // images trained on
  int64_t parameters = 0;     // float parameters after batch-norm folding
  int64_t weight_bytes = 0;   // constant parameter bytes in the library
  int64_t int8_weight_bytes = 0;
  int64_t arena_bytes = 0;
  double input_scale = 0;
  int32_t input_zero_point = 0;

  // Accuracies in [0, 1]; nullopt when not measured: the local ones need labels (the teacher's
  // also alpha > 0, since its logits on the local data are computed only then), the test ones
  // need test data. int8 accuracies come from the LibTorch integer reference, which the exported
  // library reproduces bit for bit (checked by host_check when a host compiler is available).
  std::optional<double> teacher_local_accuracy;
  std::optional<double> student_float_local_accuracy;
  std::optional<double> student_int8_local_accuracy;
  std::optional<double> teacher_test_accuracy;
  std::optional<double> student_float_test_accuracy;
  std::optional<double> student_int8_test_accuracy;
  int64_t test_samples = 0;

  std::optional<McuFootprint> mcu;  // nullopt when the toolchain is unavailable
  std::string mcu_unavailable_reason;
  std::optional<HostCheck> host_check;  // nullopt when no host compiler (always 0 mismatches)
  std::string host_check_unavailable_reason;

  double teacher_seconds = 0;  // teacher soft targets
  double train_seconds = 0;
  double total_seconds = 0;
  std::string manifest_json;  // what was written to manifest.json
  // The quantized model the library was rendered from (e.g. for Int8ReferenceLogits in tests).
  std::shared_ptr<const Int8Model> model;
};

// The checks DistillAndExport makes before any work, for callers that distil later (fl-client
// checks --distill_to at start-up): the student exists and fits the budgets (NOT_FOUND /
// FAILED_PRECONDITION), and `out_dir` can be written (see the errors below). Leaves nothing behind.
absl::Status CheckDistillTarget(const DistillOptions& options, const std::string& out_dir);

// Distils `teacher_weights` (flat float32 in `teacher_spec` order, as on the wire and in
// checkpoints) into the student `options.student` on `local_data` only, quantizes it to int8,
// and exports it to `out_dir` as a C99 library plus manifest.json (see c_export.h for the files;
// the manifest holds weight / arena bytes, input scale and zero point, class names, teacher and
// student accuracies, and flash / RAM / stack from the Arm toolchain).
//
// `local_data`: the device's images (28x28); labels are used when present and
//   options.use_labels (an empty `labels` vector means an unlabelled set: soft targets alone).
// `test_data`: optional (nullable) labelled held-out set for the manifest's test accuracies;
//   not used for training or calibration.
// `out_dir`: created (with parents) if missing; an existing previous export there is replaced
//   atomically (renameat2 exchange). The library is built in a temporary sibling folder and
//   renamed into place only when complete, so on any error nothing is left behind and a previous
//   export stays untouched.
//
// Errors (all before anything is written to `out_dir`):
//   INVALID_ARGUMENT   no local data, bad images, labels missing when needed, bad options, or a
//                      teacher spec / weight count that does not match the registered model
//   NOT_FOUND          unknown teacher model or student
//   FAILED_PRECONDITION the student does not fit the budgets (message names both numbers), or
//                      `out_dir` is a file or a non-empty folder that is not a previous export
//   PERMISSION_DENIED / RESOURCE_EXHAUSTED  `out_dir` cannot be written (or another code of
//                      the errno, as ErrnoToStatus in common/file_util.h maps it)
//   INTERNAL           LibTorch failures, the library failed to compile, or the host-compiled
//                      library disagreed with the integer reference
// The output folder is probed before training, so an unwritable folder fails in milliseconds.
//
// Takes minutes on the full Fashion-MNIST training set on one core (seconds on a few hundred
// images). Uses LibTorch on the calling thread; not safe to run concurrently with another call or
// with other code that seeds torch's global RNG. Deterministic for given inputs, options and
// thread count.
absl::StatusOr<DistillReport> DistillAndExport(const DistillOptions& options,
                                               const proto::ModelSpec& teacher_spec,
                                               absl::Span<const float> teacher_weights,
                                               const data::ImageDataset& local_data,
                                               const data::ImageDataset* test_data,
                                               const std::string& out_dir);

}  // namespace edgefl::students

#endif  // EDGEFL_STUDENTS_DISTILL_H_
