#include "students/teacher.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/sha256.h"
#include "common/status_macros.h"
#include "models/model_spec.h"

namespace edgefl::students {

absl::StatusOr<Teacher> LoadTeacher(const std::string& path, const std::string& model) {
  ASSIGN_OR_RETURN(std::string bytes, ReadFile(path));
  proto::Checkpoint ckpt;
  std::string why_not;
  if (!ckpt.ParseFromString(bytes) || ckpt.spec().tensors_size() == 0 || ckpt.weights().empty()) {
    why_not = "not an edgefl checkpoint.pb";
  } else if (ckpt.sha256() != Sha256::Of(ckpt.weights())) {
    why_not = "a checkpoint whose weights fail their sha256";
  }
  Teacher t;
  if (why_not.empty()) {
    if (!model.empty() && model != ckpt.spec().model()) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, " is a checkpoint of ", ckpt.spec().model(), ", not of ", model));
    }
    ASSIGN_OR_RETURN(proto::ModelSpec registered, models::SpecForModel(ckpt.spec().model()));
    if (absl::Status s = models::CheckSpecMatches(registered, ckpt.spec()); !s.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, " does not hold a ", registered.model(), ": ", s.message()));
    }
    const int64_t n = models::NumParameters(registered);
    if (static_cast<int64_t>(ckpt.weights().size()) != 4 * n) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": ", ckpt.weights().size(), " weight bytes for ", n, " parameters"));
    }
    t.weights.resize(n);
    for (int64_t i = 0; i < n; ++i) {
      const auto* p = reinterpret_cast<const uint8_t*>(ckpt.weights().data()) + 4 * i;
      const uint32_t u =
          uint32_t{p[0]} | uint32_t{p[1]} << 8 | uint32_t{p[2]} << 16 | uint32_t{p[3]} << 24;
      std::memcpy(&t.weights[i], &u, 4);
    }
    t.spec = registered;
    t.round = ckpt.round();
    t.source = absl::StrCat(path, " (round ", ckpt.round(), ")");
    return t;
  }
  if (model.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, " is ", why_not, "; for a raw float32 weights file (model_final.f32) give --model"));
  }
  ASSIGN_OR_RETURN(t.spec, models::SpecForModel(model));
  absl::StatusOr<std::vector<float>> w = models::LoadRawWeights(path, t.spec);
  if (!w.ok()) {
    return absl::Status(w.status().code(),
                        absl::StrCat(w.status().message(), " (a checkpoint of another model?)"));
  }
  t.weights = std::move(*w);
  t.source = path;
  return t;
}

}  // namespace edgefl::students
