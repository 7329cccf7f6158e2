#include "server/round_scheduler.h"

#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "aggregation/sampling.h"
#include "server/config.h"
#include "common/log.h"
#include "common/model_layout.h"
#include "common/sha256.h"
#include "common/status_macros.h"
#include "common/status_reason.h"
#include "models/model_spec.h"
#include "server/request_validation.h"
#include "server/strategy_registry.h"

namespace edgefl::server {

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "the wire format is little-endian float32; add byte swapping for this target");

std::string FloatsToBytes(absl::Span<const float> values) {
  std::string out(values.size() * sizeof(float), '\0');
  std::memcpy(out.data(), values.data(), out.size());
  return out;
}

absl::StatusOr<std::vector<float>> BytesToFloats(std::string_view bytes) {
  if (bytes.size() % sizeof(float) != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("payload of ", bytes.size(), " bytes is not a whole number of float32"));
  }
  std::vector<float> out(bytes.size() / sizeof(float));
  std::memcpy(out.data(), bytes.data(), bytes.size());
  return out;
}

namespace {
uint64_t MixSeed(uint64_t seed, int64_t round, int64_t attempt) {
  uint64_t z = seed * 0x9e3779b97f4a7c15ULL + static_cast<uint64_t>(round) * 0xbf58476d1ce4e5b9ULL +
               static_cast<uint64_t>(attempt) * 0x94d049bb133111ebULL;
  z ^= z >> 31;
  return z;
}
}  // namespace

absl::StatusOr<std::unique_ptr<RoundScheduler>> RoundScheduler::Create(
    Options options, ClientRegistry* registry, std::unique_ptr<aggregation::Strategy> strategy,
    RoundDoneFn on_round_done, const Clock* clock) {
  const int64_t n = models::NumParameters(options.spec);
  if (static_cast<int64_t>(options.weights.size()) != n) {
    return absl::InvalidArgumentError(absl::StrCat("initial weights hold ", options.weights.size(),
                                                   " floats; model ", options.spec.model(),
                                                   " has ", n, " parameters"));
  }
  if (strategy == nullptr) return absl::InvalidArgumentError("no aggregation strategy");
  return std::unique_ptr<RoundScheduler>(new RoundScheduler(
      std::move(options), registry, std::move(strategy), std::move(on_round_done), clock));
}

RoundScheduler::RoundScheduler(Options options, ClientRegistry* registry,
                               std::unique_ptr<aggregation::Strategy> strategy,
                               RoundDoneFn on_round_done, const Clock* clock)
    : options_(std::move(options)),
      registry_(registry),
      on_round_done_(std::move(on_round_done)),
      clock_(clock),
      num_params_(models::NumParameters(options_.spec)),
      layout_(LayoutOf(options_.spec)),
      buffered_(options_.config.aggregation().mode() == "buffered") {
  absl::MutexLock lock(&mu_);
  max_updates_ = strategy->max_updates_per_round();
  strategy_ = std::move(strategy);
  global_ = options_.weights;
  reference_ = global_;
  round_ = options_.completed_rounds;
  PublishLocked(options_.completed_rounds);
  worker_ = std::thread([this] { WorkerLoop(); });
}

RoundScheduler::~RoundScheduler() {
  Shutdown();
  {
    absl::MutexLock lock(&queue_mu_);
    queue_closed_ = true;
  }
  if (worker_.joinable()) worker_.join();
}

void RoundScheduler::PublishLocked(int64_t version) {
  auto snap = std::make_shared<ModelSnapshot>();
  snap->version = version;
  // The codec of the round that will train on this version.
  const std::string downlink = ResolveDownlink(options_.config, version + 1);
  absl::StatusOr<compression::ChainSpec> chain = compression::ParseChain(downlink);
  const bool first = snapshot_ == nullptr;  // nothing to send a delta against
  if (first || !chain.ok() || *chain == compression::ChainSpec()) {
    reference_ = global_;
  } else {
    std::vector<float> diff(global_.size());
    for (size_t i = 0; i < diff.size(); ++i) diff[i] = global_[i] - reference_[i];
    absl::StatusOr<std::string> encoded = compression::EncodeUpdate(
        *chain, ViewsOf(layout_, diff), nullptr, MixSeed(options_.config.seed(), version, 0));
    absl::Status decoded =
        encoded.ok() ? compression::DecodeToDense(*encoded, layout_, &diff) : encoded.status();
    if (decoded.ok()) {
      // Exactly the arithmetic the client performs, so both hold the same R_v.
      for (size_t i = 0; i < diff.size(); ++i) reference_[i] = reference_[i] + diff[i];
      snap->downlink_codec = chain->ToString();
      snap->delta_base_version = snapshot_->version;
      snap->delta_payload = std::move(*encoded);
      snap->delta_sha256 = Sha256::Of(snap->delta_payload);
    } else {
      EDGEFL_LOG_WARN("downlink encoding of version ", version, " failed (", decoded.ToString(),
                      "); sending the full model");
      reference_ = global_;
    }
  }
  snap->payload = FloatsToBytes(reference_);
  snap->sha256 = Sha256::Of(snap->payload);
  snapshot_ = std::move(snap);
}

