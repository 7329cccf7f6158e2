#include "server/fl_server.h"

#include <grpcpp/grpcpp.h>

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <chrono>
#include <cstdio>
#include <mutex>
#include <optional>
#include <utility>

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "aggregation/strategy.h"
#include "common/crypto.h"
#include "common/file_util.h"
#include "common/log.h"
#include "common/sha256.h"
#include "common/status_macros.h"
#include "models/model_spec.h"
#include "server/access_control.h"
#include "server/client_registry.h"
#include "server/coordinator_service.h"
#include "server/enrollment_ledger.h"
#include "server/grpc_server.h"
#include "server/metrics_exporter.h"
#include "server/report.h"
#include "server/round_scheduler.h"
#include "server/tokens.h"

namespace edgefl::server {
namespace {

constexpr char kUsagePayloadUrl[] = "type.edgefl/usage_error";

// Returns from Start with `expr`'s error marked as a usage error.
#define RETURN_IF_USAGE_ERROR(expr)                                         \
  do {                                                                      \
    ::absl::Status _edgefl_usage = (expr);                                  \
    if (!_edgefl_usage.ok()) return AsUsageError(std::move(_edgefl_usage)); \
  } while (0)

template <typename T>
absl::Status StatusOf(const absl::StatusOr<T>& v) {
  return v.status();
}

}  // namespace

absl::Status AsUsageError(absl::Status status) {
  if (!status.ok()) status.SetPayload(kUsagePayloadUrl, absl::Cord("1"));
  return status;
}

bool IsUsageError(const absl::Status& status) {
  return status.GetPayload(kUsagePayloadUrl).has_value();
}

// Destroyed in reverse order: the gRPC server first, the run's store last.
struct FlServer::Parts {
  ServerOptions options;
  const Clock* clock = nullptr;
  bool enrollment_tokens = false;
  std::optional<LoadedRun> run;
  std::unique_ptr<Evaluator> evaluator;
  std::unique_ptr<RunRecorder> recorder;
  std::unique_ptr<ClientRegistry> registry;
  std::unique_ptr<EnrollmentLedger> ledger;
  std::unique_ptr<AccessControl> access;
  std::unique_ptr<MetricsExporter> metrics;  // --metrics_listen; after the registry it reads
  std::unique_ptr<RoundScheduler> scheduler;
  std::unique_ptr<Region> region;      // --upstream: the scheduler's devices, driven from upstream
  std::unique_ptr<UpstreamLink> link;  // --upstream
  std::unique_ptr<CoordinatorService> service;
  std::unique_ptr<grpc::Server> grpc_server;
  std::unique_ptr<grpc::Server> health_server;  // --health_listen
  absl::Mutex stop_mu;
  bool stop ABSL_GUARDED_BY(stop_mu) = false;  // Shutdown() was called
  std::once_flag write_failure;

