#include "server/upstream_link.h"

#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <thread>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/strip.h"
#include "common/file_util.h"
#include "common/log.h"
#include "common/pem.h"
#include "common/status_reason.h"

namespace edgefl::server {
namespace {

constexpr char kUpstreamTokenEnv[] = "EDGEFL_UPSTREAM_TOKEN";

absl::Status Usage(absl::string_view flag, const absl::Status& s) {
  return absl::InvalidArgumentError(absl::StrCat(flag, ": ", s.message()));
}

std::string Round(absl::Duration d) {
  return absl::FormatDuration(absl::Trunc(d, absl::Milliseconds(100)));
}

// The profile of the machine the aggregator runs on (its samples are its region's).
proto::DeviceProfile ThisHost() {
  proto::DeviceProfile p;
  struct utsname u;
  if (uname(&u) == 0) p.set_arch(u.machine);
  p.set_cores(static_cast<int>(std::thread::hardware_concurrency()));
  p.set_ram_bytes(static_cast<uint64_t>(sysconf(_SC_PHYS_PAGES)) *
                  static_cast<uint64_t>(sysconf(_SC_PAGESIZE)));
  char host[256] = {0};
  if (gethostname(host, sizeof(host) - 1) == 0) p.set_hostname(host);
  return p;
}

class SchedulerRegion : public Region {
 public:
  SchedulerRegion(RoundScheduler* scheduler, ClientRegistry* registry, RegionalRoundFn on_round)
      : scheduler_(scheduler), registry_(registry), on_round_(std::move(on_round)) {}
  uint64_t RegisteredSamples() const override { return registry_->EligibleSamples(); }
  absl::StatusOr<RoundScheduler::ExternalResult> RunRound(const proto::Task& task,
                                                          absl::Span<const float> model,
                                                          absl::Time close_by) override {
    absl::StatusOr<RoundScheduler::ExternalResult> r =
        scheduler_->RunExternalRound(task, model, close_by);
    if (r.ok() && on_round_) on_round_(r->stats, std::vector<float>(model.begin(), model.end()));
    return r;
  }
  void Finish(int64_t version, const std::vector<float>* final_model) override {
    scheduler_->FinishExternal(version, final_model);
  }

