#include "aggregation/pipeline.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "aggregation/state_format.h"
#include "common/status_macros.h"
#include "common/status_reason.h"

namespace edgefl::aggregation {
namespace {

constexpr char kStateKind[] = "aggregation.pipeline";

absl::StatusOr<std::unique_ptr<ServerOptimizer>> MakeOptimizer(const PipelineOptions& o) {
  if (o.optimizer == "sgd") {
    SgdOptions s = o.sgd;
    s.dim = o.dim;
    return CreateServerSgd(s);
  }
  if (o.optimizer == "adam") {
    AdamOptions a = o.adam;
    a.dim = o.dim;
    return CreateServerAdam(a);
  }
  if (o.optimizer == "yogi") {
    YogiOptions y = o.yogi;
    y.dim = o.dim;
    return CreateServerYogi(y);
  }
  if (o.optimizer == "adagrad") {
    AdagradOptions a = o.adagrad;
    a.dim = o.dim;
    return CreateServerAdagrad(a);
  }
  if (o.optimizer == "feddyn") {
    FedDynOptions f = o.feddyn;
    f.dim = o.dim;
    return CreateServerFedDyn(f);
  }
  return absl::InvalidArgumentError(
      absl::StrCat("aggregation.server_optimizer.name: unknown optimizer \"", o.optimizer,
                   "\" (sgd, adam, yogi, adagrad, feddyn)"));
}

}  // namespace

Pipeline::Pipeline(const PipelineOptions& options) : options_(options) {}

absl::StatusOr<std::unique_ptr<Pipeline>> Pipeline::Create(const PipelineOptions& options) {
  if (options.dim == 0) {
    return absl::InvalidArgumentError("the aggregation pipeline needs a model of at least one value");
  }
  std::unique_ptr<Pipeline> p(new Pipeline(options));
  if (options.norm_bound.has_value()) {
    ASSIGN_OR_RETURN(p->norm_bound_, NormBoundFilter::Create(*options.norm_bound));
  }
  switch (options.combiner) {
    case PipelineOptions::Combiner::kWeightedMean:
    case PipelineOptions::Combiner::kMean:
      p->mean_ = std::make_unique<WeightedMeanAccumulator>(options.dim);
      break;
    case PipelineOptions::Combiner::kBuffered: {
      BufferedCombiner::Options b = options.buffered;
      b.dim = options.dim;
      ASSIGN_OR_RETURN(p->buffered_, BufferedCombiner::Create(b));
      p->combined_.assign(options.dim, 0.0);
      break;
    }
  }
  ASSIGN_OR_RETURN(p->optimizer_, MakeOptimizer(options));
  if (options.dp.has_value()) {
    const PipelineOptions::Dp& dp = *options.dp;
    if (options.combiner != PipelineOptions::Combiner::kMean) {
      return absl::InvalidArgumentError(
          "aggregation.dp needs aggregation.combiner.rule \"mean\" (the unweighted mean bounds "
          "each client's influence by clip_norm / K; a sample-weighted or robust rule does not)");
    }
    if (!(dp.noise_multiplier >= 0) || std::isinf(dp.noise_multiplier)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "aggregation.dp.noise_multiplier must be finite and >= 0, got ", dp.noise_multiplier));
    }
    if (!(dp.delta > 0 && dp.delta < 1)) {
      return absl::InvalidArgumentError(
          absl::StrCat("aggregation.dp.delta must be in (0, 1), got ", dp.delta));
    }
    DpClipFilter::Options clip;
    clip.clip_norm = dp.clip_norm;
    absl::StatusOr<std::unique_ptr<DpClipFilter>> filter = DpClipFilter::Create(clip);
    if (!filter.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("aggregation.dp.clip_norm must be finite and > 0, got ",
                                                     dp.clip_norm));
    }
    p->dp_clip_ = std::move(*filter);
    p->base_noise_multiplier_ = dp.noise_multiplier;
    GaussianNoiseStage::Options noise;
    noise.noise_multiplier = dp.noise_multiplier;
    noise.seed = dp.seed;
    ASSIGN_OR_RETURN(p->noise_, GaussianNoiseStage::Create(noise));
    if (dp.adaptive.has_value()) {
      AdaptiveClipping::Options a = *dp.adaptive;
      a.initial_clip_norm = dp.clip_norm;
      ASSIGN_OR_RETURN(p->adaptive_, AdaptiveClipping::Create(a));
      if (dp.noise_multiplier > 0) {
        // The count's noise must leave some budget to the update (Andrew et al., Theorem 1).
        RETURN_IF_ERROR(
            UpdateNoiseMultiplierWithAdaptiveClipping(dp.noise_multiplier, a.count_noise_stddev)
                .status());
      }
    }
    ASSIGN_OR_RETURN(p->accountant_, RdpAccountant::Create({}));
  }
  if (options.averaging.has_value()) {
    ModelAverage::Options a = *options.averaging;
    a.dim = options.dim;
    ASSIGN_OR_RETURN(p->average_, ModelAverage::Create(a));
  }
  if (p->NeedsDense()) p->scratch_.reserve(options.dim);
  p->report_.server_lr = p->optimizer_->learning_rate();
  return p;
}

