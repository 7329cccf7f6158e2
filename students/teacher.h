// The teacher fl-distill distils: a global model saved by fl-server, read from a checkpoint.pb
// (edgefl.proto.Checkpoint, verified against its sha256 and the registered model's spec) or from
// a raw little-endian float32 weights file (model_final.f32) of a named model.
#ifndef EDGEFL_STUDENTS_TEACHER_H_
#define EDGEFL_STUDENTS_TEACHER_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "protos/edgefl.pb.h"

namespace edgefl::students {

struct Teacher {
  proto::ModelSpec spec;       // the registered model's spec
  std::vector<float> weights;  // flat, spec order
  std::string source;          // for the manifest: the path (and the checkpoint's round)
  int64_t round = -1;          // the checkpoint's round; -1 for a raw file
};

// Reads `path` as a checkpoint, or (when it is none and `model` is given) as raw float32 weights
// of `model`. A checkpoint of another model than a non-empty `model` is INVALID_ARGUMENT, as are a
// file that is neither (the message says to pass --model for a raw file), weights that fail their
// digest or do not fit the model; NOT_FOUND for a missing file or an unknown model name.
absl::StatusOr<Teacher> LoadTeacher(const std::string& path, const std::string& model);

}  // namespace edgefl::students

#endif  // EDGEFL_STUDENTS_TEACHER_H_