 private:
  RoundScheduler* const scheduler_;
  ClientRegistry* const registry_;
  const RegionalRoundFn on_round_;
};

}  // namespace

std::unique_ptr<Region> NewSchedulerRegion(RoundScheduler* scheduler, ClientRegistry* registry,
                                           RegionalRoundFn on_round) {
  return std::make_unique<SchedulerRegion>(scheduler, registry, std::move(on_round));
}

absl::StatusOr<UpstreamClientConfig> LoadUpstreamClientConfig(const UpstreamOptions& o) {
  UpstreamClientConfig out;
  client::CoordinatorClient::Options& rpc = out.rpc;
  rpc.target = o.address;
  if (o.address.empty() || o.address.find(':') == std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("--upstream: expected host:port, got '", o.address, "'"));
  }
  if (!(o.margin_seconds > 0)) {
    return absl::InvalidArgumentError("--upstream_margin_seconds must be > 0");
  }
  if (!(o.retry_max_seconds >= 1)) {
    return absl::InvalidArgumentError("--upstream_retry_max_seconds must be >= 1");
  }
  if (!client::IsValidMinDownloadRate(o.min_download_kib_per_second)) {
    return absl::InvalidArgumentError("--upstream_min_download_kib_per_second must be >= 1");
  }
  const bool any_tls =
      !o.ca_cert.empty() || !o.tls_cert.empty() || !o.tls_key.empty() || !o.tls_server_name.empty();
  if (o.insecure) {
    if (any_tls) {
      return absl::InvalidArgumentError(
          "--upstream_insecure cannot be combined with --upstream_ca, --upstream_tls_cert, "
          "--upstream_tls_key or --upstream_server_name");
    }
    rpc.insecure = true;
  } else {
    if (o.ca_cert.empty()) {
      return absl::InvalidArgumentError(
          "--upstream needs --upstream_ca (the CA that signed the upstream's certificate; "
          "'system' for the system roots), or --upstream_insecure for plaintext on a trusted "
          "network");
    }
    if (o.ca_cert != "system") {
      absl::StatusOr<std::string> ca = ReadPemCertificates(o.ca_cert, "--upstream_ca");
      if (!ca.ok()) return absl::InvalidArgumentError(ca.status().message());
      rpc.ca_cert_pem = std::move(*ca);
    }
    if (o.tls_cert.empty() != o.tls_key.empty()) {
      return absl::InvalidArgumentError(
          "--upstream_tls_cert and --upstream_tls_key go together (the aggregator's certificate "
          "for mutual TLS with the upstream and its private key)");
    }
    if (!o.tls_cert.empty()) {
      absl::StatusOr<std::string> cert = ReadPemCertificates(o.tls_cert, "--upstream_tls_cert");
      if (!cert.ok()) return absl::InvalidArgumentError(cert.status().message());
      absl::StatusOr<std::string> key = ReadPemPrivateKey(o.tls_key, "--upstream_tls_key");
      if (!key.ok()) return absl::InvalidArgumentError(key.status().message());
      rpc.client_cert_pem = std::move(*cert);
      rpc.client_key_pem = std::move(*key);
    }
    rpc.tls_server_name = o.tls_server_name;
  }
  std::string token;
  if (!o.token_file.empty()) {
    absl::StatusOr<std::string> text = ReadPrivateFile(o.token_file, "upstream token file");
    if (!text.ok()) return Usage("--upstream_token_file", text.status());
    token = std::move(*text);
  } else if (const char* env = std::getenv(kUpstreamTokenEnv); env != nullptr) {
    token = env;
  }
  token = std::string(absl::StripAsciiWhitespace(token));
  if (token.find_first_of(" \t\r\n") != std::string::npos) {
    return absl::InvalidArgumentError("the upstream enrollment token must be a single token");
  }
  out.enrollment_token = std::move(token);
  return out;
}

absl::Status CheckAggregatorConfig(const proto::ExperimentConfig& config) {
  const proto::Aggregation& a = config.aggregation();
  const std::string where =
      "; a regional aggregator (--upstream) only averages its devices' updates, the root does "
      "the rest";
  if (a.has_mode() && a.mode() != "sync") {
    return absl::InvalidArgumentError(absl::StrCat(
        "aggregation.mode=", a.mode(),
        ": a regional aggregator's rounds are the upstream's tasks (leave the mode at sync)",
        where));
  }
  if (a.combiner().rule() != "weighted_mean") {
    return absl::InvalidArgumentError(absl::StrCat(
        "aggregation.combiner.rule=", a.combiner().rule(),
        " belongs at the root (robust rules there see one mean per region); use weighted_mean",
        where));
  }
  if (a.dp().enabled()) {
    return absl::InvalidArgumentError(
        absl::StrCat("aggregation.dp belongs at the root (each region is one participant)", where));
  }
  if (a.averaging().from_round() != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "aggregation.averaging belongs at the root (a region's result is its round's mean)", where));
  }
  const proto::ServerOptimizer& o = a.server_optimizer();
  if (o.name() != "sgd" || o.lr() != 1.0 || o.momentum() != 0.0) {
    return absl::InvalidArgumentError(
        absl::StrCat("aggregation.server_optimizer (", o.name(), ", lr ", o.lr(),
                     o.name() == "sgd" ? absl::StrCat(", momentum ", o.momentum()) : std::string(),
                     ") belongs at the root; leave it at sgd, lr 1, momentum 0 here", where));
  }
  for (const proto::ScheduleEntry& e : config.schedule()) {
    if (e.has_server_lr() || e.has_dp_noise_multiplier()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "schedule entry from round ", e.from_round(),
          " changes server_lr or dp_noise_multiplier: those belong at the root", where));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<UpstreamLink>> UpstreamLink::Create(
    Options options, std::unique_ptr<client::Coordinator> coordinator, Region* region,
    const Clock* clock) {
  if (coordinator == nullptr || region == nullptr || clock == nullptr) {
    return absl::InvalidArgumentError("UpstreamLink needs a coordinator, a region and a clock");
  }
  if (options.margin <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("UpstreamLink: margin must be > 0");
  }
  if (!client::IsValidMinDownloadRate(options.min_download_bytes_per_second)) {
    return absl::InvalidArgumentError("UpstreamLink: min_download_bytes_per_second must be >= 1");
  }
  if (options.profile.arch().empty()) options.profile = ThisHost();
  return std::unique_ptr<UpstreamLink>(
      new UpstreamLink(std::move(options), std::move(coordinator), region, clock));
}