double Pipeline::WeightOf(uint64_t num_samples) const {
  // The unweighted mean (DP) counts every update once.
  return options_.combiner == PipelineOptions::Combiner::kMean ? 1.0
                                                               : static_cast<double>(num_samples);
}

bool Pipeline::NeedsDense() const {
  return norm_bound_ != nullptr || dp_clip_ != nullptr || buffered_ != nullptr;
}

int Pipeline::max_updates_per_round() const {
  return buffered_ != nullptr ? options_.buffered.max_updates : 0;
}

uint64_t Pipeline::memory_bound_bytes() const {
  uint64_t bytes = mean_ != nullptr ? mean_->memory_bytes() : buffered_->memory_bound_bytes() +
                                                                   combined_.size() * sizeof(double);
  if (NeedsDense()) bytes += options_.dim * sizeof(float);
  return bytes;
}

void Pipeline::BeginRound(const RoundContext& context) {
  context_ = context;
  if (mean_ != nullptr) mean_->Reset();
  if (buffered_ != nullptr) buffered_->Reset();
  clipped_ = 0;
  dp_clipped_ = 0;
  within_clip_ = 0;
}

int64_t Pipeline::num_accumulated() const {
  return mean_ != nullptr ? mean_->count() : buffered_->num_buffered();
}

absl::Status Pipeline::AddScratch(uint64_t num_samples) {
  const absl::Span<float> update = absl::MakeSpan(scratch_);
  bool clipped = false;
  bool dp_clipped = false;
  bool within = false;
  if (norm_bound_ != nullptr) {
    ASSIGN_OR_RETURN(const FilterResult r, norm_bound_->Apply(update));
    clipped = r.clipped;
  }
  if (dp_clip_ != nullptr) {
    ASSIGN_OR_RETURN(const FilterResult r, dp_clip_->Apply(update));
    dp_clipped = r.clipped;
    within = r.norm <= dp_clip_->clip_norm();
  }
  if (mean_ != nullptr) {
    RETURN_IF_ERROR(mean_->Add(update, WeightOf(num_samples)));
  } else {
    RETURN_IF_ERROR(buffered_->Add(update, num_samples));
  }
  clipped_ += clipped ? 1 : 0;
  dp_clipped_ += dp_clipped ? 1 : 0;
  within_clip_ += within ? 1 : 0;
  return absl::OkStatus();
}

absl::Status Pipeline::Accumulate(absl::Span<const float> delta, uint64_t num_samples) {
  if (num_samples == 0) return absl::InvalidArgumentError("update reports 0 training samples");
  if (delta.size() != options_.dim) {
    return absl::InvalidArgumentError(
        absl::StrCat("update has ", delta.size(), " values, expected ", options_.dim));
  }
  if (!NeedsDense()) return mean_->Add(delta, WeightOf(num_samples));
  scratch_.assign(delta.begin(), delta.end());
  return AddScratch(num_samples);
}

absl::Status Pipeline::AccumulateEncoded(absl::string_view encoded,
                                         absl::Span<const compression::TensorLayout> layout,
                                         const compression::ChainSpec& chain,
                                         uint64_t num_samples) {
  if (num_samples == 0) return absl::InvalidArgumentError("update reports 0 training samples");
  if (!NeedsDense()) return mean_->AddEncoded(encoded, layout, chain, WeightOf(num_samples));
  compression::DecodeOptions decode;
  decode.expected_chain = chain;
  RETURN_IF_ERROR(compression::DecodeToDense(encoded, layout, &scratch_, decode));
  if (scratch_.size() != options_.dim) {
    return absl::InvalidArgumentError(
        absl::StrCat("update has ", scratch_.size(), " values, expected ", options_.dim));
  }
  return AddScratch(num_samples);
}

