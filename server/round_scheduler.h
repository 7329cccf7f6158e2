// The round state machine: waits for clients, selects them, hands out tasks, collects validated
// updates into the strategy, closes each round at quorum or deadline, retries a round that missed
// its quorum, and publishes each new global model version.
#ifndef EDGEFL_SERVER_ROUND_SCHEDULER_H_
#define EDGEFL_SERVER_ROUND_SCHEDULER_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "aggregation/strategy.h"
#include "common/clock.h"
#include "compression/chain.h"
#include "compression/update_codec.h"
#include "protos/config.pb.h"
#include "protos/edgefl.pb.h"
#include "server/client_registry.h"

namespace edgefl::server {

// An immutable published global model, shared by every CheckIn stream that sends it.
// `payload` is the downlink reference model R_v: the global model itself when the downlink is
// dense, otherwise R_v = R_{v-1} + decode(delta_payload), where delta_payload encodes
// (global_v - R_{v-1}) under the round's downlink codec. A client that holds R_{v-1} gets the
// small delta and rebuilds R_v bit for bit; any other client gets R_v in full. What the
// compression drops stays in (global - R) and travels in a later delta (downlink error feedback).
struct ModelSnapshot {
  int64_t version = 0;          // the model after round `version` (0 = initial)
  std::string payload;          // R_v, little-endian float32 in spec order
  std::string sha256;           // 32 raw bytes over payload
  std::string downlink_codec;   // canonical chain of delta_payload ("" when none is offered)
  int64_t delta_base_version = -1;
  std::string delta_payload;    // encoded R_v - R_{v-1} (compression/update_codec.h)
  std::string delta_sha256;
};

struct TaskGrant {
  proto::Task task;
  std::shared_ptr<const ModelSnapshot> model;
};

enum class PollOutcome { kIdle, kTask, kFinished };

// Thread-safe: Run() on one thread; the other methods from gRPC handler threads.
//
// With aggregation.mode "buffered" (FedBuff, Nguyen et al. 2022) a "round" is a model version:
// it opens for the sampled devices (buffered.concurrency, 0 = all eligible), closes as soon as
// buffered.buffer_size updates arrived (or every offered device reported or declined; or at the
// deadline with at least one), and the next opens at once. An update may have been computed
// against any version the device was handed, up to buffered.max_staleness versions old; it is
// folded in scaled by (1 + staleness)^-staleness_exponent. A device contributes at most once
// per version; one that reported is offered the next version when it opens.
class RoundScheduler {
 public:
  // Called with a closed round's figures and the new global model; must not call back into the
  // scheduler. As Create's `on_round_done` it runs on the scheduler's own worker thread, in round
  // order: evaluation and metrics happen there while the next rounds are already training.
  // `stats` is the same record that metrics.jsonl and the checkpoint's pending rounds carry.
  // `average`: with aggregation.averaging, the average of the global models so far
  // (Strategy::averaged_model), which is the run's result; nullptr without it and before its
  // first round.
  using RoundDoneFn = std::function<void(const proto::RoundRecord& stats,
                                         std::shared_ptr<const std::vector<float>> model,
                                         std::shared_ptr<const std::vector<float>> average)>;

  using RoundClosedFn = std::function<void(const proto::RoundRecord& stats,
                                           std::shared_ptr<const std::vector<float>> model,
                                           const std::string& aggregation_state,
                                           std::shared_ptr<const std::vector<float>> average)>;

  struct Options {
    proto::ExperimentConfig config;   // FillDefaults + ValidateConfig already applied
    proto::ModelSpec spec;
    int64_t completed_rounds = 0;     // rounds already done (resume point)
    std::vector<float> weights;       // the global model after `completed_rounds`
    // Niceness of the worker thread that runs RoundDoneFn (evaluation). Evaluation overlaps the
    // next round's training; at 19 it takes the cores only when training leaves them idle (the
    // tail of a round, when the largest clients finish alone), so it never slows the round down,
    // and may lag several rounds behind while every core trains.
    int worker_nice = 19;
    // Rounds closed but not yet through RoundDoneFn (each holds its model) before the next round
    // waits to open; 0 = no bound. Without one, a worker that cannot keep up (a slow evaluation,
    // starved by clients on the same cores) holds a model per round it lags: 6.6 MB each on W,
    // 490 MiB server peak on a 50-round labels:2 run whose evaluation fell 33 rounds behind.
    int max_evaluation_backlog = 16;
    // Runs on Run()'s thread as each round closes, before the next round opens and before the
    // round's RoundDoneFn: for what must not lag behind the rounds (the checkpoint), with the
    // strategy's state after the round (Strategy::SaveState). Optional.
    RoundClosedFn on_round_closed;
  };