void RoundScheduler::Shutdown() {
  {
    absl::MutexLock lock(&mu_);
    shutdown_ = true;
  }
  {
    absl::MutexLock lock(&queue_mu_);
    queue_stopping_ = true;
  }
  NotifyChange();
}

bool RoundScheduler::finished() const {
  absl::MutexLock lock(&mu_);
  return finished_;
}

int64_t RoundScheduler::current_model_version() const {
  absl::MutexLock lock(&mu_);
  return snapshot_->version;
}

absl::Status RoundScheduler::WaitForClients(int min_clients) {
  const auto& sampling = options_.config.sampling();
  const absl::Time give_up = clock_->Now() + absl::Seconds(sampling.wait_for_clients_seconds());
  absl::Time next_log = clock_->Now();
  // Joins do not signal the scheduler, so poll the registry at a bounded rate.
  while (true) {
    const int have = static_cast<int>(registry_->Eligible().size());
    if (have >= min_clients) return absl::OkStatus();
    const absl::Time now = clock_->Now();
    if (now >= give_up) {
      return absl::DeadlineExceededError(
          absl::StrCat("only ", have, " of the ", min_clients, " clients needed joined within ",
                       sampling.wait_for_clients_seconds(), " s (sampling.min_clients)"));
    }
    if (now >= next_log) {
      EDGEFL_LOG_INFO("waiting for clients: ", have, " of ", min_clients, " joined");
      next_log = now + absl::Seconds(10);
    }
    absl::MutexLock lock(&mu_);
    auto stop = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return shutdown_; };
    if (clock_->AwaitWithDeadline(&mu_, absl::Condition(&stop),
                                  std::min(give_up, now + absl::Milliseconds(100)))) {
      return absl::CancelledError("server shutting down");
    }
  }
}

void RoundScheduler::OpenAttempt(int64_t round, int attempt,
                                 const std::vector<std::string>& selected, int target,
                                 int num_eligible) {
  const auto& config = options_.config;
  aggregation::RoundContext context(round);
  context.num_selected = static_cast<int>(selected.size());
  context.num_eligible = num_eligible;
  context.server_lr = ResolveServerLr(config, round);
  context.noise_multiplier = ResolveNoiseMultiplier(config, round);
  proto::TaskConfig task_config = ResolveTaskConfig(config, round);
  task_config.set_seed(MixSeed(config.seed(), round, attempt));
  absl::MutexLock lock(&mu_);
  OpenAttemptLocked(attempt, selected, target, context,
                    clock_->Now() + absl::Seconds(ResolveDeadlineSeconds(config, round)),
                    std::move(task_config));
}

void RoundScheduler::OpenAttemptLocked(int attempt, const std::vector<std::string>& selected,
                                       int target, const aggregation::RoundContext& context,
                                       absl::Time deadline, proto::TaskConfig task_config) {
  round_ = context.round;
  attempt_ = attempt;
  target_ = target;
  selected_ = absl::flat_hash_set<std::string>(selected.begin(), selected.end());
  reported_.clear();
  declined_.clear();
  reported_samples_ = 0;
  refused_.clear();
  strategy_->BeginRound(context);
  deadline_ = deadline;
  task_.Clear();
  task_.set_round(context.round);
  task_.set_attempt(attempt);
  task_.set_model_version(snapshot_->version);
  *task_.mutable_config() = std::move(task_config);
  *task_.mutable_spec() = options_.spec;
  task_.set_total_bytes(snapshot_->payload.size());
  task_.set_sha256(snapshot_->sha256);
  task_.set_deadline_unix_seconds(absl::ToDoubleSeconds(deadline_ - absl::UnixEpoch()));
  stats_.set_clients_selected(static_cast<int>(selected.size()));
  stats_.set_attempts(attempt);
  open_ = true;
}