absl::Status Pipeline::CombinedUpdate(absl::Span<float> out) {
  if (mean_ == nullptr || dp_clip_ != nullptr || noise_ != nullptr) {
    return absl::UnimplementedError(
        absl::StrCat(options_.name,
                     " does not only average (a buffered combiner or DP): it cannot hand a "
                     "combined update upstream; use it at the root"));
  }
  if (out.size() != options_.dim) {
    return absl::InvalidArgumentError(
        absl::StrCat("combined update of ", out.size(), " values, expected ", options_.dim));
  }
  if (mean_->count() == 0) {
    return WithReason(absl::FailedPreconditionError(
                          absl::StrCat("round ", context_.round, ": no update to combine")),
                      "no_updates");
  }
  RETURN_IF_ERROR(mean_->Mean(out));
  report_ = RoundReport();
  report_.updates_clipped = clipped_;
  return absl::OkStatus();
}

absl::Status Pipeline::Aggregate(absl::Span<float> global, int num_failures) {
  const int64_t k = num_accumulated();
  if (k == 0) {
    return WithReason(absl::FailedPreconditionError(
                          absl::StrCat("round ", context_.round, ": no update to aggregate (",
                                       num_failures, " selected clients failed)")),
                      "no_updates");
  }
  if (global.size() != options_.dim) {
    return absl::InvalidArgumentError(
        absl::StrCat("global model has ", global.size(), " values, expected ", options_.dim));
  }
  // 1. Combine.
  absl::Span<double> combined;
  if (mean_ != nullptr) {
    ASSIGN_OR_RETURN(combined, mean_->MeanInPlace());
  } else {
    RETURN_IF_ERROR(buffered_->Combine(absl::MakeSpan(combined_)));
    combined = absl::MakeSpan(combined_);
  }
  // 2. DP noise on the mean of the K clipped updates.
  double round_sigma = base_noise_multiplier_;
  double clip_norm = 0;
  if (noise_ != nullptr) {
    if (context_.noise_multiplier >= 0) round_sigma = context_.noise_multiplier;
    clip_norm = dp_clip_->clip_norm();
    double update_sigma = round_sigma;
    if (adaptive_ != nullptr && round_sigma > 0) {
      ASSIGN_OR_RETURN(update_sigma, UpdateNoiseMultiplierWithAdaptiveClipping(
                                         round_sigma, options_.dp->adaptive->count_noise_stddev));
    }
    // The stage draws N(0, (its multiplier * C / K)^2); scale to this round's multiplier.
    RETURN_IF_ERROR(noise_->AddNoise(combined, k, clip_norm, update_sigma));
  }
  // 3. Server optimizer step (leaves global and its state unchanged on error).
  if (context_.server_lr > 0 && context_.server_lr != optimizer_->learning_rate()) {
    RETURN_IF_ERROR(optimizer_->SetLearningRate(context_.server_lr));
  }
  RETURN_IF_ERROR(optimizer_->Apply(combined, global));
  // 4. After the release: adapt C and account the round.
  report_ = RoundReport();
  report_.updates_clipped = clipped_;
  report_.updates_dp_clipped = dp_clipped_;
  report_.server_lr = optimizer_->learning_rate();
  if (noise_ != nullptr) {
    report_.dp_clip_norm = clip_norm;
    if (adaptive_ != nullptr) {
      ASSIGN_OR_RETURN(const double next, adaptive_->Update(within_clip_, k));
      RETURN_IF_ERROR(dp_clip_->SetClipNorm(next));
    }
    if (round_sigma > 0) {
      double q = 1.0;
      if (context_.num_selected > 0 && context_.num_eligible > 0) {
        q = std::min(1.0, static_cast<double>(context_.num_selected) / context_.num_eligible);
      }
      RETURN_IF_ERROR(accountant_->Compose(q, round_sigma));
      ASSIGN_OR_RETURN(const RdpAccountant::Epsilon eps,
                       accountant_->GetEpsilon(options_.dp->delta));
      report_.dp_epsilon = eps.epsilon;
    } else {
      report_.dp_epsilon = std::numeric_limits<double>::infinity();
    }
  }
  // 5. The run's result: the average of the global models so far.
  if (average_ != nullptr) RETURN_IF_ERROR(average_->Add(context_.round, global));
  return absl::OkStatus();
}

std::optional<std::vector<float>> Pipeline::averaged_model() const {
  if (average_ == nullptr || average_->count() == 0) return std::nullopt;
  return average_->model();
}

std::string Pipeline::SaveState() const {
  StateWriter writer(kStateKind);
  writer.PutString(options_.name);
  writer.PutString(optimizer_->SaveState());
  writer.PutString(noise_ != nullptr ? noise_->SaveState() : "");
  writer.PutString(adaptive_ != nullptr ? adaptive_->SaveState() : "");
  writer.PutF64(dp_clip_ != nullptr ? dp_clip_->clip_norm() : 0.0);
  writer.PutString(accountant_ != nullptr ? accountant_->SaveState() : "");
  // Only with averaging, so that a state saved before it existed still loads without it.
  if (average_ != nullptr) writer.PutString(average_->SaveState());
  return writer.Finish();
}