UpstreamLink::UpstreamLink(Options options, std::unique_ptr<client::Coordinator> coordinator,
                           Region* region, const Clock* clock)
    : options_(std::move(options)),
      rpc_(std::move(coordinator)),
      region_(region),
      clock_(clock),
      backoff_(options_.backoff, options_.seed * 7919 + 17),
      uplink_(options_.ef_state_file) {}

void UpstreamLink::Shutdown() {
  {
    absl::MutexLock lock(&mu_);
    shutdown_ = true;
  }
  // The root holds a CheckIn for its whole --poll_seconds when it has no task: end it now.
  rpc_->CancelCheckIns();
}

bool UpstreamLink::stopping() const {
  absl::MutexLock lock(&mu_);
  return shutdown_;
}

bool UpstreamLink::Pause(absl::Duration d) {
  // In slices, so that Shutdown is noticed within one; a simulated clock moves on at each.
  const absl::Time until = clock_->Now() + d;
  for (absl::Time now = clock_->Now(); now < until; now = clock_->Now()) {
    if (stopping()) return false;
    clock_->SleepFor(std::min(until - now, absl::Milliseconds(200)));
  }
  return !stopping();
}

int UpstreamLink::joins_refused() const {
  absl::MutexLock lock(&mu_);
  return joins_refused_;
}
int UpstreamLink::rounds_reported() const {
  absl::MutexLock lock(&mu_);
  return rounds_reported_;
}
int UpstreamLink::rounds_declined() const {
  absl::MutexLock lock(&mu_);
  return rounds_declined_;
}

proto::DeviceProfile UpstreamLink::CurrentProfile() const {
  proto::DeviceProfile p = options_.profile;
  p.set_num_samples(region_->RegisteredSamples());
  return p;
}

absl::Status UpstreamLink::JoinWithRetry() {
  while (!stopping()) {
    proto::JoinRequest req;
    *req.mutable_profile() = CurrentProfile();
    absl::StatusOr<proto::JoinResponse> r = rpc_->Join(req);
    if (r.ok()) {
      client_id_ = r->client_id();
      checkin_timeout_ = client::CheckInTimeout(*r, options_.min_download_bytes_per_second);
      // A new session: a root resumed from an earlier checkpoint may offer a round again.
      last_task_.reset();
      const absl::Time now = clock_->Now();
      const absl::Time expires = rpc_->session_expires();
      renew_at_ = expires > now ? now + (expires - now) / 2 : absl::InfiniteFuture();
      backoff_.Reset();
      EDGEFL_LOG_INFO("joined upstream ", options_.upstream, " as ", client_id_, " (region weight ",
                      req.profile().num_samples(), " samples)");
      return absl::OkStatus();
    }
    {
      absl::MutexLock lock(&mu_);
      ++joins_refused_;
    }
    const absl::Duration wait = backoff_.Next();
    // The transport's messages name fl-client's flags; here they are the --upstream_* ones.
    const std::string why = absl::StrReplaceAll(
        r.status().message(),
        {{"--ca_cert", "--upstream_ca"}, {"--tls_server_name", "--upstream_server_name"}});
    EDGEFL_LOG_WARN("upstream ", options_.upstream, " refused the aggregator's Join (",
                    absl::StatusCodeToString(r.status().code()), "): ", why, "; retrying in ",
                    Round(wait));
    if (!Pause(wait)) break;
  }
  return absl::CancelledError("shutting down");
}

