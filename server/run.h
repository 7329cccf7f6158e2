// The run lifecycle of fl-server, apart from gRPC: loading a fresh run or resuming one from its
// checkpoint (RunOptions -> LoadedRun), and recording it as rounds close (RunRecorder: the
// checkpoint, the final model, the metrics lines, the rounds whose line is still pending and
// the evaluation that fills them). Torch-free: evaluation comes in through Evaluator.
#ifndef EDGEFL_SERVER_RUN_H_
#define EDGEFL_SERVER_RUN_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "common/clock.h"
#include "aggregation/strategy.h"
#include "protos/config.pb.h"
#include "protos/edgefl.pb.h"
#include "server/run_store.h"

namespace edgefl::server {

// ---- load or resume ----------------------------------------------------------------------------

struct RunOptions {
  // The run's output folder. "" = <runs_root>/<local time as %Y%m%d-%H%M%S> for a fresh run, the
  // newest folder under runs_root that holds a checkpoint with `resume`.
  std::string out;
  // Continue the run in `out` from its checkpoint (its own config, model and round).
  bool resume = false;
  // For restartable deployments (a Kubernetes pod on a volume): with `out` set, resume when
  // `out` holds a checkpoint and start a fresh run there otherwise. On resume `config_file` is
  // not read (the run keeps its own config, as with `resume`); overrides still apply.
  bool resume_if_present = false;
  // Experiment config (JSON of proto::ExperimentConfig) of a fresh run; "" = the defaults.
  // Refused with `resume` (the run keeps its own config; overrides may still change it).
  std::string config_file;
  // "field.path=value" assignments (common/config.h ApplyOverride), applied in order on top of
  // the config file or the checkpoint's config.
  std::vector<std::string> overrides;
  // Where default output folders live.
  std::string runs_root = "runs";
};

struct LoadedRun {
  RunStore store;                  // the output folder (created)
  proto::ExperimentConfig config;  // defaults filled and validated
  proto::ModelSpec spec;           // of config.model()
  std::vector<float> weights;      // the global model after `completed_rounds`
  int64_t completed_rounds = 0;    // 0 for a fresh run
  double elapsed_seconds = 0;      // wall time of the run before this process
  // On resume: the checkpoint resumed from, without its weights (those are in `weights`).
  std::optional<proto::Checkpoint> resumed_from;
  // The aggregation pipeline of config.aggregation, with the checkpoint's state loaded on
  // resume.
  std::unique_ptr<aggregation::Strategy> strategy;
};

// Loads a fresh run (config file, overrides, defaults, initial weights: seeded or
// config.init_weights) or resumes one. Writes nothing but the output folder itself. Every error
// is meant for the command line and names what is wrong: INVALID_ARGUMENT for a bad config or
// override, --config with --resume or weights that do not fit the model; NOT_FOUND for a missing
// file or no run to resume; FAILED_PRECONDITION for a fresh run over a folder that holds a run
// already (pass --resume); DATA_LOSS for a corrupt checkpoint; INVALID_ARGUMENT for
// resume_if_present without `out` or together with `resume`. `clock` names default folders.
absl::StatusOr<LoadedRun> LoadOrResumeRun(const RunOptions& options, const Clock* clock);

// ---- evaluation
// ----------------------------------------------------------------------------------

struct EvalFigures {
  double accuracy = 0;  // top-1 on the held-out set
  double loss = 0;      // mean cross-entropy
  double seconds = 0;   // wall time of the evaluation
};

// Evaluates a global model on held-out data (server/test_set_evaluator.h is the real one).
// Called from one thread at a time.
class Evaluator {
 public:
  virtual ~Evaluator() = default;
  // `weights` in spec order. Any error is logged by the caller and the round keeps no figures.
  virtual absl::StatusOr<EvalFigures> Evaluate(absl::Span<const float> weights) = 0;
};

// ---- recording
// -----------------------------------------------------------------------------------

// Records a run as its rounds close. OnRoundClosed (the scheduler's thread, as each round closes)
// writes the checkpoint, carrying every closed round whose metrics line is not written yet, and
// after the last round the final model; OnRoundDone (the scheduler's worker, lagging behind)
// evaluates the rounds the config asks for and appends their metrics lines. So a restart loses
// no round's line however far evaluation lags. Thread-safe in that use: the two may run at once.
class RunRecorder {
 public:
  struct Options {
    // Validated. evaluation.every and rounds decide which rounds are evaluated (every `every`-th
    // and the last); the checkpoint carries it.
    proto::ExperimentConfig config;
    proto::ModelSpec spec;
    // Wall time of the run before this process; checkpoints count on from it (from Create).
    double elapsed_before = 0;
    // Called after each metrics line is appended (e.g. the Prometheus exporter); may be empty.
    std::function<void(const RoundMetrics&)> on_metrics_line;
  };