absl::Status Pipeline::LoadState(absl::string_view state) {
  ASSIGN_OR_RETURN(StateReader reader, StateReader::Open(state, kStateKind));
  const size_t max = 64 * options_.dim + (1 << 20);
  ASSIGN_OR_RETURN(const std::string name, reader.GetString("name", 256));
  if (name != options_.name) {
    return absl::InvalidArgumentError(absl::StrCat("the saved aggregation state is of strategy \"",
                                                   name, "\", this run's is \"", options_.name,
                                                   "\""));
  }
  ASSIGN_OR_RETURN(const std::string optimizer, reader.GetString("optimizer", max));
  ASSIGN_OR_RETURN(const std::string noise, reader.GetString("noise", max));
  ASSIGN_OR_RETURN(const std::string adaptive, reader.GetString("adaptive", max));
  ASSIGN_OR_RETURN(const double clip_norm, reader.GetF64("clip_norm"));
  ASSIGN_OR_RETURN(const std::string accountant, reader.GetString("accountant", max));
  std::string average;
  if (average_ != nullptr) {
    ASSIGN_OR_RETURN(average, reader.GetString("averaging", max));
  }
  RETURN_IF_ERROR(reader.Finish());
  if (noise.empty() != (noise_ == nullptr) || adaptive.empty() != (adaptive_ == nullptr) ||
      accountant.empty() != (accountant_ == nullptr)) {
    return absl::InvalidArgumentError(
        "the saved aggregation state has other stages than this run's configuration");
  }
  if (dp_clip_ != nullptr && !(std::isfinite(clip_norm) && clip_norm > 0)) {
    return absl::InvalidArgumentError("the saved aggregation state has an invalid clip norm");
  }
  // Load into copies first so that a failure half way leaves this pipeline unchanged.
  ASSIGN_OR_RETURN(std::unique_ptr<ServerOptimizer> opt, MakeOptimizer(options_));
  RETURN_IF_ERROR(opt->LoadState(optimizer));
  std::unique_ptr<GaussianNoiseStage> noise_copy;
  if (noise_ != nullptr) {
    GaussianNoiseStage::Options o;
    o.noise_multiplier = options_.dp->noise_multiplier;
    o.seed = options_.dp->seed;
    ASSIGN_OR_RETURN(noise_copy, GaussianNoiseStage::Create(o));
    RETURN_IF_ERROR(noise_copy->LoadState(noise));
  }
  std::unique_ptr<AdaptiveClipping> adaptive_copy;
  if (adaptive_ != nullptr) {
    AdaptiveClipping::Options o = *options_.dp->adaptive;
    o.initial_clip_norm = options_.dp->clip_norm;
    ASSIGN_OR_RETURN(adaptive_copy, AdaptiveClipping::Create(o));
    RETURN_IF_ERROR(adaptive_copy->LoadState(adaptive));
  }
  std::unique_ptr<RdpAccountant> accountant_copy;
  if (accountant_ != nullptr) {
    ASSIGN_OR_RETURN(accountant_copy, RdpAccountant::Create({}));
    RETURN_IF_ERROR(accountant_copy->LoadState(accountant));
  }
  std::unique_ptr<ModelAverage> average_copy;
  if (average_ != nullptr) {
    ModelAverage::Options o = *options_.averaging;
    o.dim = options_.dim;
    ASSIGN_OR_RETURN(average_copy, ModelAverage::Create(o));
    RETURN_IF_ERROR(average_copy->LoadState(average));
  }
  if (dp_clip_ != nullptr) RETURN_IF_ERROR(dp_clip_->SetClipNorm(clip_norm));
  optimizer_ = std::move(opt);
  if (average_copy) average_ = std::move(average_copy);
  if (noise_copy) noise_ = std::move(noise_copy);
  if (adaptive_copy) adaptive_ = std::move(adaptive_copy);
  if (accountant_copy) accountant_ = std::move(accountant_copy);
  report_.server_lr = optimizer_->learning_rate();
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Strategy>> CreateFedAvg(size_t dim) {
  PipelineOptions options;
  options.dim = dim;
  ASSIGN_OR_RETURN(std::unique_ptr<Pipeline> p, Pipeline::Create(options));
  return std::unique_ptr<Strategy>(std::move(p));
}

}  // namespace edgefl::aggregation