bool UpstreamLink::Failed(const absl::Status& s, const char* what) {
  if (absl::IsNotFound(s) || absl::IsUnauthenticated(s)) {
    // The upstream restarted or refused the session: join again (Join drops a refused session
    // and presents the enrollment token).
    client_id_.clear();
  }
  const absl::Duration wait = backoff_.Next();
  EDGEFL_LOG_WARN("upstream ", what, ": ", s.ToString(),
                  client_id_.empty() ? "; the aggregator joins again" : "", "; retrying in ",
                  Round(wait));
  return Pause(wait);
}

absl::Status UpstreamLink::Run() {
  if (absl::Status s = uplink_.Load(); !s.ok()) {
    EDGEFL_LOG_WARN("upstream error-feedback state: ", s.ToString());
  }
  while (!stopping()) {
    if (!client_id_.empty() && clock_->Now() >= renew_at_) client_id_.clear();  // renew
    if (client_id_.empty()) {
      if (absl::Status s = JoinWithRetry(); !s.ok()) return s;
    }
    proto::CheckInRequest extras = pending_decline_;
    *extras.mutable_profile() = CurrentProfile();
    absl::StatusOr<client::Coordinator::CheckInResult> r =
        rpc_->CheckIn(client_id_, have_version_, checkin_timeout_,
                      /*want_final_model=*/true, extras);
    if (!r.ok()) {
      if (stopping()) break;  // Shutdown cancelled the call: not a failure to report
      if (!Failed(r.status(), "CheckIn")) break;
      continue;
    }
    pending_decline_.Clear();
    backoff_.Reset();
    switch (r->kind) {
      case client::Coordinator::CheckInResult::Kind::kIdle:
        break;
      case client::Coordinator::CheckInResult::Kind::kFinished:
        EDGEFL_LOG_INFO("upstream ", options_.upstream, ": the run is finished");
        region_->Finish(have_version_, nullptr);
        return absl::OkStatus();
      case client::Coordinator::CheckInResult::Kind::kFinalModel: {
        std::vector<float> final_model = model_;
        absl::Status s =
            client::UpdatePipeline::ApplyDownload(r->task, r->payload, have_version_, &final_model);
        EDGEFL_LOG_INFO("upstream ", options_.upstream,
                        ": the run is finished (final model version ", r->task.model_version(),
                        s.ok() ? "" : absl::StrCat(" unusable: ", s.message()), ")");
        region_->Finish(r->task.model_version(), s.ok() ? &final_model : nullptr);
        return absl::OkStatus();
      }
      case client::Coordinator::CheckInResult::Kind::kTask: {
        const auto id = std::make_pair(static_cast<int64_t>(r->task.round()),
                                       static_cast<int64_t>(r->task.attempt()));
        if (last_task_.has_value() && id <= *last_task_) {
          // Already run (a coordinator that offers it again): do not spin.
          if (!Pause(absl::Seconds(1))) return absl::CancelledError("shutting down");
          break;
        }
        last_task_ = id;
        RunTask(std::move(*r));
        break;
      }
    }
  }
  return absl::CancelledError("shutting down");
}

void UpstreamLink::Decline(const proto::Task& task, const std::string& reason) {
  pending_decline_.set_declined_reason(reason);
  pending_decline_.set_declined_round(task.round());
  pending_decline_.set_declined_attempt(static_cast<int32_t>(task.attempt()));
  absl::MutexLock lock(&mu_);
  ++rounds_declined_;
}