absl::Status RoundScheduler::Run() {
  const auto& config = options_.config;
  const int64_t first = options_.completed_rounds + 1;
  for (int64_t round = first; round <= config.rounds(); ++round) {
    const absl::Time round_start = clock_->Now();
    {
      absl::MutexLock lock(&mu_);
      stats_.Clear();
      stats_.set_round(round);
    }
    bool closed_ok = false;
    for (int attempt = 1; attempt <= config.max_round_attempts() && !closed_ok; ++attempt) {
      RETURN_IF_ERROR(WaitForClients(config.sampling().min_clients()));
      std::vector<std::string> eligible = registry_->Eligible();
      const int num_eligible = static_cast<int>(eligible.size());
      int target = aggregation::TargetClients(num_eligible, config.sampling().fraction(),
                                              config.sampling().min_clients());
      if (max_updates_ > 0) target = std::min(target, max_updates_);
      double over_selection = config.sampling().over_selection();
      if (buffered_) {
        // FedBuff: offer the version to `concurrency` devices (all by default); it closes after
        // buffer_size updates, from them or from devices still training on older versions.
        const int concurrency = config.aggregation().buffered().concurrency();
        const int offered = concurrency > 0 ? std::min(concurrency, num_eligible) : num_eligible;
        target = config.aggregation().buffered().buffer_size();
        over_selection = std::max(0.0, static_cast<double>(offered) / target - 1);
      }
      std::vector<std::string> selected = aggregation::SelectClients(
          std::move(eligible), target, over_selection, config.seed(), round, attempt);
      // A buffering rule holds at most max_updates_: over-selection stays within it too.
      if (max_updates_ > 0 && static_cast<int>(selected.size()) > max_updates_) {
        selected.resize(max_updates_);
      }
      const int need =
          buffered_ ? 1 : std::max(1, static_cast<int>(std::ceil(config.quorum() * target - 1e-9)));
      OpenAttempt(round, attempt, selected, target, num_eligible);
      NotifyChange();
      EDGEFL_LOG_INFO("round ", round, "/", config.rounds(), " attempt ", attempt, ": selected ",
                      selected.size(), " clients (target ", target, ", quorum ", need, ")");

      absl::MutexLock lock(&mu_);
      if (!AwaitAttemptLocked()) return absl::CancelledError("server shutting down");
      const int reported = static_cast<int>(reported_.size());
      if (reported >= need) {
        stats_.set_clients_reported(reported);
        // Buffered: the offered devices that did not report this version are still training (their
        // updates arrive in a later version); only declines count as failures.
        stats_.set_clients_failed(buffered_ ? static_cast<int>(declined_.size())
                                            : static_cast<int>(selected_.size()) - reported);
        const absl::Time aggregate_start = clock_->Now();
        absl::Status s = strategy_->Aggregate(absl::MakeSpan(global_), stats_.clients_failed());
        stats_.set_aggregation_seconds(absl::ToDoubleSeconds(clock_->Now() - aggregate_start));
        if (std::optional<std::string> reason = ReasonOf(s); !s.ok() && reason.has_value()) {
          // The rule cannot combine what arrived (e.g. Krum with too few updates): the model is
          // unchanged and the round is retried, counted under the reason.
          ++(*stats_.mutable_rejected())[*reason];
          ++total_rejections_;
          EDGEFL_LOG_WARN("round ", round, " attempt ", attempt, ": ", s.message(), "; ",
                          attempt < config.max_round_attempts() ? "retrying" : "giving up");
          continue;
        }
        if (!s.ok()) return s;
        const aggregation::RoundReport report = strategy_->report();
        stats_.set_updates_clipped(report.updates_clipped);
        stats_.set_updates_dp_clipped(report.updates_dp_clipped);
        stats_.set_server_lr(report.server_lr);
        if (report.dp_epsilon.has_value()) stats_.set_dp_epsilon(*report.dp_epsilon);
        if (report.dp_clip_norm.has_value()) stats_.set_dp_clip_norm(*report.dp_clip_norm);
        closed_ok = true;
      } else {
        EDGEFL_LOG_WARN("round ", round, " attempt ", attempt, " missed its quorum: ", reported,
                        " of ", need, " needed reported by the deadline; ",
                        attempt < config.max_round_attempts() ? "retrying" : "giving up");
      }
    }
    if (!closed_ok) {
      return absl::UnavailableError(absl::StrCat("round ", round, " missed its quorum in ",
                                                 config.max_round_attempts(),
                                                 " attempts (max_round_attempts)"));
    }
    proto::RoundRecord stats;
    std::shared_ptr<const std::vector<float>> model;
    std::shared_ptr<const std::vector<float>> average;
    std::string aggregation_state;
    {
      absl::MutexLock lock(&mu_);
      aggregation_state = strategy_->SaveState();
      if (std::optional<std::vector<float>> a = strategy_->averaged_model()) {
        average = std::make_shared<const std::vector<float>>(std::move(*a));
      }
      PublishLocked(round);
      stats_.set_round_seconds(absl::ToDoubleSeconds(clock_->Now() - round_start));
      stats_.set_unix_time(absl::ToDoubleSeconds(clock_->Now() - absl::UnixEpoch()));
      stats_.set_rejected_total(total_rejections_);
      stats = stats_;
      model = std::make_shared<const std::vector<float>>(global_);
    }
    if (options_.on_round_closed) {
      options_.on_round_closed(stats, model, aggregation_state, average);
    }
    {
      absl::MutexLock lock(&queue_mu_);
      queue_.push_back({std::move(stats), std::move(model), std::move(average)});
      // Back-pressure: the next round opens once the worker is under its backlog bound.
      const int bound = options_.max_evaluation_backlog;
      auto room = [this, bound]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(queue_mu_) {
        return queue_stopping_ || static_cast<int>(queue_.size()) < bound;
      };
      if (bound > 0 && round < config.rounds() && !room()) {
        // The front is the round under evaluation; the rest have not started.
        EDGEFL_LOG_WARN("round ", round + 1, " waits: ", queue_.size(),
                        " closed rounds await evaluation (1 in progress, max_evaluation_backlog ",
                        bound, ")");
        queue_mu_.Await(absl::Condition(&room));
        if (queue_stopping_) return absl::CancelledError("server shutting down");
      }
    }
  }
  // Drain the worker so that the last round's evaluation and checkpoint are written.
  {
    absl::MutexLock lock(&queue_mu_);
    queue_closed_ = true;
    auto empty = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(queue_mu_) { return queue_.empty(); };
    queue_mu_.Await(absl::Condition(&empty));
  }
  if (worker_.joinable()) worker_.join();
  {
    absl::MutexLock lock(&mu_);
    finished_ = true;
  }
  NotifyChange();
  return absl::OkStatus();
}

