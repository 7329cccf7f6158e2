#include "client/update_pipeline.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/model_layout.h"
#include "common/sha256.h"
#include "common/status_macros.h"
#include "compression/chain.h"
#include "compression/update_codec.h"

namespace edgefl::client {
namespace {
constexpr size_t kDigestBytes = 32;
}  // namespace

absl::Status UpdatePipeline::Load() {
  if (state_file_.empty()) return absl::OkStatus();
  absl::StatusOr<std::string> bytes = ReadFile(state_file_);
  if (absl::IsNotFound(bytes.status())) return absl::OkStatus();
  if (!bytes.ok()) return bytes.status();
  // File = ErrorFeedback::Serialize() | sha256 of it.
  if (bytes->size() < kDigestBytes ||
      Sha256::Of(std::string_view(*bytes).substr(0, bytes->size() - kDigestBytes)) !=
          bytes->substr(bytes->size() - kDigestBytes)) {
    return absl::DataLossError(absl::StrCat(state_file_, ": digest mismatch; residual discarded"));
  }
  absl::StatusOr<compression::ErrorFeedback> ef = compression::ErrorFeedback::Deserialize(
      absl::string_view(*bytes).substr(0, bytes->size() - kDigestBytes));
  if (!ef.ok()) {
    return absl::DataLossError(
        absl::StrCat(state_file_, ": ", ef.status().message(), "; residual discarded"));
  }
  ef_ = std::make_unique<compression::ErrorFeedback>(std::move(*ef));
  return absl::OkStatus();
}

absl::StatusOr<EncodedUpdate> UpdatePipeline::Encode(const proto::Task& task,
                                                     absl::Span<const float> delta,
                                                     uint64_t seed) {
  absl::StatusOr<compression::ChainSpec> chain = compression::ParseChain(task.config().uplink().empty()
                                                                             ? "dense"
                                                                             : task.config().uplink());
  if (!chain.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("uplink codec: ", chain.status().message()));
  }
  EncodedUpdate out;
  if (*chain == compression::ChainSpec()) {
    out.codec = "dense";
    out.bytes.assign(reinterpret_cast<const char*>(delta.data()), delta.size() * sizeof(float));
    return out;
  }
  const std::vector<compression::TensorLayout> layout = LayoutOf(task.spec());
  uint64_t total = 0;
  for (const auto& t : layout) total += t.numel;
  if (total != delta.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("delta holds ", delta.size(), " values; the task's model has ", total));
  }
  compression::ErrorFeedback* ef = nullptr;
  if (chain->error_feedback) {
    if (ef_ == nullptr || ef_->dim() != delta.size()) {
      ef_ = std::make_unique<compression::ErrorFeedback>(delta.size());
    }
    ef_->ResetIfStale(task.model_version(), task.config().ef_max_staleness());
    before_ = *ef_;
    ef = ef_.get();
  }
  absl::StatusOr<std::string> bytes =
      compression::EncodeUpdate(*chain, ViewsOf(layout, delta), ef, seed);
  if (!bytes.ok()) {
    before_.reset();
    return bytes.status();
  }
  if (ef != nullptr) {
    ef->set_model_version(task.model_version());
    pending_ = true;
  }
  out.codec = chain->ToString();
  out.bytes = std::move(*bytes);
  return out;
}

absl::StatusOr<EncodedUpdate> UpdatePipeline::Encode(const proto::Task& task,
                                                     std::vector<float>&& delta, uint64_t seed) {
  std::vector<float> owned = std::move(delta);
  absl::StatusOr<compression::ChainSpec> chain =
      compression::ParseChain(task.config().uplink().empty() ? "dense" : task.config().uplink());
  if (chain.ok() && *chain == compression::ChainSpec()) {
    EncodedUpdate out;
    out.codec = "dense";
    out.dense = std::move(owned);
    return out;
  }
  return Encode(task, absl::Span<const float>(owned), seed);
}

absl::Status UpdatePipeline::Commit() {
  before_.reset();
  if (!pending_) return absl::OkStatus();
  pending_ = false;
  if (state_file_.empty() || ef_ == nullptr) return absl::OkStatus();
  std::string bytes = ef_->Serialize();
  bytes += Sha256::Of(bytes);
  return WriteFileAtomically(state_file_, bytes);
}

void UpdatePipeline::Rollback() {
  if (pending_ && before_.has_value() && ef_ != nullptr) *ef_ = std::move(*before_);
  before_.reset();
  pending_ = false;
}

absl::Status UpdatePipeline::ApplyDownload(const proto::Task& task, const std::string& payload,
                                           int64_t held_version, std::vector<float>* model) {
  const std::vector<compression::TensorLayout> layout = LayoutOf(task.spec());
  uint64_t total = 0;
  for (const auto& t : layout) total += t.numel;
  if (task.base_version() < 0) {
    if (payload.size() != total * sizeof(float)) {
      return absl::InvalidArgumentError(absl::StrCat("model download of ", payload.size(),
                                                     " bytes; the model needs ", total * 4));
    }
    model->resize(total);
    std::memcpy(model->data(), payload.data(), payload.size());
    return absl::OkStatus();
  }
  if (held_version != task.base_version() || model->size() != total) {
    return absl::FailedPreconditionError(absl::StrCat("the download is a delta against version ",
                                                      task.base_version(), "; this device holds ",
                                                      held_version));
  }
  absl::StatusOr<compression::ChainSpec> chain = compression::ParseChain(task.downlink_codec());
  if (!chain.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("downlink codec: ", chain.status().message()));
  }
  compression::DecodeOptions options;
  options.expected_chain = *chain;
  std::vector<float> delta;
  RETURN_IF_ERROR(compression::DecodeToDense(payload, layout, &delta, options));
  // The same arithmetic as the server's reference update, so both hold the same model.
  for (size_t i = 0; i < delta.size(); ++i) (*model)[i] = (*model)[i] + delta[i];
  return absl::OkStatus();
}

}  // namespace edgefl::client