  // INVALID_ARGUMENT if the weights do not match the spec.
  static absl::StatusOr<std::unique_ptr<RoundScheduler>> Create(
      Options options, ClientRegistry* registry, std::unique_ptr<aggregation::Strategy> strategy,
      RoundDoneFn on_round_done, const Clock* clock);
  ~RoundScheduler();

  // Runs every remaining round; returns OK once the last round's RoundDoneFn has run.
  // DEADLINE_EXCEEDED when too few clients joined in time, UNAVAILABLE when a round missed its
  // quorum in every attempt, CANCELLED after Shutdown().
  absl::Status Run();
  // Makes Run() return soon and wakes every poller. Idempotent.
  void Shutdown();

  // Long poll for `client_id`: returns kTask (filling `grant`) as soon as the client is selected
  // in the open round and has not reported yet, kFinished once the run is over, kIdle at once
  // after Shutdown of an unfinished run (the device should come back to a restarted server), else
  // kIdle after `max_wait` or when `cancelled()` turns true (checked about once a second). On kFinished after
  // a completed run (not after Shutdown), `grant` holds the final model and the last round's task
  // with final_model set, for a client that asks for it.
  PollOutcome WaitForTask(const std::string& client_id, absl::Duration max_wait,
                          const std::function<bool()>& cancelled, TaskGrant* grant);
  // The non-blocking form of WaitForTask for the callback CheckIn (server/poll_hub.h): kTask or
  // kFinished, with `grant` filled exactly as WaitForTask fills it, when that is the answer now;
  // kIdle when the client would have to wait.
  PollOutcome TryTask(const std::string& client_id, TaskGrant* grant);
  // `fn` is called whenever TryTask's answer may have changed from kIdle for some client: an
  // attempt opened, the run finished, Shutdown. It runs on the thread that made the change,
  // without the scheduler's lock held, and must not block; it may call TryTask. Replaces the
  // previous listener; an empty `fn` removes it (returns once no call of the old one is running).
  void SetChangeListener(std::function<void()> fn);

  // Records that `client_id` declines the task of (round, attempt) for `reason` (a metric key the
  // caller validated): counted in RoundRecord.declined, and the round no longer waits for it nor
  // offers it the task again. Ignored (false) unless that attempt is open and the client is
  // selected in it and has neither reported nor declined yet.
  bool Decline(const std::string& client_id, int64_t round, int attempt, const std::string& reason);

  // Checks a report header before its payload is received: FAILED_PRECONDITION when no round is
  // open, for another round/attempt, against another model version, after the deadline, or when
  // the client already reported; PERMISSION_DENIED when the client was not selected.
  absl::Status CheckReport(const proto::ReportHeader& header) const;
  // True when `header` repeats the last update this scheduler accepted from its client: same
  // round, attempt, model version, samples, codec, size and SHA-256. A device whose upload was
  // accepted but whose answer was lost (a deadline that passed as the server replied, a dropped
  // connection) sends the same report again; it is told "accepted" (the update is not folded in
  // twice) instead of "already reported", so that it keeps its error-feedback residual in step
  // with what the server holds. Holds one entry per client that ever reported; lost on restart.
  bool IsRepeatOfAccepted(const proto::ReportHeader& header) const;
  // Counts one such repeat in the open round's RoundRecord.reports_repeated.
  void CountRepeatedReport();
  // Re-checks the header (the round may have closed meanwhile) and folds the dense delta into the
  // strategy. INVALID_ARGUMENT for a wrong size, non-finite values or zero samples, leaving the
  // round's aggregate unchanged. A refused update (INVALID_ARGUMENT) ends the client's part in the
  // attempt, as RefuseReport does: its client would only train the same task again (a diverged
  // model gives every honest client a NaN update), so it is not offered the task again and the
  // round does not wait for it.
  // The strategy's filters run here (aggregation/pipeline.h): with a norm bound, an update whose
  // L2 norm exceeds it is refused (INVALID_ARGUMENT, reason "update_norm") under on_violation
  // "reject", or scaled down to the bound and counted in RoundRecord.updates_clipped under "clip".
  absl::Status SubmitUpdate(const proto::ReportHeader& header, absl::Span<const float> delta);
  // Same for an encoded update under the round's uplink chain, decoded straight into the
  // strategy (no dense copy unless a filter or a buffering rule needs one: then one reused
  // O(model) scratch). INVALID_ARGUMENT for a malformed encoding or another chain.
  absl::Status SubmitEncodedUpdate(const proto::ReportHeader& header, absl::string_view encoded,
                                   const compression::ChainSpec& chain);
  // Records that a report which passed CheckReport was refused with `refusal` before it reached
  // SubmitUpdate (a malformed header or payload) and returns `refusal` unchanged. When `refusal`
  // is INVALID_ARGUMENT (the update itself is bad) and `header` is still for the open attempt,
  // the client is done for that attempt: counted in RoundRecord.clients_refused (and in
  // clients_failed), not offered the task again, not waited for, and a later report from it in
  // the attempt is FAILED_PRECONDITION. Any other refusal (RESOURCE_EXHAUSTED admission, DATA_LOSS
  // on a corrupted upload the client retries, FAILED_PRECONDITION for a closed round) leaves the
  // client free to report.
  absl::Status RefuseReport(const proto::ReportHeader& header, absl::Status refusal);
  // The uplink chain of the open round (canonical text; "dense" before the first round).
  std::string current_uplink() const;