absl::StatusOr<RoundScheduler::ExternalResult> RoundScheduler::RunExternalRound(
    const proto::Task& upstream, absl::Span<const float> model, absl::Time close_by) {
  const auto& config = options_.config;
  if (static_cast<int64_t>(model.size()) != num_params_ ||
      (upstream.has_spec() && !models::CheckSpecMatches(options_.spec, upstream.spec()).ok())) {
    return absl::InvalidArgumentError(
        absl::StrCat("the upstream task's model (", upstream.spec().model(), ", ", model.size(),
                     " values) is not this server's ", options_.spec.model(), " (", num_params_,
                     " parameters): give the aggregator the root's model"));
  }
  const int64_t round = upstream.round();
  int attempt = static_cast<int>(upstream.attempt());
  const absl::Time start = clock_->Now();
  {
    absl::MutexLock lock(&mu_);
    if (shutdown_) return absl::CancelledError("server shutting down");
    // The same round and attempt again (an upstream resumed from its checkpoint re-runs the round
    // it died in): devices would take it for a task they already trained, so it gets the next
    // attempt number here. Their training does not depend on it (the task's seed does).
    if (round == round_ && attempt <= attempt_) {
      EDGEFL_LOG_WARN("regional round ", round, ": the upstream offers attempt ", attempt,
                      " again; the devices get it as attempt ", attempt_ + 1);
      attempt = attempt_ + 1;
    }
    global_.assign(model.begin(), model.end());
    PublishLocked(upstream.model_version());
    stats_.Clear();
    stats_.set_round(round);
  }
  // The region's devices, bounded by close_by (Joins do not signal the scheduler: poll).
  const int min_clients = config.sampling().min_clients();
  std::vector<std::string> eligible;
  while (true) {
    eligible = registry_->Eligible();
    if (static_cast<int>(eligible.size()) >= min_clients) break;
    const absl::Time now = clock_->Now();
    if (now >= close_by) {
      return WithReason(absl::FailedPreconditionError(absl::StrCat(
                            "round ", round, ": only ", eligible.size(), " of the ", min_clients,
                            " devices needed (sampling.min_clients) are registered")),
                        "no_devices");
    }
    absl::MutexLock lock(&mu_);
    auto stop = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return shutdown_; };
    if (clock_->AwaitWithDeadline(&mu_, absl::Condition(&stop),
                                  std::min(close_by, now + absl::Milliseconds(100)))) {
      return absl::CancelledError("server shutting down");
    }
  }
  const int num_eligible = static_cast<int>(eligible.size());
  int target = aggregation::TargetClients(num_eligible, config.sampling().fraction(), min_clients);
  if (max_updates_ > 0) target = std::min(target, max_updates_);
  std::vector<std::string> selected =
      aggregation::SelectClients(std::move(eligible), target, config.sampling().over_selection(),
                                 config.seed(), round, attempt);
  if (max_updates_ > 0 && static_cast<int>(selected.size()) > max_updates_) {
    selected.resize(max_updates_);
  }
  const int need = std::max(1, static_cast<int>(std::ceil(config.quorum() * target - 1e-9)));
  EDGEFL_LOG_INFO("regional round ", round, " attempt ", attempt, " (upstream model version ",
                  upstream.model_version(), "): selected ", selected.size(), " devices (target ",
                  target, ", quorum ", need, "), closing in ",
                  absl::FormatDuration(absl::Trunc(close_by - start, absl::Milliseconds(100))));
  {
    aggregation::RoundContext context(round);
    context.num_selected = static_cast<int>(selected.size());
    context.num_eligible = num_eligible;
    absl::MutexLock lock(&mu_);
    OpenAttemptLocked(attempt, selected, target, context, close_by, upstream.config());
  }
  NotifyChange();  // pollers (TryTask) may now get the task
  absl::MutexLock lock(&mu_);
  if (!AwaitAttemptLocked()) return absl::CancelledError("server shutting down");
  const int reported = static_cast<int>(reported_.size());
  stats_.set_clients_reported(reported);
  stats_.set_clients_failed(static_cast<int>(selected_.size()) - reported);
  stats_.set_round_seconds(absl::ToDoubleSeconds(clock_->Now() - start));
  stats_.set_unix_time(absl::ToDoubleSeconds(clock_->Now() - absl::UnixEpoch()));
  stats_.set_rejected_total(total_rejections_);
  if (reported < need) {
    return WithReason(absl::FailedPreconditionError(
                          absl::StrCat("regional round ", round, " missed its quorum: ", reported,
                                       " of ", need, " needed reported by its close")),
                      "region_quorum");
  }
  ExternalResult result;
  result.delta.resize(num_params_);
  RETURN_IF_ERROR(strategy_->CombinedUpdate(absl::MakeSpan(result.delta)));
  stats_.set_updates_clipped(strategy_->report().updates_clipped);
  result.num_samples = reported_samples_;
  result.stats = stats_;
  return result;
}

