// The aggregation pipeline: the one Strategy, assembled from the stages in this folder.
//
//   update -> filters: norm bound (filters.h NormBoundFilter, reject or clip), then DP clipping
//                      (DpClipFilter, clip norm C, adaptive per dp.h AdaptiveClipping)
//          -> combiner: weighted_mean (streaming, memory O(model)), mean (streaming, unweighted:
//                      what DP needs), or a buffered robust rule (robust.h: median, trimmed
//                      mean, Krum, multi-Krum; memory O(K x model), bound checked at Create)
//          -> DP noise: N(0, (sigma C / K)^2) per coordinate of the mean of the K updates
//          -> server optimizer (server_optimizer.h) on the combined delta as pseudo-gradient
//          -> new global model; then the clip norm adapts and the accountant composes the round
//          -> model averaging (model_average.h), optional: the run's result is an average of the
//             global models since a round; the devices keep training from the global model.
//
// Contracts:
// - Streaming combiners with no filter decode an encoded update straight into the sum (no dense
//   copy). With a filter or a buffered combiner each update is decoded into one reused dense
//   scratch (O(model)) first.
// - Everything after the filters is double; each model value is rounded to float once.
// - DP uses the unweighted mean with denominator K = the number of updates aggregated (as
//   Flower's DP wrappers), and the accountant's sampling rate q = selected / eligible of the
//   round (RoundContext). Client sampling here is uniform without replacement, not Poisson: the
//   reported epsilon is the usual approximation, not a proof for this sampler.
// - A failed Aggregate leaves `global` and the optimizer state unchanged (the DP noise stream
//   has advanced: a retried round draws fresh noise).
#ifndef EDGEFL_AGGREGATION_PIPELINE_H_
#define EDGEFL_AGGREGATION_PIPELINE_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "aggregation/accumulator.h"
#include "aggregation/dp.h"
#include "aggregation/filters.h"
#include "aggregation/model_average.h"
#include "aggregation/robust.h"
#include "aggregation/server_optimizer.h"
#include "aggregation/strategy.h"

namespace edgefl::aggregation {

struct PipelineOptions {
  // Number of model parameters; > 0.
  size_t dim = 0;
  // The strategy's name, for logs and the saved state (a state saved under another name is
  // refused on load).
  std::string name = "fedavg";

  // Filters.
  std::optional<NormBoundFilter::Options> norm_bound;

  // Combiner.
  enum class Combiner { kWeightedMean, kMean, kBuffered };
  Combiner combiner = Combiner::kWeightedMean;
  BufferedCombiner::Options buffered;  // for kBuffered; its dim is set from `dim`

  // Server optimizer: "sgd", "adam", "yogi", "adagrad" or "feddyn" (dims are set from `dim`).
  std::string optimizer = "sgd";
  SgdOptions sgd;
  AdamOptions adam;
  YogiOptions yogi;
  AdagradOptions adagrad;
  FedDynOptions feddyn;

  // Central DP (needs Combiner::kMean).
  struct Dp {
    double clip_norm = 1.0;         // C, or adaptive clipping's starting value
    double noise_multiplier = 1.0;  // sigma (z) of the whole round's release
    double delta = 1e-5;            // for epsilon
    uint64_t seed = 0;              // noise stream
    std::optional<AdaptiveClipping::Options> adaptive;  // initial_clip_norm is taken from C
  };
  std::optional<Dp> dp;

  // Model averaging of the global models (its dim is set from `dim`); none when unset.
  std::optional<ModelAverage::Options> averaging;
};

class Pipeline : public Strategy {
 public:
  // INVALID_ARGUMENT naming the stage's field for a bad option.
  static absl::StatusOr<std::unique_ptr<Pipeline>> Create(const PipelineOptions& options);

  std::string name() const override { return options_.name; }
  void BeginRound(const RoundContext& context) override;
  absl::Status Accumulate(absl::Span<const float> delta, uint64_t num_samples) override;
  absl::Status AccumulateEncoded(absl::string_view encoded,
                                 absl::Span<const compression::TensorLayout> layout,
                                 const compression::ChainSpec& chain,
                                 uint64_t num_samples) override;
  int64_t num_accumulated() const override;
  absl::Status Aggregate(absl::Span<float> global, int num_failures) override;
  RoundReport report() const override { return report_; }
  // The streaming mean (weighted_mean or mean) of the round, after the norm bound filter; the
  // report then counts the updates that filter clipped. UNIMPLEMENTED with a buffered combiner or
  // DP.
  absl::Status CombinedUpdate(absl::Span<float> out) override;
  std::string SaveState() const override;
  absl::Status LoadState(absl::string_view state) override;
  int max_updates_per_round() const override;
  std::optional<std::vector<float>> averaged_model() const override;

  // Bytes the combiner may hold (streaming: the running sum; buffered: its stated bound), plus
  // the dense scratch when one is needed.
  uint64_t memory_bound_bytes() const;
  const ServerOptimizer& optimizer() const { return *optimizer_; }
  // The accountant, with DP on (else nullptr).
  const RdpAccountant* accountant() const { return accountant_.get(); }

 private:
  explicit Pipeline(const PipelineOptions& options);
  bool NeedsDense() const;
  // A streaming combiner's weight for an update of `num_samples`.
  double WeightOf(uint64_t num_samples) const;
  // Runs the filters over scratch_ and hands it to the combiner.
  absl::Status AddScratch(uint64_t num_samples);

  PipelineOptions options_;
  std::unique_ptr<NormBoundFilter> norm_bound_;
  std::unique_ptr<DpClipFilter> dp_clip_;
  std::unique_ptr<WeightedMeanAccumulator> mean_;
  std::unique_ptr<BufferedCombiner> buffered_;
  std::unique_ptr<ServerOptimizer> optimizer_;
  std::unique_ptr<GaussianNoiseStage> noise_;
  std::unique_ptr<AdaptiveClipping> adaptive_;
  std::unique_ptr<RdpAccountant> accountant_;
  std::unique_ptr<ModelAverage> average_;
  std::vector<float> scratch_;   // one decoded update, when filters or buffering need it
  std::vector<double> combined_; // buffered combiners' output

  RoundContext context_;
  double base_noise_multiplier_ = 0;
  int clipped_ = 0;
  int dp_clipped_ = 0;
  int within_clip_ = 0;  // updates whose norm was <= C before DP clipping (adaptive clipping)
  RoundReport report_;
};

}  // namespace edgefl::aggregation

#endif  // EDGEFL_AGGREGATION_PIPELINE_H_