  // Traffic accounting, attributed to `round`.
  void AddBytesDown(int64_t round, uint64_t bytes);
  void AddBytesUp(int64_t round, uint64_t bytes);
  // Counts a rejected request under `reason` (e.g. "invalid_argument"), reported with the round.
  void CountRejection(const std::string& reason);
  int64_t total_rejections() const;

  bool finished() const;
  int64_t current_model_version() const;

  // ---- Externally driven rounds: a regional aggregator (server/upstream_link.h) calls these
  // instead of Run(), from one thread.
  struct ExternalResult {
    std::vector<float> delta;  // the combined update (Strategy::CombinedUpdate), spec order
    uint64_t num_samples = 0;  // the total of the reporting devices' num_samples
    proto::RoundRecord stats;  // the regional round's figures
  };
  // One round on a task from upstream: publishes `model` as version task.model_version(), waits
  // until `close_by` for sampling.min_clients eligible devices, selects them as Run does (this
  // server's sampling, quorum and seed), hands them the task's round, attempt and TaskConfig
  // unchanged with `close_by` as their deadline, and folds their updates as Run does until all
  // selected reported or declined, or close_by (a round and attempt offered again, e.g. by an
  // upstream resumed from its checkpoint, goes to the devices as the next attempt: a device does
  // not train a (round, attempt) twice). Returns the combined update; the model stays
  // `model` (no server step). INVALID_ARGUMENT when the task's model is not this server's;
  // FAILED_PRECONDITION with reason "no_devices" (too few eligible devices by close_by),
  // "region_quorum" (fewer than the quorum reported) or the strategy's; UNIMPLEMENTED for a
  // strategy that does not only average; CANCELLED after Shutdown.
  absl::StatusOr<ExternalResult> RunExternalRound(const proto::Task& task,
                                                  absl::Span<const float> model,
                                                  absl::Time close_by);
  // Ends an externally driven run: every poll answers kFinished from now on. With `final_model`
  // (the model of `version`, the upstream's final one) it is published first, for devices that
  // ask for the final model.
  void FinishExternal(int64_t version, const std::vector<float>* final_model);

 private:
  RoundScheduler(Options options, ClientRegistry* registry,
                 std::unique_ptr<aggregation::Strategy> strategy, RoundDoneFn on_round_done,
                 const Clock* clock);
  absl::Status WaitForClients(int min_clients);
  // Opens attempt `attempt` of `round` for `selected` with the round's resolved settings.
  void OpenAttempt(int64_t round, int attempt, const std::vector<std::string>& selected,
                   int target, int num_eligible);
  // Opens attempt `attempt` of round context.round for `selected` with `task_config` (the state
  // both Run's OpenAttempt and RunExternalRound set).
  void OpenAttemptLocked(int attempt, const std::vector<std::string>& selected, int target,
                         const aggregation::RoundContext& context, absl::Time deadline,
                         proto::TaskConfig task_config) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status CheckReportLocked(const proto::ReportHeader& header) const
      ABSL_SHARED_LOCKS_REQUIRED(mu_);
  void PublishLocked(int64_t version) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // See RefuseReport.
  absl::Status RefuseLocked(const proto::ReportHeader& header, absl::Status refusal)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Checks the header, folds the update in with `accumulate` and marks the client reported.
  absl::Status SubmitLocked(const proto::ReportHeader& header,
                            const std::function<absl::Status()>& accumulate)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void WorkerLoop();
  // WaitForTask's readiness test and grant, shared with TryTask.
  bool TaskReadyLocked(const std::string& client_id) const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  PollOutcome GrantLocked(const std::string& client_id, TaskGrant* grant)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Buffered mode: the staleness of an update against the newest version, and its weight.
  double StalenessWeight(int64_t staleness) const;
  // Folds a dense update in, scaled by `scale` (1 = as is) through scratch_.
  absl::Status AccumulateScaled(absl::Span<const float> delta, uint64_t num_samples, double scale)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void NotifyChange();
  // Waits until the open attempt has what it needs (target_ reports, or every selected client
  // reported, declined or was refused), its deadline passes or Shutdown, then closes it (open_
  // false). False after Shutdown. Shared by Run and RunExternalRound.
  bool AwaitAttemptLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const Options options_;
  ClientRegistry* const registry_;
  const RoundDoneFn on_round_done_;
  const Clock* const clock_;
  const int64_t num_params_;

