// Error-feedback state: what compression dropped from past updates (the residual), kept by the
// client and added to the next round's delta before compressing it.
//
// EncodeUpdate (update_codec.h) with a chain containing "ef" does, for every flat index i:
//   input[i]    = delta[i] + residual[i]                      (float add)
//   sent[i]     = the exact value the decoder reconstructs (0 for entries not sent)
//   residual[i] = input[i] - sent[i]                          (float subtract)
// For round-to-nearest chains this subtraction is exact, so sent[i] + residual[i] == input[i]
// bit for bit: compression loses no mass, it only delays it. (Stochastic rounding can round a
// value below half a step up to a full step; then the residual is the correctly rounded
// difference and the identity holds to within half an ulp of the residual.)
//
// Thread safety: not thread-safe; one owner (the client's update pipeline) at a time.
#ifndef EDGEFL_COMPRESSION_ERROR_FEEDBACK_H_
#define EDGEFL_COMPRESSION_ERROR_FEEDBACK_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace edgefl::compression {

class ErrorFeedback {
 public:
  // No model version recorded yet.
  static constexpr int64_t kNoVersion = -1;

  // A zero residual over `dim` flat entries (the sum of the model's tensor sizes, in the order
  // the tensors are passed to EncodeUpdate).
  explicit ErrorFeedback(size_t dim) : residual_(dim, 0.0f) {}

  size_t dim() const { return residual_.size(); }
  absl::Span<const float> residual() const { return residual_; }
  absl::Span<float> mutable_residual() { return absl::MakeSpan(residual_); }

  // The global model version the residual was last computed against (kNoVersion when none).
  // The caller sets it after each successful EncodeUpdate.
  int64_t model_version() const { return model_version_; }
  void set_model_version(int64_t v) { model_version_ = v; }

  // Zeroes the residual and forgets the version.
  void Reset();

  // Resets (and returns true) when the residual is too old to be useful for a delta computed
  // against `current_version`: when current_version - model_version() > max_lag, or when
  // current_version < model_version() (the server went back, e.g. restored a checkpoint).
  // A state with no version is left alone (returns false). max_lag >= 0.
  bool ResetIfStale(int64_t current_version, int64_t max_lag);

  // Byte format (little-endian), no checksum (the caller adds one):
  //   "EFR1" | u8 format version (1) | i64 model_version | u64 dim | dim x f32 residual
  std::string Serialize() const;

  // Inverse of Serialize. INVALID_ARGUMENT for a bad magic or version, a length that does not
  // match dim, or a non-finite residual value.
  static absl::StatusOr<ErrorFeedback> Deserialize(absl::string_view bytes);

 private:
  std::vector<float> residual_;
  int64_t model_version_ = kNoVersion;
};

}  // namespace edgefl::compression

#endif  // EDGEFL_COMPRESSION_ERROR_FEEDBACK_H_
