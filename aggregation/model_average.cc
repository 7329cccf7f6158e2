#include "aggregation/model_average.h"

#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "aggregation/kernels.h"
#include "aggregation/state_format.h"
#include "common/status_macros.h"

namespace edgefl::aggregation {
namespace {
constexpr char kKind[] = "model_average";
}  // namespace

absl::StatusOr<std::unique_ptr<ModelAverage>> ModelAverage::Create(const Options& options) {
  if (options.dim == 0) return absl::InvalidArgumentError("model averaging: dim must be > 0");
  if (options.from_round < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("aggregation.averaging.from_round must be >= 1, got ", options.from_round));
  }
  if (!(options.ema_decay >= 0 && options.ema_decay < 1)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "aggregation.averaging.ema_decay must be in [0, 1), got ", options.ema_decay));
  }
  return std::unique_ptr<ModelAverage>(new ModelAverage(options));
}

absl::Status ModelAverage::Add(int64_t round, absl::Span<const float> global) {
  if (global.size() != options_.dim) {
    return absl::InvalidArgumentError(absl::StrCat("model averaging: model of ", global.size(),
                                                   " values, expected ", options_.dim));
  }
  if (round <= last_round_) {
    return absl::InvalidArgumentError(absl::StrCat("model averaging: round ", round,
                                                   " after round ", last_round_));
  }
  if (round < options_.from_round) {
    last_round_ = round;
    return absl::OkStatus();
  }
  if (const size_t i = FirstNonFinite(global); i < global.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("model averaging: non-finite value at index ", i, " in round ", round));
  }
  if (count_ == 0) {
    acc_.assign(global.begin(), global.end());
  } else if (options_.ema_decay == 0) {
    FoldWeighted(absl::MakeSpan(acc_), global, 1.0);  // sum += x
  } else {
    // a = d a + (1 - d) x, as (d a) + ((1 - d) x): the kernel multiplies then adds.
    const double d = options_.ema_decay;
    for (double& a : acc_) a *= d;
    FoldWeighted(absl::MakeSpan(acc_), global, 1 - d);
  }
  ++count_;
  last_round_ = round;
  return absl::OkStatus();
}

std::vector<float> ModelAverage::model() const {
  std::vector<float> model(count_ > 0 ? acc_.size() : 0);
  if (model.empty()) return model;
  if (options_.ema_decay != 0) {
    for (size_t i = 0; i < acc_.size(); ++i) model[i] = static_cast<float>(acc_[i]);
    return model;
  }
  const double n = static_cast<double>(count_);
  for (size_t i = 0; i < acc_.size(); ++i) model[i] = static_cast<float>(acc_[i] / n);
  return model;
}

std::string ModelAverage::SaveState() const {
  StateWriter writer(kKind);
  writer.PutU64(options_.dim);
  writer.PutU64(static_cast<uint64_t>(options_.from_round));
  writer.PutF64(options_.ema_decay);
  writer.PutU64(static_cast<uint64_t>(count_));
  writer.PutU64(static_cast<uint64_t>(last_round_));
  if (count_ > 0) writer.PutF64Array(acc_);
  return writer.Finish();
}

absl::Status ModelAverage::LoadState(absl::string_view state) {
  ASSIGN_OR_RETURN(StateReader reader, StateReader::Open(state, kKind));
  ASSIGN_OR_RETURN(const uint64_t dim, reader.GetU64("dim"));
  ASSIGN_OR_RETURN(const uint64_t from_round, reader.GetU64("from_round"));
  ASSIGN_OR_RETURN(const double ema_decay, reader.GetF64("ema_decay"));
  if (dim != options_.dim || from_round != static_cast<uint64_t>(options_.from_round) ||
      ema_decay != options_.ema_decay) {
    return absl::InvalidArgumentError(absl::StrCat(
        "state for ", kKind, ": saved for dim ", dim, ", from_round ", from_round, ", ema_decay ",
        ema_decay, "; this run has ", options_.dim, ", ", options_.from_round, ", ",
        options_.ema_decay));
  }
  ASSIGN_OR_RETURN(const uint64_t count, reader.GetU64("count"));
  ASSIGN_OR_RETURN(const uint64_t last_round, reader.GetU64("last_round"));
  // At most one model per round since from_round.
  if (last_round > (uint64_t{1} << 40) ||
      count > (last_round >= from_round ? last_round - from_round + 1 : 0)) {
    return absl::InvalidArgumentError(absl::StrCat("state for ", kKind, ": ", count,
                                                   " models up to round ", last_round,
                                                   " from round ", from_round));
  }
  std::vector<double> acc;
  if (count > 0) {
    RETURN_IF_ERROR(reader.GetF64Array("average", dim, &acc));
    for (size_t i = 0; i < acc.size(); ++i) {
      if (!std::isfinite(acc[i])) {
        return absl::InvalidArgumentError(
            absl::StrCat("state for ", kKind, ": non-finite value at index ", i));
      }
    }
  }
  RETURN_IF_ERROR(reader.Finish());
  count_ = static_cast<int64_t>(count);
  last_round_ = static_cast<int64_t>(last_round);
  acc_ = std::move(acc);
  return absl::OkStatus();
}

}  // namespace edgefl::aggregation
