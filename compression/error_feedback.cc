#include "compression/error_feedback.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace edgefl::compression {
namespace {

constexpr char kMagic[4] = {'E', 'F', 'R', '1'};
constexpr uint8_t kFormatVersion = 1;
constexpr size_t kHeaderBytes = 4 + 1 + 8 + 8;

}  // namespace

void ErrorFeedback::Reset() {
  std::fill(residual_.begin(), residual_.end(), 0.0f);
  model_version_ = kNoVersion;
}

bool ErrorFeedback::ResetIfStale(int64_t current_version, int64_t max_lag) {
  if (model_version_ < 0) return false;  // no version recorded
  // model_version_ >= 0 here, so the subtraction below cannot overflow.
  if (current_version >= model_version_ &&
      current_version - model_version_ <= std::max<int64_t>(max_lag, 0)) {
    return false;
  }
  Reset();
  return true;
}

std::string ErrorFeedback::Serialize() const {
  std::string out;
  out.resize(kHeaderBytes + residual_.size() * sizeof(float));
  char* p = out.data();
  std::memcpy(p, kMagic, 4);
  p[4] = static_cast<char>(kFormatVersion);
  const int64_t version = model_version_;
  const uint64_t dim = residual_.size();
  std::memcpy(p + 5, &version, 8);
  std::memcpy(p + 13, &dim, 8);
  if (!residual_.empty()) {
    std::memcpy(p + kHeaderBytes, residual_.data(), residual_.size() * sizeof(float));
  }
  return out;
}

absl::StatusOr<ErrorFeedback> ErrorFeedback::Deserialize(absl::string_view bytes) {
  if (bytes.size() < kHeaderBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("error-feedback state: truncated header (", bytes.size(), " bytes)"));
  }
  if (std::memcmp(bytes.data(), kMagic, 4) != 0) {
    return absl::InvalidArgumentError("error-feedback state: bad magic");
  }
  if (static_cast<uint8_t>(bytes[4]) != kFormatVersion) {
    return absl::InvalidArgumentError(absl::StrCat(
        "error-feedback state: unsupported format version ", static_cast<uint8_t>(bytes[4])));
  }
  int64_t version;
  uint64_t dim;
  std::memcpy(&version, bytes.data() + 5, 8);
  std::memcpy(&dim, bytes.data() + 13, 8);
  const uint64_t payload = bytes.size() - kHeaderBytes;
  if (payload % sizeof(float) != 0 || payload / sizeof(float) != dim) {
    return absl::InvalidArgumentError(absl::StrCat("error-feedback state: dim ", dim, " needs ",
                                                   kHeaderBytes, " + 4 * dim bytes, got ",
                                                   bytes.size()));
  }
  if (version < kNoVersion) {
    return absl::InvalidArgumentError(
        absl::StrCat("error-feedback state: bad model version ", version));
  }
  ErrorFeedback ef(static_cast<size_t>(dim));
  if (dim > 0) std::memcpy(ef.residual_.data(), bytes.data() + kHeaderBytes, dim * sizeof(float));
  for (size_t i = 0; i < ef.residual_.size(); ++i) {
    if (!std::isfinite(ef.residual_[i])) {
      return absl::InvalidArgumentError(
          absl::StrCat("error-feedback state: non-finite residual at index ", i));
    }
  }
  ef.model_version_ = version;
  return ef;
}

}  // namespace edgefl::compression