void UpstreamLink::RunTask(client::Coordinator::CheckInResult result) {
  const proto::Task& task = result.task;
  if (absl::Status s =
          client::UpdatePipeline::ApplyDownload(task, result.payload, have_version_, &model_);
      !s.ok()) {
    EDGEFL_LOG_ERROR("round ", task.round(), ": cannot use the upstream model: ", s.ToString());
    have_version_ = -1;  // the next CheckIn asks for the full model
    model_.clear();
    Decline(task, "bad_download");
    return;
  }
  have_version_ = task.model_version();
  result.payload = std::string();
  const absl::Time deadline = absl::UnixEpoch() + absl::Seconds(task.deadline_unix_seconds());
  const absl::Time now = clock_->Now();
  const absl::Duration margin = std::min(options_.margin, (deadline - now) / 2);
  const absl::Time close_by = deadline - std::max(margin, absl::ZeroDuration());
  absl::StatusOr<RoundScheduler::ExternalResult> regional =
      region_->RunRound(task, model_, close_by);
  if (!regional.ok()) {
    if (absl::IsCancelled(regional.status())) return;
    const std::string reason = ReasonOf(regional.status()).value_or("region_failed");
    EDGEFL_LOG_WARN("round ", task.round(), ": the region has nothing to send (",
                    regional.status().message(), "); declining the upstream task [", reason, "]");
    Decline(task, reason);
    return;
  }
  const proto::RoundRecord& stats = regional->stats;
  const uint64_t num_samples = regional->num_samples;
  absl::StatusOr<client::EncodedUpdate> update =
      uplink_.Encode(task, std::move(regional->delta), task.config().seed() ^ 0x5e9107a1ULL);
  if (!update.ok()) {
    EDGEFL_LOG_ERROR("round ", task.round(),
                     ": cannot encode the region's update: ", update.status().ToString());
    Decline(task, "region_failed");
    return;
  }
  proto::ReportHeader header;
  header.set_client_id(client_id_);
  header.set_round(task.round());
  header.set_attempt(task.attempt());
  header.set_model_version(task.model_version());
  header.set_num_samples(num_samples);
  *header.mutable_spec() = task.spec();
  header.set_codec(update->codec);
  header.mutable_metrics()->set_num_samples(num_samples);
  header.mutable_metrics()->set_train_seconds(stats.round_seconds());
  const std::string_view payload = update->payload();
  while (true) {
    uint64_t bytes_up = 0;
    absl::StatusOr<proto::ReportResponse> r = rpc_->Report(header, payload, deadline, &bytes_up);
    if (r.ok()) {
      if (absl::Status s = uplink_.Commit(); !s.ok()) {
        EDGEFL_LOG_WARN("could not save the uplink's error-feedback residual: ", s.ToString());
      }
      backoff_.Reset();
      {
        absl::MutexLock lock(&mu_);
        ++rounds_reported_;
      }
      EDGEFL_LOG_INFO(absl::StrFormat(
          "round %d: reported the region's update upstream: %d of %d devices, %d samples, "
          "regional round %.1f s, %.3f MB up (%s)",
          task.round(), stats.clients_reported(), stats.clients_selected(), num_samples,
          stats.round_seconds(), bytes_up / 1e6, header.codec()));
      return;
    }
    const absl::Status& s = r.status();
    if (absl::IsFailedPrecondition(s) || absl::IsPermissionDenied(s) ||
        absl::IsInvalidArgument(s)) {
      EDGEFL_LOG_WARN("round ", task.round(),
                      ": the upstream refused the region's update: ", s.ToString());
      uplink_.Rollback();
      return;
    }
    if (clock_->Now() > deadline) {
      EDGEFL_LOG_WARN("round ", task.round(), ": the region's update is lost (", s.ToString(),
                      "): the upstream round has closed");
      uplink_.Rollback();
      return;
    }
    if (std::optional<absl::Duration> hint = RetryAfterOf(s); hint.has_value()) {
      // A busy upstream (upload admission) said when to try again, within its round.
      const absl::Duration wait = std::min(*hint, deadline - clock_->Now());
      EDGEFL_LOG_INFO("round ", task.round(), ": upstream busy (", s.message(), "); retrying in ",
                      Round(wait));
      if (!Pause(wait)) {
        uplink_.Rollback();
        return;
      }
      continue;
    }
    if (!Failed(s, "Report") || client_id_.empty()) {
      uplink_.Rollback();  // shutting down, or re-joining: the update is lost
      return;
    }
  }
}

}  // namespace edgefl::server