  // A file of the run could not be written: stop serving at once, then stop the scheduler. In
  // that order, clients never hear `finished` (what the scheduler answers once shut down) from a
  // run that did not finish: their calls fail UNAVAILABLE and they retry until a restarted
  // server resumes the run from its last checkpoint.
  void StopOnWriteFailure() {
    std::call_once(write_failure, [this] {
      const auto now = std::chrono::system_clock::now();
      if (grpc_server != nullptr) grpc_server->Shutdown(now);
      if (health_server != nullptr) health_server->Shutdown(now);
      scheduler->Shutdown();
    });
  }
  bool progress = false;  // stderr is a terminal: a progress line per round
  int64_t progress_rounds = 0;  // closed by this process (the scheduler's thread only)
  double progress_seconds = 0;
  int port = 0;
};

FlServer::FlServer(std::unique_ptr<Parts> parts) : parts_(std::move(parts)) {}

FlServer::~FlServer() {
  if (parts_->health_server != nullptr) parts_->health_server->Shutdown();
  if (parts_->grpc_server != nullptr) parts_->grpc_server->Shutdown();
}

int FlServer::port() const { return parts_->port; }
const std::string& FlServer::out_dir() const { return parts_->run->store.dir(); }

absl::StatusOr<std::unique_ptr<FlServer>> FlServer::Start(const ServerOptions& options,
                                                          const EvaluatorFactory& evaluators,
                                                          const Clock* clock) {
  auto p = std::make_unique<Parts>();
  p->options = options;
  p->clock = clock;
  const ServerOptions& o = p->options;
  // Refuse to start without transport security before anything else is loaded.
  absl::StatusOr<ServerTransport> transport = LoadServerTransport(o.transport);
  RETURN_IF_USAGE_ERROR(StatusOf(transport));
  absl::StatusOr<absl::Duration> session_ttl = ParsePositiveDuration(o.session_ttl);
  if (!session_ttl.ok()) {
    return AsUsageError(absl::InvalidArgumentError(
        absl::StrCat("--session_ttl: ", session_ttl.status().message())));
  }
  if (o.max_concurrent_uploads < 1) {
    return AsUsageError(absl::InvalidArgumentError(
        absl::StrCat("--max_concurrent_uploads must be >= 1, not ", o.max_concurrent_uploads)));
  }
  if (o.max_evaluation_backlog < 0) {
    return AsUsageError(absl::InvalidArgumentError(absl::StrCat(
        "--max_evaluation_backlog must be >= 0 (0 = no bound), not ", o.max_evaluation_backlog)));
  }
  if (o.max_transport_mb < 0) {
    return AsUsageError(absl::InvalidArgumentError(
        absl::StrCat("--max_transport_mb must be >= 0 (0 = unbounded), not ", o.max_transport_mb)));
  }
  if (!(o.upload_stall_seconds > 0)) {
    return AsUsageError(absl::InvalidArgumentError(
        absl::StrCat("--upload_stall_seconds must be > 0, not ", o.upload_stall_seconds)));
  }
  if (o.max_update_bytes_per_round < 0) {
    return AsUsageError(absl::InvalidArgumentError("--max_update_bytes_per_round must be >= 0"));
  }
  if (o.after_finish != "exit" && o.after_finish != "serve") {
    return AsUsageError(absl::InvalidArgumentError(
        absl::StrCat("--after_finish must be exit or serve, not '", o.after_finish, "'")));
  }
  if (!(o.metrics_linger_seconds >= 0)) {
    return AsUsageError(absl::InvalidArgumentError("--metrics_linger_seconds must be >= 0"));
  }

  const bool aggregator = !o.upstream.address.empty();
  std::optional<UpstreamClientConfig> upstream;
  if (aggregator) {
    if (o.run.resume) {
      return AsUsageError(absl::InvalidArgumentError(
          "--upstream: a regional aggregator keeps no rounds of its own to --resume"));
    }
    absl::StatusOr<UpstreamClientConfig> loaded = LoadUpstreamClientConfig(o.upstream);
    RETURN_IF_USAGE_ERROR(StatusOf(loaded));
    upstream = std::move(*loaded);
  }

  // The server secret: enrollment tokens are required when there is one.
  std::string secret_source;
  absl::StatusOr<std::string> secret = LoadServerSecret(o.secret_file, &secret_source);
  if (!secret.ok() && (!absl::IsNotFound(secret.status()) || !o.secret_file.empty())) {
    return AsUsageError(secret.status());
  }
  p->enrollment_tokens = secret.ok();

  // ---- the run ---------------------------------------------------------------------------------
  absl::StatusOr<LoadedRun> loaded = LoadOrResumeRun(o.run, clock);
  RETURN_IF_USAGE_ERROR(StatusOf(loaded));
  p->run = std::move(*loaded);
  LoadedRun& run = *p->run;
  if (aggregator) {
    if (absl::Status s = CheckAggregatorConfig(run.config); !s.ok()) {
      // As for any refused config, leave no folder behind (it is still empty here).
      if (!run.resumed_from.has_value()) ::rmdir(run.store.dir().c_str());
      return AsUsageError(s);
    }
  }
  if (evaluators && !aggregator) {  // the root evaluates
    absl::StatusOr<std::unique_ptr<Evaluator>> evaluator = evaluators(run.config);
    RETURN_IF_USAGE_ERROR(StatusOf(evaluator));
    p->evaluator = std::move(*evaluator);
  }
  RunRecorder::Options rec_opts;
  rec_opts.config = run.config;
  rec_opts.spec = run.spec;
  rec_opts.elapsed_before = run.elapsed_seconds;
  Parts* parts = p.get();
  p->progress = ::isatty(STDERR_FILENO) != 0;
  if (!o.metrics_listen.empty()) {
    MetricsExporter::Options m_opts;
    m_opts.listen = o.metrics_listen;
    m_opts.total_rounds = run.config.rounds();
    m_opts.completed_rounds = run.completed_rounds;
    m_opts.registered_clients = [parts]() -> int64_t {
      return parts->registry == nullptr ? 0 : static_cast<int64_t>(parts->registry->Eligible().size());
    };
    absl::StatusOr<std::unique_ptr<MetricsExporter>> metrics = MetricsExporter::Create(m_opts);
    if (!metrics.ok()) {
      return AsUsageError(absl::Status(metrics.status().code(),
                                       absl::StrCat("--metrics_listen: ", metrics.status().message())));
    }
    p->metrics = std::move(*metrics);
    rec_opts.on_metrics_line = [parts](const RoundMetrics& line) {
      if (parts->metrics != nullptr) parts->metrics->OnMetricsLine(line);
    };
    EDGEFL_LOG_INFO("Prometheus metrics on http://", o.metrics_listen.substr(0, o.metrics_listen.rfind(':')),
                    ":", p->metrics->port(), "/metrics");
  }
  absl::StatusOr<std::unique_ptr<RunRecorder>> recorder =
      RunRecorder::Create(std::move(rec_opts), &run.store, p->evaluator.get(), clock);
  RETURN_IF_USAGE_ERROR(StatusOf(recorder));
  p->recorder = std::move(*recorder);
  if (run.resumed_from.has_value()) {
    const std::optional<std::vector<float>> average = run.strategy->averaged_model();
    absl::StatusOr<int> restored = p->recorder->Restore(*run.resumed_from, run.weights,
                                                        average ? &*average : nullptr);
    if (!restored.ok()) {
      EDGEFL_LOG_ERROR("could not restore metrics.jsonl: ", restored.status().ToString());
      return restored.status();
    }
    EDGEFL_LOG_INFO("resuming ", run.store.dir(), " after round ", run.completed_rounds, " of ",
                    run.config.rounds());
  }

  // ---- components ------------------------------------------------------------------------------
  ClientRegistry::Options reg_opts;
  reg_opts.lease = absl::Seconds(o.lease_seconds);
  reg_opts.eligibility = run.config.eligibility();  // only eligible devices are selected
  p->registry = std::make_unique<ClientRegistry>(reg_opts, clock);

  // ---- who may call, as whom, how much ---------------------------------------------------------
  std::string session_key;
  if (p->enrollment_tokens) {
    EnrollmentLedger::Options ledger_opts;
    ledger_opts.uses_path = o.token_uses.empty() ? run.store.Path("token_uses") : o.token_uses;
    ledger_opts.revocation_path = o.revoked.empty() ? run.store.Path("revoked_tokens") : o.revoked;
    absl::StatusOr<std::unique_ptr<EnrollmentLedger>> opened = EnrollmentLedger::Open(ledger_opts);
    RETURN_IF_USAGE_ERROR(StatusOf(opened));
    p->ledger = std::move(*opened);
    session_key = *secret;
    EDGEFL_LOG_INFO("enrollment tokens required (secret from ", secret_source, "; uses in ",
                    ledger_opts.uses_path, ", revocations from ", ledger_opts.revocation_path, ")");
  } else {
    // Sessions still bind every CheckIn and Report to the client that joined; without a
    // configured secret their key lives only as long as this process.
    absl::StatusOr<std::string> key = RandomBytes(32);
    RETURN_IF_USAGE_ERROR(StatusOf(key));
    session_key = ToHex(*key);
    if (o.transport.client_ca.empty()) {
      EDGEFL_LOG_WARN(
          "open enrollment: any client that reaches this server can join; use "
          "--client_ca (mutual TLS) or --secret_file (enrollment tokens) to restrict");
    }
  }
  absl::StatusOr<TokenAuthority> authority = TokenAuthority::Create(session_key);
  RETURN_IF_USAGE_ERROR(StatusOf(authority));
  AccessControl::Options access_opts;
  access_opts.require_client_cert = !o.transport.client_ca.empty();
  access_opts.enrollment_tokens = p->enrollment_tokens;
  access_opts.session_ttl = *session_ttl;
  access_opts.join_rate = {o.join_per_minute, std::max(1.0, o.join_per_minute), 100000};
  access_opts.checkin_rate = {o.checkin_per_minute, std::clamp(o.checkin_per_minute, 1.0, 30.0),
                              100000};
  const uint64_t dense = static_cast<uint64_t>(models::NumParameters(run.spec)) * sizeof(float);
  access_opts.max_update_bytes_per_round = o.max_update_bytes_per_round > 0
                                               ? static_cast<uint64_t>(o.max_update_bytes_per_round)
                                               : 4 * dense + (1 << 20);
  absl::StatusOr<std::unique_ptr<AccessControl>> access = AccessControl::Create(
      access_opts, std::move(*authority), p->ledger.get(), p->registry.get(), clock);
  RETURN_IF_USAGE_ERROR(StatusOf(access));
  p->access = std::move(*access);

  RunRecorder* rec = p->recorder.get();
  RoundScheduler::Options sched_opts;
  sched_opts.config = run.config;
  sched_opts.spec = run.spec;
  sched_opts.completed_rounds = run.completed_rounds;
  sched_opts.max_evaluation_backlog = o.max_evaluation_backlog;
  sched_opts.weights = std::move(run.weights);
  sched_opts.on_round_closed = [rec, parts](const proto::RoundRecord& stats,
                                            std::shared_ptr<const std::vector<float>> model,
                                            const std::string& aggregation_state,
                                            std::shared_ptr<const std::vector<float>> average) {
    const absl::Time start = absl::Now();
    rec->OnRoundClosed(stats, std::move(model), aggregation_state, std::move(average));
    // A checkpoint that cannot be written (full or read-only volume) stops the run: going on
    // would train rounds a restart loses. Run() returns the recorder's error.
    if (!rec->status().ok()) parts->StopOnWriteFailure();
    if (parts->metrics != nullptr) {
      parts->metrics->OnRoundClosed(stats, absl::ToDoubleSeconds(absl::Now() - start));
    }
    // Progress with an ETA from this process's mean round time, on a terminal only.
    if (parts->progress) {
      const int64_t total = parts->run->config.rounds();
      parts->progress_rounds += 1;
      parts->progress_seconds += stats.round_seconds();
      const double eta = parts->progress_seconds / parts->progress_rounds *
                         static_cast<double>(std::max<int64_t>(0, total - stats.round()));
      std::fprintf(stderr, "\r[%3d%%] round %lld/%lld closed in %.1fs, ETA %s   \n",
                   static_cast<int>(100 * stats.round() / std::max<int64_t>(1, total)),
                   static_cast<long long>(stats.round()), static_cast<long long>(total),
                   stats.round_seconds(),
                   absl::FormatDuration(absl::Seconds(std::round(eta))).c_str());
    }
  };
  EDGEFL_LOG_INFO("aggregation: ", run.strategy->name());
  absl::StatusOr<std::unique_ptr<RoundScheduler>> scheduler = RoundScheduler::Create(
      std::move(sched_opts), p->registry.get(), std::move(run.strategy),
      [rec, parts](const proto::RoundRecord& stats, std::shared_ptr<const std::vector<float>> model,
                   std::shared_ptr<const std::vector<float>> average) {
        rec->OnRoundDone(stats, std::move(model), std::move(average));
        if (!rec->status().ok()) parts->StopOnWriteFailure();  // a metrics line: as above
      },
      clock);
  RETURN_IF_USAGE_ERROR(StatusOf(scheduler));
  p->scheduler = std::move(*scheduler);

  if (aggregator) {
    // The region's rounds go to this server's metrics.jsonl (and /metrics), without evaluation.
    p->region = NewSchedulerRegion(
        p->scheduler.get(), p->registry.get(),
        [rec, parts](const proto::RoundRecord& stats, const std::vector<float>& model) {
          rec->OnRoundDone(stats, std::make_shared<const std::vector<float>>(model));
          if (parts->metrics != nullptr) parts->metrics->OnRoundClosed(stats, 0);
        });
    std::unique_ptr<client::CoordinatorClient> rpc =
        client::CoordinatorClient::Create(upstream->rpc);
    rpc->SetEnrollmentToken(upstream->enrollment_token);
    UpstreamLink::Options link_opts;
    link_opts.upstream = o.upstream.address;
    link_opts.seed = run.config.seed();
    link_opts.margin = absl::Seconds(o.upstream.margin_seconds);
    link_opts.backoff.max = absl::Seconds(o.upstream.retry_max_seconds);
    link_opts.min_download_bytes_per_second = o.upstream.min_download_kib_per_second * 1024;
    link_opts.ef_state_file = run.store.Path("upstream.ef");
    absl::StatusOr<std::unique_ptr<UpstreamLink>> link =
        UpstreamLink::Create(link_opts, std::move(rpc), p->region.get(), clock);
    RETURN_IF_USAGE_ERROR(StatusOf(link));
    p->link = std::move(*link);
    EDGEFL_LOG_INFO("regional aggregator: rounds come from upstream ", o.upstream.address, " (",
                    upstream->rpc.insecure ? "PLAINTEXT" : "TLS",
                    "); the config's rounds, "
                    "client settings and evaluation are the root's business");
  }

  CoordinatorService::Options svc_opts;
  svc_opts.checkin_poll = absl::Seconds(o.poll_seconds);
  svc_opts.max_concurrent_reports = o.max_concurrent_uploads;
  svc_opts.report_stall_timeout = absl::Seconds(o.upload_stall_seconds);
  p->service = std::make_unique<CoordinatorService>(svc_opts, run.spec, p->registry.get(),
                                                    p->scheduler.get(), p->access.get());

  // ---- serving ---------------------------------------------------------------------------------
  GrpcServerOptions grpc_opts;
  grpc_opts.listen = o.listen;
  grpc_opts.credentials = transport->credentials;
  grpc_opts.max_message_mb = o.max_message_mb;
  grpc_opts.max_transport_mb = o.max_transport_mb;
  absl::StatusOr<StartedGrpcServer> started = StartGrpcServer(grpc_opts, {p->service.get()});
  if (!started.ok()) {
    EDGEFL_LOG_ERROR(started.status().message());
    return AsUsageError(started.status());
  }
  p->grpc_server = std::move(started->server);
  p->port = started->port;
  if (!o.health_listen.empty()) {
    GrpcServerOptions health_opts;  // plaintext: kubelet's gRPC probe has no TLS
    health_opts.listen = o.health_listen;
    absl::StatusOr<StartedGrpcServer> health = StartHealthOnlyServer(health_opts);
    if (!health.ok()) {
      return AsUsageError(absl::Status(
          health.status().code(), absl::StrCat("--health_listen: ", health.status().message())));
    }
    p->health_server = std::move(health->server);
    EDGEFL_LOG_INFO("health service (plaintext, grpc.health.v1 only) on ", o.health_listen);
  }
  if (!o.port_file.empty()) {
    if (absl::Status s = WriteFileAtomically(o.port_file, absl::StrCat(p->port, "\n")); !s.ok()) {
      EDGEFL_LOG_ERROR(s.ToString());
      return AsUsageError(s);
    }
  }
  if (o.transport.insecure) {
    EDGEFL_LOG_WARN(
        "--insecure: serving PLAINTEXT; updates, models and credentials travel "
        "unencrypted and unauthenticated. Use --tls_cert/--tls_key outside a trusted "
        "network.");
  }
  EDGEFL_LOG_INFO("serving ", transport->description, " on ",
                  o.listen.substr(0, o.listen.rfind(':')), ":", p->port, "; model ",
                  run.config.model(), " (", models::NumParameters(run.spec), " parameters), ",
                  run.config.rounds(), " rounds, output ", run.store.dir());
  return std::unique_ptr<FlServer>(new FlServer(std::move(p)));
}

void FlServer::Shutdown() {
  {
    absl::MutexLock lock(&parts_->stop_mu);
    parts_->stop = true;
  }
  parts_->scheduler->Shutdown();
  if (parts_->link != nullptr) parts_->link->Shutdown();
}

absl::Status FlServer::Run() {
  Parts& p = *parts_;
  const LoadedRun& run = *p.run;
  const int64_t total_rounds = run.config.rounds();
  absl::Status status = p.link != nullptr ? p.link->Run() : p.scheduler->Run();
  if (absl::Status files = p.recorder->status(); !files.ok()) {
    // The scheduler stopped because a file could not be written; that is the reason to report
    // (not the CANCELLED it returns after the stop).
    status = absl::InternalError(
        absl::StrCat("the run's files could not be written: ", files.message(),
                     "; the last checkpoint is intact (resume once the volume is fixed)"));
  }
  const bool serve = status.ok() && p.options.after_finish == "serve";
  if (status.ok() && !serve) {
    // Tell polling clients that the run is over before going away (bounded).
    const absl::Time until = absl::Now() + absl::Seconds(p.options.finish_grace_seconds);
    // A run resumed with every round already closed starts with an empty registry: it waits
    // (within the grace) for as many clients as a round needs to come back for the news.
    const int64_t returning =
        run.completed_rounds >= total_rounds ? run.config.sampling().min_clients() : 0;
    while (absl::Now() < until &&
           p.service->finished_notices() <
               std::max(returning, static_cast<int64_t>(p.registry->Eligible().size()))) {
      absl::SleepFor(absl::Milliseconds(100));
    }
  }
  if (status.ok() && p.link != nullptr) {
    std::printf("fl-server: regional aggregator done: %d rounds reported to %s, %d declined\n",
                p.link->rounds_reported(), p.options.upstream.address.c_str(),
                p.link->rounds_declined());
    std::fflush(stdout);
  } else if (status.ok()) {
    if (absl::Status s = WriteReport(run.store.dir()); !s.ok()) {
      EDGEFL_LOG_WARN("could not write ", kReportFile, ": ", s.ToString());
    }
    std::printf("fl-server: %lld rounds done. Metrics: %s  Final model: %s  Checkpoint: %s\n",
                static_cast<long long>(total_rounds),
                run.store.Path(RunStore::kMetricsFile).c_str(),
                run.store.Path(RunStore::kFinalModelFile).c_str(),
                run.store.Path(RunStore::kCheckpointFile).c_str());
    if (std::optional<double> eps = p.recorder->dp_epsilon(); eps.has_value()) {
      std::printf("fl-server: central DP spent (epsilon, delta) = (%.4g, %g) over %lld rounds\n",
                  *eps, run.config.aggregation().dp().delta(),
                  static_cast<long long>(total_rounds));
    }
    std::fflush(stdout);
  }
  if (serve) {
    // A Deployment restarts a container that exits: stay up, answering CheckIn with `finished`
    // (clients exit, or wait for the next run), health SERVING, metrics served, until SIGTERM.
    EDGEFL_LOG_INFO("--after_finish=serve: the run is finished; serving it (CheckIn answers "
                    "finished, health SERVING) until SIGTERM");
    absl::MutexLock lock(&p.stop_mu);
    p.stop_mu.Await(absl::Condition(&p.stop));
  }
  if (p.health_server != nullptr) p.health_server->Shutdown();
  p.grpc_server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  if (!serve && p.metrics != nullptr && p.options.metrics_linger_seconds > 0) {
    // The run's last values are in the exporter; give the scraper time to read them.
    EDGEFL_LOG_INFO("serving the final metrics for ", p.options.metrics_linger_seconds, " s");
    absl::SleepFor(absl::Seconds(std::min(p.options.metrics_linger_seconds, 3600.0)));
  }
  if (!status.ok()) {
    EDGEFL_LOG_ERROR("run stopped: ", status.ToString());
    return status;
  }
  return absl::OkStatus();
}

}  // namespace edgefl::server