void RoundScheduler::FinishExternal(int64_t version, const std::vector<float>* final_model) {
  {
    absl::MutexLock lock(&mu_);
    open_ = false;
    if (final_model != nullptr && static_cast<int64_t>(final_model->size()) == num_params_) {
      global_ = *final_model;
      PublishLocked(version);
    }
    finished_ = true;
  }
  NotifyChange();
}

bool RoundScheduler::AwaitAttemptLocked() {
  auto done = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return shutdown_ || static_cast<int>(reported_.size()) >= target_ ||
           reported_.size() + declined_.size() >= selected_.size();
  };
  clock_->AwaitWithDeadline(&mu_, absl::Condition(&done), deadline_);
  open_ = false;
  return !shutdown_;
}

void RoundScheduler::WorkerLoop() {
  // Linux applies a nice value to the calling thread alone.
  if (options_.worker_nice != 0 &&
      setpriority(PRIO_PROCESS, static_cast<id_t>(syscall(SYS_gettid)), options_.worker_nice) != 0) {
    EDGEFL_LOG_WARN("could not lower the evaluation thread's priority");
  }
  while (true) {
    ClosedRound item;
    {
      absl::MutexLock lock(&queue_mu_);
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(queue_mu_) {
        return !queue_.empty() || queue_closed_;
      };
      queue_mu_.Await(absl::Condition(&ready));
      if (queue_.empty()) return;  // closed and drained
      item = queue_.front();
    }
    if (on_round_done_) on_round_done_(item.stats, item.model, item.average);
    absl::MutexLock lock(&queue_mu_);
    queue_.pop_front();  // popped after the callback so that Run's drain waits for it
  }
}

bool RoundScheduler::TaskReadyLocked(const std::string& client_id) const {
  return finished_ || shutdown_ ||
         (open_ && selected_.contains(client_id) && !reported_.contains(client_id) &&
          !declined_.contains(client_id));
}

