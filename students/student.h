// Microcontroller students: their architectures (by name, sized for a flash / RAM budget), their
// knowledge-distillation training, post-training int8 quantization, and the LibTorch integer
// reference that the exported C library is checked against. Torch-free interface; the LibTorch
// code lives in student.cc only.
#ifndef EDGEFL_STUDENTS_STUDENT_H_
#define EDGEFL_STUDENTS_STUDENT_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "data/dataset.h"
#include "students/int8_model.h"
#include "models/model_runner.h"
#include "protos/edgefl.pb.h"

namespace edgefl::students {

inline constexpr int kStudentNumClasses = 10;

// One layer of a student. Conv and depthwise conv layers are followed by batch normalisation in
// the float network (folded into the weights when quantizing); dense layers have a bias.
struct StudentLayer {
  LayerKind kind = LayerKind::kConv;
  int out_channels = 0;  // conv, dense
  int kernel = 0;        // conv, dwconv
  int pad = 0;           // conv, dwconv
  bool relu = false;
};

struct StudentArch {
  std::string name;
  std::string description;
  std::vector<StudentLayer> layers;
};

// Registered students, largest first:
//   "student_tiny": conv3x3 1->16, pool, conv3x3 16->32, pool, conv3x3 32->32, dense 1568->10
//                   (~30 KB of int8 parameters, 15.3 KB arena);
//   "student_dw":   the depthwise-separable variant: conv3x3 1->16, pool, dw3x3 + pw 16->48, pool,
//                   dw3x3 + pw 48->96, pool, dense 864->10 (~17 KB, 15.3 KB arena).
std::vector<std::string> StudentNames();

// NOT_FOUND naming the known students for an unknown name.
absl::StatusOr<StudentArch> StudentArchByName(const std::string& name);

// What a student costs once quantized and exported (see int8_model.h for the accounting); known
// from the architecture alone, so a budget can be checked before any training.
struct StudentFootprint {
  int64_t parameters = 0;            // float parameters after batch-norm folding
  int64_t int8_weight_bytes = 0;     // int8 weights
  int64_t weight_bytes = 0;          // all constant parameter bytes (WeightBytes of the Int8Model)
  int64_t arena_bytes = 0;           // PlanArena of its activations
  std::vector<TensorShape> outputs;  // per layer
};
absl::StatusOr<StudentFootprint> FootprintOf(const StudentArch& arch,
                                             const TensorShape& input = TensorShape{28, 28, 1});

// Number of images in `data` (pixels / (rows * cols)); unlike data.size() this also counts an
// unlabelled data set (empty `labels`).
int64_t NumImages(const data::ImageDataset& data);

// Logits [NumImages(data) x 10], row-major, of the registered model `spec.model()` with `weights`
// (pixels scaled to [0, 1], eval mode). INVALID_ARGUMENT if the spec does not match the registry's
// or the weights have the wrong size; NOT_FOUND for an unknown model. `threads` > 0 sets torch's
// intra-op threads. Not safe to run concurrently with other users of torch's global RNG.
absl::StatusOr<std::vector<float>> TeacherLogits(const proto::ModelSpec& spec,
                                                 absl::Span<const float> weights,
                                                 const data::ImageDataset& data, int threads);

// Top-1 accuracy of float logits / int8 logits [n x 10] against `labels` (first maximum wins).
double LogitsAccuracy(absl::Span<const float> logits, absl::Span<const uint8_t> labels);
double Int8LogitsAccuracy(absl::Span<const int8_t> logits, absl::Span<const uint8_t> labels);

struct DistillTrainOptions {
  int epochs = 8;
  int batch_size = 64;      // last partial batch kept
  double lr = 0.004;        // Adam, cosine-decayed to 0 over all steps
  double weight_decay = 0;  // Adam's L2 term
  // Loss = alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T))
  //        + (1 - alpha) * cross_entropy(student, label).
  // alpha = 0 trains on the labels alone (no teacher needed); alpha = 1 on soft targets alone
  // (no labels needed).
  double temperature = 4.0;
  double alpha = 0.7;
  bool augment = true;  // random shifts of up to 2 pixels and horizontal flips
  uint64_t seed = 0;    // shuffling and augmentation (std::mt19937_64)
};

struct DistillTrainResult {
  double last_epoch_loss = 0;  // mean loss over the last epoch
  int64_t samples = 0;         // per epoch
  double seconds = 0;
};

// A float student network (LibTorch behind a pimpl). Not thread-safe.
class StudentModel {
 public:
  // Builds the student with LibTorch's default initialisation drawn from torch's global generator
  // seeded with `seed` (its state is restored afterwards). NOT_FOUND for an unknown student.
  static absl::StatusOr<std::unique_ptr<StudentModel>> Create(const std::string& student,
                                                              uint64_t seed);
  virtual ~StudentModel() = default;

  virtual const StudentArch& arch() const = 0;

  // Trains on `data` (pixels / 255). `teacher_logits` holds NumImages(data) x 10 floats in data
  // order (required when options.alpha > 0, else ignored and may be empty); labels are required
  // when options.alpha < 1. INVALID_ARGUMENT on missing data, mismatched sizes or bad options.
  // Deterministic for a seed, starting weights and thread count. `progress` may be empty.
  virtual absl::StatusOr<DistillTrainResult> Train(const data::ImageDataset& data,
                                                   absl::Span<const float> teacher_logits,
                                                   const DistillTrainOptions& options,
                                                   const models::ProgressFn& progress) = 0;

  // Float logits [NumImages(data) x 10] in eval mode (batch norm uses its running statistics).
  virtual absl::StatusOr<std::vector<float>> Logits(const data::ImageDataset& data) = 0;

  // Post-training quantization: folds batch norm, quantizes weights per output channel
  // (symmetric int8) and activations per tensor, with ranges from running `calibration`
  // (NumImages >= 1) through the float network. Input: q = pixel - 128 (scale 1/255, zero point
  // -128). The result passes ValidateInt8Model. INVALID_ARGUMENT on empty calibration data.
  virtual absl::StatusOr<Int8Model> Quantize(const data::ImageDataset& calibration) = 0;
};

// The LibTorch integer reference: int8 logits [NumImages(data) x num_classes] of `model` on
// `data`'s pixels (q = pixel - 128), computed with torch ops (convolutions and matrix products in
// float64, exact for these integer ranges; requantization in int64) following int8_model.h's
// arithmetic. INVALID_ARGUMENT if the model fails ValidateInt8Model or its input is not
// (1/255, -128) or the images do not match its input shape.
absl::StatusOr<std::vector<int8_t>> Int8ReferenceLogits(const Int8Model& model,
                                                        const data::ImageDataset& data);

}  // namespace edgefl::students

#endif  // EDGEFL_STUDENTS_STUDENT_H_
