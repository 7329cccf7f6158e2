// The device loop of fl-client as a library: join the coordinator, long-poll for tasks, rebuild
// the round's global model, train it on the local shard, encode the update, upload it, and (with
// a Distiller) distil the model into a microcontroller student. The coordinator, the clock
// (including sleeping between retries), the trainer and the distiller are injected, so the loop's
// behaviour (backoff, re-joining after a server restart, session renewal, duplicate tasks, refused
// updates) is unit-tested without processes or real time (device_runtime_test.cc).
//
// Torch-free: training is behind models/model_runner.h, distillation behind models/distill.h.
#ifndef EDGEFL_CLIENT_DEVICE_RUNTIME_H_
#define EDGEFL_CLIENT_DEVICE_RUNTIME_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <random>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "client/backoff.h"
#include "client/budgets.h"
#include "client/coordinator.h"
#include "client/device_state.h"
#include "client/feddyn_term.h"
#include "client/update_pipeline.h"
#include "common/clock.h"
#include "data/dataset.h"
#include "students/distill.h"
#include "models/model_runner.h"
#include "protos/edgefl.pb.h"

namespace edgefl::client {

// Distils a global model into a student on the local data and exports it. Called from the device
// loop's thread only.
class Distiller {
 public:
  virtual ~Distiller() = default;
  // `task` names the teacher (spec, model_version, round, final_model); `global` holds its
  // weights in spec order. Errors are logged by the loop; the federation goes on.
  virtual absl::StatusOr<students::DistillReport> Distill(const proto::Task& task,
                                                        absl::Span<const float> global,
                                                        const data::ImageDataset& local) = 0;
};

// The real distiller: students::DistillAndExport into `out_dir` (replaced atomically each time),
// with `options` (student, epochs, max_samples, threads) and the seed `seed + task.round()`.
std::unique_ptr<Distiller> NewExportingDistiller(students::DistillOptions options, uint64_t seed,
                                                 std::string out_dir);

// Makes the runner for a task's model name (models::ModelRunner::Create by default).
using RunnerFactory = std::function<absl::StatusOr<std::unique_ptr<models::ModelRunner>>(
    const std::string& model, int threads)>;

// This machine's profile (architecture, cores, RAM, free disk in ".", host name).
proto::DeviceProfile DescribeThisDevice();

// Not thread-safe: one instance runs one device's loop on one thread.
class DeviceRuntime {
 public:
  struct Options {
    std::string server;    // the coordinator's address, for messages only
    int client_index = 0;  // the shard index: log tag, training seed, state file names
    uint64_t seed = 0;     // with client_index, seeds the retry jitter
    int threads = 1;       // compute threads handed to the runner
    // Give up (with the last failed call's code) once the coordinator has been unreachable for
    // longer than this.
    absl::Duration max_unreachable = absl::Seconds(900);
    Backoff::Options backoff;    // delays between retries of a failed call
    bool show_progress = false;  // draw a training progress line on stderr
    // Folder for the device's state (error-feedback residual "client-<index>.ef"); "" = memory
    // only. Must exist.
    std::string state_dir;
    // Park the global model in an unlinked file in state_dir while training.
    bool spill_model = true;
    // Where the session is kept across restarts ("" = not kept). Read at Create (ignored when
    // unreadable or expired), rewritten after each Join.
    std::string session_file;
    // With a distiller: distil once, from the federation's final model, instead of after each
    // round the device reports.
    bool distill_final_only = false;
    // What the loop does when the coordinator says the federation is finished. Zero: Run()
    // returns. Positive (fl-client --after_finish=wait, for a DaemonSet, which restarts a
    // container that exits): it forgets the run's model, checks in again this often, and takes
    // part in the next run a coordinator starts at the same address.
    absl::Duration after_finish_poll = absl::ZeroDuration();
    // A CheckIn's deadline: the server's long poll + 15 s + the model's dense size (from Join)
    // at this rate, since the download runs inside the same call as the poll.
    double min_download_bytes_per_second = kDefaultMinDownloadBytesPerSecond;
    proto::DeviceProfile profile;  // sent on Join; num_samples is filled in from the data
    // The board's state (battery, temperature, load, memory), read before every Join and
    // CheckIn (sent in the profile) and when a task arrives (to decide with `thresholds`
    // whether to take it). Null: a DeviceStateReader on "/".
    std::function<DeviceState()> device_state;
    // When the device declines a task (--min_battery_percent, --max_temperature_c,
    // --require_charging, --max_load_per_core). Default: takes every task.
    EligibilityThresholds thresholds;
    // Tasks that arrive outside this daily window of `time_zone` time are declined
    // ("outside_train_window"). Unset: any time.
    std::optional<TrainWindow> train_window;
    absl::TimeZone time_zone = absl::LocalTimeZone();
    // Budget for the round's peak resident memory (0 = none): the batch is halved until the
    // estimate fits (logged), and the task declined ("rss_budget") when even a batch of 1 does
    // not. The activation memory per sample starts at activation_bytes_per_sample and is then
    // measured from each round's peak.
    int64_t max_rss_bytes = 0;
    int64_t activation_bytes_per_sample = 512 << 10;
  };