PollOutcome RoundScheduler::GrantLocked(const std::string& client_id, TaskGrant* grant) {
  // Shut down before the run finished (SIGTERM, a pod being replaced, a failed checkpoint): the
  // device is told nothing final; its next CheckIn finds the server gone and it retries until a
  // restarted server resumes the run.
  if (shutdown_ && !finished_) return PollOutcome::kIdle;
  if (finished_ || shutdown_) {
    if (finished_ && snapshot_ != nullptr) {
      grant->task = task_;  // the last round's config (empty after a resume with nothing to do)
      grant->task.set_final_model(true);
      grant->task.set_round(snapshot_->version);
      grant->task.set_model_version(snapshot_->version);
      *grant->task.mutable_spec() = options_.spec;
      grant->task.set_deadline_unix_seconds(0);
      grant->model = snapshot_;
    }
    return PollOutcome::kFinished;
  }
  grant->task = task_;
  grant->model = snapshot_;
  if (buffered_) granted_[client_id] = snapshot_->version;
  return PollOutcome::kTask;
}

PollOutcome RoundScheduler::WaitForTask(const std::string& client_id, absl::Duration max_wait,
                                        const std::function<bool()>& cancelled, TaskGrant* grant) {
  const absl::Time until = clock_->Now() + max_wait;
  absl::MutexLock lock(&mu_);
  auto ready = [this, &client_id]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return TaskReadyLocked(client_id);
  };
  while (true) {
    const absl::Time now = clock_->Now();
    if (clock_->AwaitWithDeadline(&mu_, absl::Condition(&ready),
                                  std::min(until, now + absl::Seconds(1)))) {
      break;
    }
    if (clock_->Now() >= until || (cancelled && cancelled())) return PollOutcome::kIdle;
  }
  return GrantLocked(client_id, grant);
}

PollOutcome RoundScheduler::TryTask(const std::string& client_id, TaskGrant* grant) {
  absl::MutexLock lock(&mu_);
  if (!TaskReadyLocked(client_id)) return PollOutcome::kIdle;
  return GrantLocked(client_id, grant);
}

void RoundScheduler::SetChangeListener(std::function<void()> fn) {
  absl::MutexLock lock(&listener_mu_);
  listener_ = std::move(fn);
}

void RoundScheduler::NotifyChange() {
  absl::MutexLock lock(&listener_mu_);
  if (listener_) listener_();
}

bool RoundScheduler::Decline(const std::string& client_id, int64_t round, int attempt,
                             const std::string& reason) {
  absl::MutexLock lock(&mu_);
  if (!open_ || round != round_ || attempt != attempt_ || !selected_.contains(client_id) ||
      reported_.contains(client_id) || !declined_.insert(client_id).second) {
    return false;
  }
  (*stats_.mutable_declined())[reason] += 1;
  stats_.set_clients_declined(stats_.clients_declined() + 1);
  EDGEFL_LOG_INFO("round ", round, " attempt ", attempt, ": client ", client_id,
                  " declined its task (", reason, ")");
  return true;
}

absl::Status RoundScheduler::CheckReport(const proto::ReportHeader& header) const {
  absl::MutexLock lock(&mu_);
  return CheckReportLocked(header);
}