  mutable absl::Mutex mu_;
  std::unique_ptr<aggregation::Strategy> strategy_ ABSL_GUARDED_BY(mu_);
  int max_updates_ = 0;  // strategy_->max_updates_per_round(), 0 = no limit
  const std::vector<compression::TensorLayout> layout_;
  std::vector<float> global_ ABSL_GUARDED_BY(mu_);
  std::vector<float> reference_ ABSL_GUARDED_BY(mu_);  // R_v, see ModelSnapshot
  std::shared_ptr<const ModelSnapshot> snapshot_ ABSL_GUARDED_BY(mu_);
  bool open_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  bool shutdown_ ABSL_GUARDED_BY(mu_) = false;
  int64_t round_ ABSL_GUARDED_BY(mu_) = 0;
  int attempt_ ABSL_GUARDED_BY(mu_) = 0;
  int target_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Time deadline_ ABSL_GUARDED_BY(mu_);
  proto::Task task_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_set<std::string> selected_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_set<std::string> reported_ ABSL_GUARDED_BY(mu_);
  // Selected clients the open attempt no longer waits for nor offers its task to: those that
  // declined it (counted in RoundRecord.declined) and those in refused_.
  absl::flat_hash_set<std::string> declined_ ABSL_GUARDED_BY(mu_);
  // Selected clients whose update for the open attempt was refused (RefuseReport): done for the
  // attempt. Always also in declined_, which is what WaitForTask and the close condition read.
  absl::flat_hash_set<std::string> refused_ ABSL_GUARDED_BY(mu_);
  // Per client, the header fields of the last update it had accepted (IsRepeatOfAccepted).
  struct AcceptedReport {
    int64_t round = 0;
    int64_t attempt = 0;
    int64_t model_version = 0;
    uint64_t num_samples = 0;
    uint64_t total_bytes = 0;
    std::string codec;
    std::string sha256;
  };
  absl::flat_hash_map<std::string, AcceptedReport> accepted_ ABSL_GUARDED_BY(mu_);
  proto::RoundRecord stats_ ABSL_GUARDED_BY(mu_);  // of the open round
  int64_t total_rejections_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t reported_samples_ ABSL_GUARDED_BY(mu_) = 0;  // of the open round
  // aggregation.mode "buffered" (FedBuff): the model version each client was last handed, until
  // it reports against it; an update's staleness is snapshot_->version - that version.
  const bool buffered_;
  absl::flat_hash_map<std::string, int64_t> granted_ ABSL_GUARDED_BY(mu_);
  std::vector<float> scratch_ ABSL_GUARDED_BY(mu_);  // a stale update, decoded and scaled

  // Held while the change listener runs, so that removing it waits for a running call.
  absl::Mutex listener_mu_ ABSL_ACQUIRED_AFTER(mu_);
  std::function<void()> listener_ ABSL_GUARDED_BY(listener_mu_);

  // Worker queue (round done callbacks).
  absl::Mutex queue_mu_;
  struct ClosedRound {
    proto::RoundRecord stats;
    std::shared_ptr<const std::vector<float>> model;
    std::shared_ptr<const std::vector<float>> average;
  };
  std::deque<ClosedRound> queue_ ABSL_GUARDED_BY(queue_mu_);
  bool queue_closed_ ABSL_GUARDED_BY(queue_mu_) = false;
  bool queue_stopping_ ABSL_GUARDED_BY(queue_mu_) = false;  // Shutdown: stop waiting for room
  std::thread worker_;
};

// Serializes float32 weights little-endian (the wire and checkpoint layout).
std::string FloatsToBytes(absl::Span<const float> values);
// INVALID_ARGUMENT if bytes.size() is not a multiple of 4.
absl::StatusOr<std::vector<float>> BytesToFloats(std::string_view bytes);

}  // namespace edgefl::server

#endif  // EDGEFL_SERVER_ROUND_SCHEDULER_H_