  // `coordinator` and `data` are owned; `clock` must outlive the runtime; `distiller` may be null
  // (no distillation; distill_final_only must then be false); `runners` may be empty (the real
  // ModelRunner). INVALID_ARGUMENT for an empty shard or inconsistent options.
  static absl::StatusOr<std::unique_ptr<DeviceRuntime>> Create(
      const Options& options, std::unique_ptr<Coordinator> coordinator, data::ImageDataset data,
      const Clock* clock, std::unique_ptr<Distiller> distiller = nullptr,
      RunnerFactory runners = nullptr);

  // Runs the loop until the coordinator says the federation is finished (OK, finished() true;
  // with after_finish_poll it waits for the next run instead and returns only errors) or
  // the device gives up: the coordinator unreachable for longer than max_unreachable (the last
  // call's code; "gave up after N s without reaching <server>: ..."), a Join or CheckIn failing
  // for a reason retrying cannot fix (its code; "<Call> failed: ..."), or, with
  // distill_final_only, the final model's distillation failing (finished() true, its code).
  // Messages are one line, without the program name. A round that fails (bad download, training
  // or encoding error, refused or lost update) is logged and skipped; the loop goes on. A task
  // this session already reported (the same round and attempt, or an older round) is not
  // trained again: the loop pauses 1 s and checks in again. Every Join starts a new session.
  absl::Status Run();

  // ---- the steps of one round. PrepareModel, Train and Encode log nothing: their errors'
  // messages say what failed and the loop logs them as "round N: <message>".
  // Rebuilds the task's global model from its download and loads it into a runner for the
  // task's model.
  absl::Status PrepareModel(Coordinator::CheckInResult* task);
  struct Trained {
    models::TrainResult result;
    std::vector<float> delta;  // trained weights - the global model, spec order
  };
  // Trains the loaded model on the local shard and computes the delta.
  absl::StatusOr<Trained> Train(const proto::Task& task);
  // Turns the delta into the task's uplink encoding (residual pending until Upload decides).
  absl::StatusOr<EncodedUpdate> Encode(const proto::Task& task, std::vector<float> delta);
  // Uploads the update, retrying transient failures while the round is open; commits the
  // residual when it is accepted and rolls it back otherwise. FAILED_PRECONDITION /
  // PERMISSION_DENIED / INVALID_ARGUMENT: refused by the server; other codes: lost (the round
  // closed, or the session must be re-joined). Logs the outcome.
  absl::Status Upload(const proto::Task& task, const models::TrainResult& trained,
                      EncodedUpdate update, uint64_t bytes_down);
  // Distils `global` (the model `task` trained from) with the distiller; logs the outcome.
  // FAILED_PRECONDITION without a distiller.
  absl::Status Distil(const proto::Task& task, absl::Span<const float> global);

