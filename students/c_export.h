// Rendering an Int8Model as a self-contained C99 library for microcontrollers, measuring it with
// the Arm cross toolchain, and writing an export folder all-or-nothing. Torch-free.
//
// The library (all files in one folder, no subfolders):
//   edgefl_student.h          the API: edgefl_student_predict, edgefl_student_quantize_input,
//                             EDGEFL_STUDENT_* sizes and quantization constants, class names
//   edgefl_student.c          the model: weights as `static const` arrays (flash), the layer
//                             table, the static activation arena, predict()
//   edgefl_student_kernels.h  int8 kernels: conv, depthwise conv, dense, 2x2 max pool (ReLU is
//   edgefl_student_kernels.c  the activation clamp); fixed-point requantization. The same for
//                             every model: students/c/ byte for byte (embedded at build time)
// Activations are HWC (channels last). No malloc, no floating point, no library calls beyond
// <stdint.h>; requires a compiler whose >> of negative integers is arithmetic (checked at compile
// time; true of gcc, clang, armcc and IAR).
#ifndef EDGEFL_STUDENTS_C_EXPORT_H_
#define EDGEFL_STUDENTS_C_EXPORT_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "data/dataset.h"
#include "students/int8_model.h"

namespace edgefl::students {

// The library's source files by name. INVALID_ARGUMENT if the model fails ValidateInt8Model or
// `class_names` does not have one entry per class.
absl::StatusOr<std::map<std::string, std::string>> RenderCLibrary(
    const Int8Model& model, const std::vector<std::string>& class_names);

// The names of the library's .c files (the ones a firmware build compiles).
std::vector<std::string> CLibrarySources();

struct McuFootprint {
  std::string compiler;  // "<prefix>gcc" and its version line
  std::string cflags;
  int64_t text = 0;  // summed over the library's objects (arm-none-eabi-size, Berkeley format)
  int64_t data = 0;
  int64_t bss = 0;
  int64_t flash_bytes = 0;  // text + data
  int64_t ram_bytes = 0;    // data + bss (the arena is bss)
  int64_t stack_bytes = 0;  // predict()'s frame + the deepest kernel's (gcc -fstack-usage)
  std::vector<std::string> undefined_symbols;  // what the objects need from the outside
};

inline constexpr char kDefaultMcuCflags[] = "-mcpu=cortex-m4 -mthumb -Os -std=c99";

// Compiles `CLibrarySources()` in `library_dir` with `<toolchain_prefix>gcc -c <cflags>` (split at
// spaces) in a scratch folder (removed afterwards) and measures them with `<prefix>size`.
// NOT_FOUND if the toolchain is not installed; INTERNAL with the compiler's first error line if
// compilation fails. Each tool run is bounded by 120 s.
absl::StatusOr<McuFootprint> MeasureMcuFootprint(const std::string& library_dir,
                                                 const std::string& toolchain_prefix,
                                                 const std::string& cflags);

// The exported library compiled for the host and run on images, against the expected logits.
struct HostCheck {
  std::string compiler;  // its version line
  std::string cflags;
  int64_t images = 0;
  int64_t logit_mismatches = 0;      // images whose logits differ in any bit
  int64_t class_mismatches = 0;      // images whose predicted class differs
  double cpu_us_per_inference = 0;   // process CPU time per edgefl_student_predict call
  double wall_us_per_inference = 0;  // wall time per call (inflated on a loaded machine)
};

inline constexpr char kDefaultHostCflags[] = "-std=c99 -O2";

// Builds `CLibrarySources()` in `library_dir` plus a small harness with `<compiler> <cflags>` in
// a scratch folder (removed afterwards), runs edgefl_student_quantize_input + predict on every
// image of `images`, and compares with `expected_logits` (NumImages x num_classes, e.g. from
// Int8ReferenceLogits). NOT_FOUND if the compiler is missing; INTERNAL if it fails to build or
// run (bounded by 120 s to compile, 600 s to run). Mismatches are reported, not an error.
absl::StatusOr<HostCheck> CheckLibraryOnHost(const std::string& library_dir,
                                             const std::string& compiler, const std::string& cflags,
                                             const data::ImageDataset& images,
                                             absl::Span<const int8_t> expected_logits);

// An export folder built next to its final place and swapped in whole, so readers see the old
// export or the new one, never a mix, and a failed export leaves nothing behind.
// Not thread-safe.
class StagedDirectory {
 public:
  // Creates the staging folder "<parent>/.<name>.tmp-XXXXXX" of `out_dir` (creating the parent if
  // missing). FAILED_PRECONDITION if `out_dir` exists and is not a folder, or is a non-empty
  // folder without a previous export's manifest.json (it is never deleted then);
  // PERMISSION_DENIED (or the errno's code, see ErrnoToStatus in common/file_util.h) naming the
  // folder if it cannot be written.
  static absl::StatusOr<std::unique_ptr<StagedDirectory>> Create(const std::string& out_dir);
  // Removes the staging folder and its files unless Commit() succeeded.
  ~StagedDirectory();
  StagedDirectory(const StagedDirectory&) = delete;
  StagedDirectory& operator=(const StagedDirectory&) = delete;

  const std::string& path() const { return staging_; }
  const std::string& out_dir() const { return out_dir_; }

  // Writes (and fsyncs) one file into the staging folder. `name` must be a plain file name.
  absl::Status WriteFile(const std::string& name, std::string_view data);

  // Puts the staging folder in place of `out_dir`: a rename when `out_dir` does not exist, else
  // an atomic exchange (renameat2 RENAME_EXCHANGE) followed by removal of the previous export.
  // Re-checks the FAILED_PRECONDITION conditions of Create first.
  absl::Status Commit();

 private:
  StagedDirectory(std::string out_dir, std::string staging)
      : out_dir_(std::move(out_dir)), staging_(std::move(staging)) {}
  std::string out_dir_;
  std::string staging_;
  bool committed_ = false;
};

// Removes a folder holding only regular files (an export or a staging folder). Best effort.
void RemoveFlatDirectory(const std::string& dir);

}  // namespace edgefl::students

#endif  // EDGEFL_STUDENTS_C_EXPORT_H_