  // Writes config.json into `store`. `store` and `clock` must outlive the recorder; `evaluator`
  // too unless null (no test figures). Errors are those of writing the file.
  static absl::StatusOr<std::unique_ptr<RunRecorder>> Create(Options options, RunStore* store,
                                                             Evaluator* evaluator,
                                                             const Clock* clock);

  // On resume from `from` (whose model is `weights`): drops metrics lines after its round and
  // writes the lines of its pending rounds that metrics.jsonl lacks, evaluating `weights` (and
  // `average`, the restored strategy's averaged model if any, as in OnRoundDone) for the line of
  // its own round (RunStore::RestoreMetrics). Returns how many lines it wrote.
  absl::StatusOr<int> Restore(const proto::Checkpoint& from, absl::Span<const float> weights,
                              const std::vector<float>* average = nullptr);

  // The scheduler's RoundScheduler::Options::on_round_closed and RoundDoneFn. Write errors are
  // logged and kept in status() (FlServer then stops the run); once there is one, OnRoundDone
  // writes no more metrics lines, so that metrics.jsonl never runs ahead of checkpoint.pb.
  // `aggregation_state` (the strategy's SaveState after the round) goes into the checkpoint with
  // the model, in the same atomic write. With an `average` (aggregation.averaging), it is the
  // run's result: written as the final model and evaluated as test_accuracy, the global model
  // as global_test_accuracy; the checkpoint keeps the global model (the average is in the
  // aggregation state).
  void OnRoundClosed(const proto::RoundRecord& stats,
                     std::shared_ptr<const std::vector<float>> model,
                     const std::string& aggregation_state = "",
                     std::shared_ptr<const std::vector<float>> average = nullptr);
  void OnRoundDone(const proto::RoundRecord& stats,
                   std::shared_ptr<const std::vector<float>> model,
                   std::shared_ptr<const std::vector<float>> average = nullptr);

  // OK, or the first error writing a checkpoint, the final model or a metrics line.
  absl::Status status() const;
  // Closed rounds whose metrics line is not written yet.
  std::vector<int64_t> pending_rounds() const;
  // The privacy spent up to the last closed round, with central DP on.
  std::optional<double> dp_epsilon() const;

 private:
  RunRecorder(Options options, RunStore* store, Evaluator* evaluator, const Clock* clock);
  // Fills the test figures of m->stats.round() when the config evaluates that round: of
  // `average` if given (then the global model's as global_test_*), else of `model`.
  void Evaluate(absl::Span<const float> model, const std::vector<float>* average, RoundMetrics* m);
  void Fail(const absl::Status& status);

  const Options options_;
  RunStore* const store_;
  Evaluator* const evaluator_;
  const Clock* const clock_;
  const absl::Time started_;

  mutable absl::Mutex mu_;
  std::map<int64_t, proto::RoundRecord> pending_ ABSL_GUARDED_BY(mu_);
  std::optional<double> last_dp_epsilon_ ABSL_GUARDED_BY(mu_);
  absl::Status status_ ABSL_GUARDED_BY(mu_);
};

}  // namespace edgefl::server

#endif  // EDGEFL_SERVER_RUN_H_