absl::Status RoundScheduler::CheckReportLocked(const proto::ReportHeader& header) const {
  if (!open_ && buffered_ && !finished_ && !shutdown_ && round_ < options_.config.rounds()) {
    // Between two versions (the aggregation step): the update is still good a moment later.
    return WithReason(
        absl::UnavailableError("between two model versions; retry in a moment"),
        "between_versions");
  }
  if (!open_) {
    return absl::FailedPreconditionError(
        absl::StrCat("no round is open (last round ", round_, "); the update came too late"));
  }
  if (buffered_) {
    if (static_cast<int>(reported_.size()) >= target_) {
      // The version is full and about to be made: the update goes into the next one.
      return WithReason(absl::UnavailableError("the version's buffer is full; retry in a moment"),
                        "between_versions");
    }
    // Any version the device was handed, within max_staleness of the newest.
    auto granted = granted_.find(header.client_id());
    if (granted == granted_.end()) {
      return absl::PermissionDeniedError(absl::StrCat(
          "client ", header.client_id(), " holds no task (it was not offered a version or already "
          "reported against it)"));
    }
    if (header.model_version() != granted->second) {
      return absl::FailedPreconditionError(absl::StrCat(
          "update computed against model version ", header.model_version(), "; client ",
          header.client_id(), " was handed version ", granted->second));
    }
    const int64_t staleness = snapshot_->version - header.model_version();
    const int max_staleness = options_.config.aggregation().buffered().max_staleness();
    if (staleness > max_staleness) {
      return WithReason(absl::FailedPreconditionError(absl::StrCat(
                            "update is ", staleness, " versions stale (against version ",
                            header.model_version(), ", newest ", snapshot_->version,
                            "); buffered.max_staleness is ", max_staleness)),
                        "too_stale");
    }
    if (reported_.contains(header.client_id())) {
      return absl::FailedPreconditionError(absl::StrCat(
          "client ", header.client_id(), " already reported for version ", snapshot_->version));
    }
    if (refused_.contains(header.client_id())) {
      return absl::FailedPreconditionError(absl::StrCat(
          "client ", header.client_id(), "'s update for version ", snapshot_->version,
          " was refused; it takes no further update for this version"));
    }
    return absl::OkStatus();
  }
  if (header.round() != round_ || header.attempt() != attempt_) {
    return absl::FailedPreconditionError(absl::StrCat("update for round ", header.round(),
                                                      " attempt ", header.attempt(),
                                                      "; the open round is ", round_, " attempt ",
                                                      attempt_));
  }
  if (!selected_.contains(header.client_id())) {
    return absl::PermissionDeniedError(
        absl::StrCat("client ", header.client_id(), " was not selected for round ", round_));
  }
  if (header.model_version() != snapshot_->version) {
    return absl::FailedPreconditionError(
        absl::StrCat("update computed against model version ", header.model_version(),
                     "; the current version is ", snapshot_->version));
  }
  if (reported_.contains(header.client_id())) {
    return absl::FailedPreconditionError(
        absl::StrCat("client ", header.client_id(), " already reported for round ", round_));
  }
  if (refused_.contains(header.client_id())) {
    return absl::FailedPreconditionError(
        absl::StrCat("client ", header.client_id(), "'s update for round ", round_, " attempt ",
                     attempt_, " was refused; it takes no further update in this attempt"));
  }
  if (clock_->Now() > deadline_) {
    return absl::FailedPreconditionError(absl::StrCat("round ", round_, " deadline has passed"));
  }
  return absl::OkStatus();
}

bool RoundScheduler::IsRepeatOfAccepted(const proto::ReportHeader& header) const {
  absl::MutexLock lock(&mu_);
  auto it = accepted_.find(header.client_id());
  if (it == accepted_.end()) return false;
  const AcceptedReport& a = it->second;
  return !header.sha256().empty() && a.round == header.round() && a.attempt == header.attempt() &&
         a.model_version == header.model_version() && a.num_samples == header.num_samples() &&
         a.total_bytes == header.total_bytes() && a.codec == header.codec() &&
         a.sha256 == header.sha256();
}

void RoundScheduler::CountRepeatedReport() {
  absl::MutexLock lock(&mu_);
  stats_.set_reports_repeated(stats_.reports_repeated() + 1);
}

double RoundScheduler::StalenessWeight(int64_t staleness) const {
  if (staleness <= 0) return 1;
  return std::pow(1.0 + static_cast<double>(staleness),
                  -options_.config.aggregation().buffered().staleness_exponent());
}

absl::Status RoundScheduler::AccumulateScaled(absl::Span<const float> delta, uint64_t num_samples,
                                              double scale) {
  if (scale == 1) return strategy_->Accumulate(delta, num_samples);
  scratch_.resize(delta.size());
  for (size_t i = 0; i < delta.size(); ++i) {
    scratch_[i] = static_cast<float>(static_cast<double>(delta[i]) * scale);
  }
  return strategy_->Accumulate(scratch_, num_samples);
}

absl::Status RoundScheduler::RefuseReport(const proto::ReportHeader& header,
                                          absl::Status refusal) {
  absl::MutexLock lock(&mu_);
  return RefuseLocked(header, std::move(refusal));
}

absl::Status RoundScheduler::RefuseLocked(const proto::ReportHeader& header,
                                          absl::Status refusal) {
  // Only a bad update ends the client's attempt; a refusal about the round (closed, another
  // attempt, already reported) or a transient one leaves it as it was.
  if (!absl::IsInvalidArgument(refusal) || !CheckReportLocked(header).ok()) return refusal;
  refused_.insert(header.client_id());
  declined_.insert(header.client_id());
  stats_.set_clients_refused(stats_.clients_refused() + 1);
  EDGEFL_LOG_WARN("round ", round_, " attempt ", attempt_, ": the update of client ",
                  header.client_id(), " was refused (", refusal.message(),
                  "); it is done for this attempt");
  return refusal;
}

