#include "server/run.h"

#include <filesystem>
#include <system_error>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "server/config.h"
#include "common/file_util.h"
#include "common/log.h"
#include "common/status_macros.h"
#include "models/model_spec.h"
#include "server/round_scheduler.h"  // BytesToFloats
#include "server/strategy_registry.h"

namespace edgefl::server {
namespace {

// The newest folder under `root` that holds a checkpoint ("" if none).
std::string NewestRunDir(const std::string& root) {
  std::error_code ec;
  std::string best;
  for (const auto& entry : std::filesystem::directory_iterator(root, ec)) {
    if (entry.is_directory() &&
        FileExists(entry.path().string() + "/" + RunStore::kCheckpointFile)) {
      if (entry.path().string() > best) best = entry.path().string();
    }
  }
  return best;
}

// Errors of the config, its overrides and the model keep their own message.
absl::Status Plain(const absl::Status& s) { return absl::Status(s.code(), s.message()); }

}  // namespace

absl::StatusOr<LoadedRun> LoadOrResumeRun(const RunOptions& given, const Clock* clock) {
  RunOptions options = given;
  if (options.resume_if_present) {
    if (options.resume) {
      return absl::InvalidArgumentError("--resume_if_present and --resume exclude each other");
    }
    if (options.out.empty()) {
      return absl::InvalidArgumentError("--resume_if_present needs --out (the run folder)");
    }
    if (FileExists(options.out + "/" + RunStore::kCheckpointFile)) {
      EDGEFL_LOG_INFO("--resume_if_present: ", options.out, " holds a checkpoint, resuming it",
                      options.config_file.empty() ? "" : " (its own config; --config not read)");
      options.resume = true;
      options.config_file.clear();
    } else {
      EDGEFL_LOG_INFO("--resume_if_present: no checkpoint in ", options.out,
                      ", starting a fresh run");
    }
  }
  std::string out = options.out;
  if (options.resume) {
    if (out.empty()) out = NewestRunDir(options.runs_root);
    if (out.empty()) {
      return absl::NotFoundError(
          absl::StrCat("--resume: no run with a checkpoint under ", options.runs_root, "/"));
    }
    if (!options.config_file.empty()) {
      return absl::InvalidArgumentError(
          "--resume takes the run's own config; use --set or --rounds to change it");
    }
  } else {
    if (out.empty()) {
      out = absl::StrCat(options.runs_root, "/",
                         absl::FormatTime("%Y%m%d-%H%M%S", clock->Now(), absl::LocalTimeZone()));
    }
    // Starting afresh over a run would append to its metrics and replace its checkpoint.
    if (FileExists(out + "/" + RunStore::kCheckpointFile)) {
      return absl::FailedPreconditionError(
          absl::StrCat(out, " holds a run already (", RunStore::kCheckpointFile,
                       "): pass --resume to continue it, or another --out"));
    }
  }
  // A fresh run is checked in full (config, model, aggregation pipeline) before anything is
  // written: a refused config leaves no folder behind.
  std::optional<RunStore> store;
  std::optional<proto::Checkpoint> ckpt;
  proto::ExperimentConfig config;
  if (options.resume) {
    ASSIGN_OR_RETURN(store, RunStore::Open(out));
    absl::StatusOr<proto::Checkpoint> read = store->ReadCheckpoint();
    if (!read.ok()) {
      return absl::Status(read.status().code(),
                          absl::StrCat("--resume: ", read.status().message()));
    }
    ckpt = std::move(*read);
    config = ckpt->config();
  } else if (!options.config_file.empty()) {
    ASSIGN_OR_RETURN(config, LoadConfigFile(options.config_file));
  }
  for (const std::string& assignment : options.overrides) {
    RETURN_IF_ERROR(Plain(ApplyOverride(assignment, &config)));
  }
  FillDefaults(&config);
  RETURN_IF_ERROR(Plain(ValidateConfig(config)));
  ASSIGN_OR_RETURN(proto::ModelSpec spec, models::SpecForModel(config.model()));
  const size_t dim = static_cast<size_t>(models::NumParameters(spec));
  ASSIGN_OR_RETURN(std::unique_ptr<aggregation::Pipeline> pipeline, CreatePipeline(config, dim));
  std::vector<float> weights;
  if (ckpt.has_value()) {
    ASSIGN_OR_RETURN(weights, BytesToFloats(ckpt->weights()));
    if (weights.size() != dim) {
      return absl::InvalidArgumentError(
          "--resume: the checkpoint does not match the configured model");
    }
    if (!ckpt->aggregation_state().empty()) {
      absl::Status loaded = pipeline->LoadState(ckpt->aggregation_state());
      if (!loaded.ok()) {
        return absl::DataLossError(absl::StrCat("--resume: the checkpoint's aggregation state: ",
                                                loaded.message()));
      }
    } else if (ckpt->round() > 0) {
      // Written before the pipeline kept state (plain FedAvg, whose SGD step holds none).
      EDGEFL_LOG_WARN("--resume: the checkpoint holds no aggregation state; the ",
                      config.aggregation().strategy(), " pipeline starts from its initial state");
    }
    ckpt->clear_weights();
    ckpt->clear_aggregation_state();
  } else {
    ASSIGN_OR_RETURN(weights, config.init_weights().empty()
                                  ? models::InitialWeights(config.model(), config.seed())
                                  : models::LoadRawWeights(config.init_weights(), spec));
    ASSIGN_OR_RETURN(store, RunStore::Open(out));
  }
  LoadedRun run{std::move(*store), std::move(config), std::move(spec), std::move(weights),
                /*completed_rounds=*/0, /*elapsed_seconds=*/0, /*resumed_from=*/std::nullopt,
                /*strategy=*/nullptr};
  if (ckpt.has_value()) {
    run.completed_rounds = ckpt->round();
    run.elapsed_seconds = ckpt->elapsed_seconds();
    run.resumed_from = std::move(*ckpt);
  }
  run.strategy = std::move(pipeline);
  return run;
}

absl::StatusOr<std::unique_ptr<RunRecorder>> RunRecorder::Create(Options options, RunStore* store,
                                                                 Evaluator* evaluator,
                                                                 const Clock* clock) {
  RETURN_IF_ERROR(store->WriteConfig(options.config));
  return std::unique_ptr<RunRecorder>(new RunRecorder(std::move(options), store, evaluator, clock));
}

RunRecorder::RunRecorder(Options options, RunStore* store, Evaluator* evaluator, const Clock* clock)
    : options_(std::move(options)),
      store_(store),
      evaluator_(evaluator),
      clock_(clock),
      started_(clock->Now()) {}

void RunRecorder::Evaluate(absl::Span<const float> model, const std::vector<float>* average,
                           RoundMetrics* m) {
  const int64_t round = m->stats.round();
  const proto::ExperimentConfig& config = options_.config;
  if (round % config.evaluation().every() != 0 && round != config.rounds()) return;
  if (evaluator_ == nullptr) return;
  absl::StatusOr<EvalFigures> r = evaluator_->Evaluate(model);
  if (!r.ok()) {
    EDGEFL_LOG_ERROR("evaluation of round ", round, " failed: ", r.status().ToString());
    return;
  }
  if (average == nullptr) {
    m->test_accuracy = r->accuracy;
    m->test_loss = r->loss;
    m->eval_seconds = r->seconds;
    return;
  }
  absl::StatusOr<EvalFigures> a = evaluator_->Evaluate(*average);
  if (!a.ok()) {
    EDGEFL_LOG_ERROR("evaluation of round ", round, "'s averaged model failed: ",
                     a.status().ToString());
    return;
  }
  m->test_accuracy = a->accuracy;
  m->test_loss = a->loss;
  m->global_test_accuracy = r->accuracy;
  m->global_test_loss = r->loss;
  m->eval_seconds = r->seconds + a->seconds;
}

absl::StatusOr<int> RunRecorder::Restore(const proto::Checkpoint& from,
                                         absl::Span<const float> weights,
                                         const std::vector<float>* average) {
  // Rounds that closed before the restart but whose evaluation was lost get their lines now;
  // the checkpoint's own model is evaluated again.
  ASSIGN_OR_RETURN(const int restored, store_->RestoreMetrics(from, [&](RoundMetrics* m) {
                     Evaluate(weights, average, m);
                   }));
  if (restored > 0) {
    EDGEFL_LOG_WARN("metrics.jsonl: wrote the lines of ", restored, " round(s) up to ",
                    from.round(), " whose evaluation the restart lost",
                    restored > 1 ? " (only the last is evaluated again)" : "");
  }
  return restored;
}

void RunRecorder::Fail(const absl::Status& status) {
  absl::MutexLock lock(&mu_);
  if (status_.ok()) status_ = status;
}

void RunRecorder::OnRoundClosed(const proto::RoundRecord& stats,
                                std::shared_ptr<const std::vector<float>> model,
                                const std::string& aggregation_state,
                                std::shared_ptr<const std::vector<float>> average) {
  const double elapsed = options_.elapsed_before + absl::ToDoubleSeconds(clock_->Now() - started_);
  proto::Checkpoint ckpt =
      MakeCheckpoint(stats.round(), options_.spec, *model, options_.config, elapsed);
  ckpt.set_aggregation_state(aggregation_state);
  {
    absl::MutexLock lock(&mu_);
    if (stats.has_dp_epsilon()) last_dp_epsilon_ = stats.dp_epsilon();
    pending_[stats.round()] = stats;
    for (const auto& [round, pending] : pending_) *ckpt.add_pending_rounds() = pending;
  }
  absl::Status s = store_->WriteCheckpoint(ckpt);
  if (s.ok() && stats.round() == options_.config.rounds()) {
    s = store_->WriteFinalModel(options_.spec, average != nullptr ? *average : *model);
  }
  if (!s.ok()) {
    EDGEFL_LOG_ERROR("could not write the checkpoint of round ", stats.round(), ": ", s.ToString());
    Fail(s);
  }
}

void RunRecorder::OnRoundDone(const proto::RoundRecord& stats,
                              std::shared_ptr<const std::vector<float>> model,
                              std::shared_ptr<const std::vector<float>> average) {
  if (!status().ok()) {
    // A file could not be written and the run is stopping: no line for a round whose checkpoint
    // may be missing (a resume writes the lines of the checkpoint's pending rounds itself).
    return;
  }
  RoundMetrics m;
  m.stats = stats;
  Evaluate(*model, average.get(), &m);
  absl::Status s = store_->AppendMetrics(m);
  if (s.ok()) {
    {
      absl::MutexLock lock(&mu_);
      pending_.erase(stats.round());
    }
    if (options_.on_metrics_line) options_.on_metrics_line(m);
  } else {
    EDGEFL_LOG_ERROR("could not write the metrics of round ", stats.round(), ": ", s.ToString());
    Fail(s);
  }
  EDGEFL_LOG_INFO(absl::StrFormat(
      "round %d/%d: test_accuracy %s%s test_loss %s clients %d/%d (failed %d) round %.1fs eval "
      "%.1fs up %.1f MB down %.1f MB",
      stats.round(), options_.config.rounds(),
      m.test_accuracy ? absl::StrFormat("%.4f", *m.test_accuracy) : "-",
      m.global_test_accuracy
          ? absl::StrFormat(" (averaged; global model %.4f)", *m.global_test_accuracy)
          : "",
      m.test_loss ? absl::StrFormat("%.4f", *m.test_loss) : "-", stats.clients_reported(),
      stats.clients_selected(), stats.clients_failed(), stats.round_seconds(), m.eval_seconds,
      stats.bytes_up() / 1e6, stats.bytes_down() / 1e6));
  if (stats.has_dp_epsilon()) {
    EDGEFL_LOG_INFO(absl::StrFormat("round %d: dp_epsilon %.4g at delta %g (clip norm %.4g)",
                                    stats.round(), stats.dp_epsilon(),
                                    options_.config.aggregation().dp().delta(),
                                    stats.dp_clip_norm()));
  }
}

absl::Status RunRecorder::status() const {
  absl::MutexLock lock(&mu_);
  return status_;
}

std::optional<double> RunRecorder::dp_epsilon() const {
  absl::MutexLock lock(&mu_);
  return last_dp_epsilon_;
}

std::vector<int64_t> RunRecorder::pending_rounds() const {
  absl::MutexLock lock(&mu_);
  std::vector<int64_t> rounds;
  for (const auto& [round, record] : pending_) rounds.push_back(round);
  return rounds;
}

}  // namespace edgefl::server