  // ---- observers (for the binary's summary and for tests)
  bool finished() const { return finished_; }
  int rounds_done() const { return rounds_done_; }
  int tasks_trained() const { return tasks_trained_; }
  int tasks_declined() const { return tasks_declined_; }
  // The batch size the last trained round used (0 before any): the task's, or less under
  // max_rss_bytes.
  int last_batch_size() const { return last_batch_size_; }
  const std::string& client_id() const { return client_id_; }
  std::optional<double> last_student_accuracy() const { return last_student_accuracy_; }
  const UpdatePipeline& pipeline() const { return pipeline_; }
  const FedDynTerm& feddyn() const { return feddyn_; }
  int64_t have_version() const { return have_version_; }

  ~DeviceRuntime();

 private:
  DeviceRuntime(const Options& options, std::unique_ptr<Coordinator> coordinator,
                data::ImageDataset data, const Clock* clock, std::unique_ptr<Distiller> distiller,
                RunnerFactory runners);
  class Spill;
  void LoadSession();
  void SaveSession();
  absl::Status JoinWithRetry();
  void Reachable();
  // After a failed call: OK to go on (after waiting, or with client_id_ cleared to re-join), or
  // the status to give up with.
  absl::Status HandleError(const absl::Status& s, const char* what);
  // Whether the task is one this session has already trained (a duplicate or a stale round).
  bool AlreadyTrained(const proto::Task& task) const;
  void RunTask(Coordinator::CheckInResult task);
  // The profile to send now: options_.profile with the local sample count and `state`.
  proto::DeviceProfile CurrentProfile(const DeviceState& state) const;
  // Why the device does not take `task` now ("" = it does), with a sentence for the log.
  std::string DeclineReasonFor(const proto::Task& task, std::string* why);
  absl::Status DistilFinal(Coordinator::CheckInResult result);
  // With after_finish_poll: the run is over; forget its model and wait before checking in again.
  void WaitForNextRun();
  void UnspillModel();
  // The round's update was accepted (keep the error-feedback residual and the FedDyn term the
  // round computed, and save them) or not (restore both).
  void SettleUpdate(bool accepted);

  const Options options_;
  std::unique_ptr<Coordinator> rpc_;
  data::ImageDataset data_;
  const Clock* clock_;
  std::unique_ptr<Distiller> distiller_;
  RunnerFactory runners_;
  std::unique_ptr<models::ModelRunner> runner_;
  UpdatePipeline pipeline_;
  FedDynTerm feddyn_;  // FedDyn's linear term (tasks with feddyn_alpha > 0)
  Backoff backoff_;
  std::mt19937_64 retry_rng_;  // jitter on a busy server's retry-after hint
  std::string client_id_;
  std::vector<float> model_;        // the global model version have_version_ (downlink base)
  std::unique_ptr<Spill> spilled_;  // model_'s content while Train runs, or null
  int64_t have_version_ = -1;
  absl::Duration poll_timeout_ = absl::Seconds(35);
  absl::Time renew_at_ = absl::InfiniteFuture();
  int reauth_attempts_ = 0;
  std::optional<absl::Time> unreachable_since_;
  int rounds_done_ = 0;
  int tasks_trained_ = 0;
  int tasks_declined_ = 0;
  std::function<DeviceState()> device_state_;
  // A decline not yet delivered: sent with the next CheckIn (reason, round, attempt).
  proto::CheckInRequest pending_decline_;
  std::optional<std::pair<int64_t, int64_t>> last_declined_;  // round, attempt
  void Decline(const proto::Task& task, const std::string& reason, const std::string& why);
  int batch_override_ = 0;
  int last_batch_size_ = 0;  // > 0: the batch the RSS budget allows this round
  int64_t activation_per_sample_ = 0;
  // The last task trained in this session (reset by every Join): round, attempt.
  std::optional<std::pair<int64_t, int64_t>> last_trained_;
  bool finished_ = false;
  std::optional<double> last_student_accuracy_;  // of the last export
};

}  // namespace edgefl::client

#endif  // EDGEFL_CLIENT_DEVICE_RUNTIME_H_
