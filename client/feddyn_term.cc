#include "client/feddyn_term.h"

#include <cmath>
#include <cstdint>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/sha256.h"

namespace edgefl::client {
namespace {
constexpr char kMagic[8] = {'E', 'F', 'L', 'D', 'Y', 'N', '0', '1'};
constexpr size_t kHeader = 16;
constexpr size_t kDigest = 32;
}  // namespace

absl::Status FedDynTerm::Load() {
  pending_.reset();
  if (state_file_.empty()) return absl::OkStatus();
  absl::StatusOr<std::string> bytes = ReadFile(state_file_);
  if (absl::IsNotFound(bytes.status())) return absl::OkStatus();
  if (!bytes.ok()) return bytes.status();
  auto corrupt = [&](const std::string& why) {
    g_.clear();
    return absl::DataLossError(absl::StrCat(state_file_, ": ", why, "; FedDyn term reset to 0"));
  };
  if (bytes->size() < kHeader + kDigest || std::memcmp(bytes->data(), kMagic, 8) != 0) {
    return corrupt("not a FedDyn term file");
  }
  const std::string_view body(bytes->data(), bytes->size() - kDigest);
  if (Sha256::Of(body) != bytes->substr(bytes->size() - kDigest)) {
    return corrupt("digest mismatch");
  }
  uint64_t dim = 0;
  for (int i = 0; i < 8; ++i) dim |= uint64_t{static_cast<unsigned char>((*bytes)[8 + i])} << (8 * i);
  if (dim != (body.size() - kHeader) / sizeof(float) || (body.size() - kHeader) % sizeof(float)) {
    return corrupt(absl::StrCat("dim ", dim, " does not match the file's ", body.size(), " bytes"));
  }
  std::vector<float> g(dim);
  std::memcpy(g.data(), body.data() + kHeader, dim * sizeof(float));  // little-endian hosts
  for (float v : g) {
    if (!std::isfinite(v)) return corrupt("non-finite value");
  }
  g_ = std::move(g);
  return absl::OkStatus();
}

absl::Span<const float> FedDynTerm::For(size_t dim) {
  if (g_.size() != dim) g_.assign(dim, 0.0f);
  return g_;
}

absl::Status FedDynTerm::Update(double alpha, absl::Span<const float> delta) {
  pending_.reset();
  if (!std::isfinite(alpha) || !(alpha > 0)) {
    return absl::InvalidArgumentError(absl::StrCat("FedDyn alpha must be finite and > 0, got ", alpha));
  }
  if (delta.size() != g_.size()) {
    return absl::InvalidArgumentError(absl::StrCat("FedDyn: the update has ", delta.size(),
                                                   " values, the term ", g_.size()));
  }
  std::vector<float> next(g_.size());
  for (size_t i = 0; i < next.size(); ++i) {
    next[i] = static_cast<float>(g_[i] - alpha * static_cast<double>(delta[i]));
    if (!std::isfinite(next[i])) {
      return absl::InvalidArgumentError(absl::StrCat("FedDyn: the term overflows at index ", i));
    }
  }
  pending_ = std::move(next);
  return absl::OkStatus();
}

absl::Status FedDynTerm::Commit() {
  if (!pending_.has_value()) return absl::OkStatus();
  g_ = std::move(*pending_);
  pending_.reset();
  if (state_file_.empty()) return absl::OkStatus();
  std::string bytes(kMagic, 8);
  const uint64_t dim = g_.size();
  for (int i = 0; i < 8; ++i) bytes.push_back(static_cast<char>((dim >> (8 * i)) & 0xff));
  bytes.append(reinterpret_cast<const char*>(g_.data()), g_.size() * sizeof(float));
  bytes += Sha256::Of(bytes);
  return WriteFileAtomically(state_file_, bytes);
}

}  // namespace edgefl::client