absl::Status RoundScheduler::SubmitLocked(const proto::ReportHeader& header,
                                          const std::function<absl::Status()>& accumulate) {
  if (header.num_samples() == 0) {
    return RefuseLocked(header, absl::InvalidArgumentError("num_samples must be > 0"));
  }
  RETURN_IF_ERROR(CheckReportLocked(header));
  if (absl::Status s = accumulate(); !s.ok()) return RefuseLocked(header, std::move(s));
  reported_.insert(header.client_id());
  reported_samples_ += header.num_samples();
  accepted_[header.client_id()] = AcceptedReport{
      header.round(),       header.attempt(),      header.model_version(), header.num_samples(),
      header.total_bytes(), std::string(header.codec()), std::string(header.sha256())};
  if (buffered_) {
    granted_.erase(header.client_id());
    const int64_t staleness = snapshot_->version - header.model_version();
    if (staleness > 0) {
      stats_.set_updates_stale(stats_.updates_stale() + 1);
      stats_.set_staleness_max(std::max<int32_t>(stats_.staleness_max(), staleness));
    }
  }
  const double student = header.metrics().student_local_accuracy();
  if (std::isfinite(student) && student > 0 && student <= 1) {
    stats_.set_student_accuracy_sum(stats_.student_accuracy_sum() + student);
    stats_.set_student_reports(stats_.student_reports() + 1);
  }
  return absl::OkStatus();
}

absl::Status RoundScheduler::SubmitUpdate(const proto::ReportHeader& header,
                                          absl::Span<const float> delta) {
  absl::MutexLock lock(&mu_);
  return SubmitLocked(header, [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (static_cast<int64_t>(delta.size()) != num_params_) {
      return absl::InvalidArgumentError(absl::StrCat("update holds ", delta.size(),
                                                     " values; the model has ", num_params_));
    }
    if (task_.config().uplink() != "dense") {
      return absl::InvalidArgumentError(absl::StrCat("a dense update, but round ", round_,
                                                     " takes updates encoded as ",
                                                     task_.config().uplink()));
    }
    return AccumulateScaled(delta, header.num_samples(),
                            buffered_ ? StalenessWeight(snapshot_->version - header.model_version())
                                      : 1.0);
  });
}

absl::Status RoundScheduler::SubmitEncodedUpdate(const proto::ReportHeader& header,
                                                 absl::string_view encoded,
                                                 const compression::ChainSpec& chain) {
  absl::MutexLock lock(&mu_);
  return SubmitLocked(header, [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (chain.ToString() != task_.config().uplink()) {
      return absl::InvalidArgumentError(absl::StrCat("update encoded as ", chain.ToString(),
                                                     ", but round ", round_, " takes ",
                                                     task_.config().uplink()));
    }
    const double weight =
        buffered_ ? StalenessWeight(snapshot_->version - header.model_version()) : 1.0;
    if (weight == 1) {
      return strategy_->AccumulateEncoded(encoded, layout_, chain, header.num_samples());
    }
    // A stale update: decoded densely so that it can be scaled (one reused O(model) scratch).
    RETURN_IF_ERROR(compression::DecodeToDense(encoded, layout_, &scratch_));
    for (float& v : scratch_) v = static_cast<float>(static_cast<double>(v) * weight);
    return strategy_->Accumulate(scratch_, header.num_samples());
  });
}

std::string RoundScheduler::current_uplink() const {
  absl::MutexLock lock(&mu_);
  return task_.has_config() ? task_.config().uplink() : "dense";
}

void RoundScheduler::AddBytesDown(int64_t round, uint64_t bytes) {
  absl::MutexLock lock(&mu_);
  // Buffered: traffic of older versions' tasks lands in the version being built.
  if (round == stats_.round() || buffered_) stats_.set_bytes_down(stats_.bytes_down() + bytes);
}

void RoundScheduler::AddBytesUp(int64_t round, uint64_t bytes) {
  absl::MutexLock lock(&mu_);
  if (round == stats_.round() || buffered_) stats_.set_bytes_up(stats_.bytes_up() + bytes);
}

void RoundScheduler::CountRejection(const std::string& reason) {
  absl::MutexLock lock(&mu_);
  ++(*stats_.mutable_rejected())[reason];
  ++total_rejections_;
}

int64_t RoundScheduler::total_rejections() const {
  absl::MutexLock lock(&mu_);
  return total_rejections_;
}

}  // namespace edgefl::server
