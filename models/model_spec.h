// Torch-free description of a model's parameters: names, shapes and the flat float32 layout that
// travels on the wire and sits in checkpoints (tensors concatenated in registry order).
#ifndef EDGEFL_MODELS_MODEL_SPEC_H_
#define EDGEFL_MODELS_MODEL_SPEC_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "protos/edgefl.pb.h"

namespace edgefl::models {

// Names of all registered models: "fedavg_cnn", "small_cnn", "mlp".
std::vector<std::string> ModelNames();

// The parameter spec of a registered model (no torch needed by the caller; built from the real
// module once and cached). NOT_FOUND naming the model and the known names for an unknown name.
absl::StatusOr<proto::ModelSpec> SpecForModel(const std::string& name);

// Total number of floats in a spec.
int64_t NumParameters(const proto::ModelSpec& spec);

// OK iff `got` has exactly the tensors of `want` (same names, order and shapes). INVALID_ARGUMENT
// naming the first mismatching tensor otherwise.
absl::Status CheckSpecMatches(const proto::ModelSpec& want, const proto::ModelSpec& got);

// Reads a raw little-endian float32 weights file (e.g. init_cnn_seed0.f32) for `spec`.
// INVALID_ARGUMENT if its size is not 4 * NumParameters(spec); NOT_FOUND if missing.
absl::StatusOr<std::vector<float>> LoadRawWeights(const std::string& path,
                                                  const proto::ModelSpec& spec);

// Seeded initial weights of a registered model (LibTorch's default initialisation under
// torch::manual_seed(seed)). NOT_FOUND for an unknown name.
absl::StatusOr<std::vector<float>> InitialWeights(const std::string& name, uint64_t seed);

}  // namespace edgefl::models

#endif  // EDGEFL_MODELS_MODEL_SPEC_H_
