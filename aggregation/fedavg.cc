// FedAvg on top of the streaming WeightedMeanAccumulator.
#include <cmath>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "aggregation/accumulator.h"
#include "aggregation/strategy.h"

namespace edgefl::aggregation {
namespace {

class FedAvg : public Strategy {
 public:
  explicit FedAvg(size_t dim) : accumulator_(dim) {}

  std::string name() const override { return "fedavg"; }

  void BeginRound(int64_t round) override {
    round_ = round;
    accumulator_.Reset();
  }

  absl::Status Accumulate(absl::Span<const float> delta, uint64_t num_samples) override {
    if (num_samples == 0) {
      return absl::InvalidArgumentError("update reports 0 training samples");
    }
    return accumulator_.Add(delta, static_cast<double>(num_samples));
  }

  absl::Status AccumulateEncoded(absl::string_view encoded,
                                 absl::Span<const compression::TensorLayout> layout,
                                 const compression::ChainSpec& chain,
                                 uint64_t num_samples) override {
    if (num_samples == 0) {
      return absl::InvalidArgumentError("update reports 0 training samples");
    }
    return accumulator_.AddEncoded(encoded, layout, chain, static_cast<double>(num_samples));
  }
  int64_t num_accumulated() const override { return accumulator_.count(); }

  absl::Status Aggregate(absl::Span<float> global, int num_failures) override {
    if (accumulator_.count() == 0) {
      return absl::FailedPreconditionError(absl::StrCat("round ", round_,
                                                        ": no update to aggregate (", num_failures,
                                                        " selected clients failed)"));
    }
    if (global.size() != accumulator_.dim()) {
      return absl::InvalidArgumentError(absl::StrCat("global model has ", global.size(),
                                                     " values, expected ", accumulator_.dim()));
    }
    if (!(accumulator_.total_weight() > 0)) {
      return absl::FailedPreconditionError(
          absl::StrCat("round ", round_, ": accumulated updates have zero total weight"));
    }
    // Check the whole new model before writing so `global` is untouched on error; add in double
    // and round once.
    for (size_t i = 0; i < global.size(); ++i) {
      if (!std::isfinite(static_cast<float>(global[i] + accumulator_.MeanAt(i)))) {
        return absl::InvalidArgumentError(
            absl::StrCat("aggregate overflows at index ", i, "; global model left unchanged"));
      }
    }
    for (size_t i = 0; i < global.size(); ++i) {
      global[i] = static_cast<float>(global[i] + accumulator_.MeanAt(i));
    }
    return absl::OkStatus();
  }

 private:
  WeightedMeanAccumulator accumulator_;
  int64_t round_ = 0;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Strategy>> CreateFedAvg(size_t dim) {
  if (dim == 0) return absl::InvalidArgumentError("FedAvg needs a model of at least one value");
  return std::unique_ptr<Strategy>(std::make_unique<FedAvg>(dim));
}

}  // namespace edgefl::aggregation
