// fl-server: the edgefl coordinator.
#include <grpcpp/grpcpp.h>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "aggregation/strategy.h"
#include "common/config.h"
#include "common/crypto.h"
#include "common/file_util.h"
#include "common/flags.h"
#include "common/log.h"
#include "common/memory.h"
#include "common/sha256.h"
#include "common/threads.h"
#include "models/dataset.h"
#include "models/model_runner.h"
#include "models/model_spec.h"
#include "server/access_control.h"
#include "server/client_registry.h"
#include "server/coordinator_service.h"
#include "server/enrollment_ledger.h"
#include "server/grpc_server.h"
#include "server/round_scheduler.h"
#include "server/run_store.h"
#include "server/token_cli.h"
#include "server/tokens.h"
#include "server/transport.h"

namespace edgefl::server {
namespace {

constexpr char kProgram[] = "fl-server";

struct ServerFlags {
  std::string config;
  std::vector<std::string> sets;
  int rounds = 0;
  std::string model;
  std::string listen = "0.0.0.0:50051";
  std::string out;
  bool resume = false;
  std::string data_dir;
  std::string init_weights;
  int64_t seed = -1;
  int min_clients = 0;
  double fraction = 0;
  double deadline = 0;
  int eval_samples = -1;
  int eval_threads = 0;
  double lease_seconds = 300;
  double poll_seconds = 20;
  double finish_grace_seconds = 10;
  std::string port_file;
  int max_message_mb = channel_args::kDefaultMaxMessageMb;
  // Transport security.
  std::string tls_cert;
  std::string tls_key;
  std::string client_ca;
  bool insecure = false;
  // Client identity and limits.
  std::string secret_file;
  std::string token_uses;
  std::string revoked;
  std::string session_ttl = "24h";
  double join_per_minute = 30;
  double checkin_per_minute = 60;
  int64_t max_update_bytes_per_round = 0;
};

std::string NewestRunDir() {
  std::error_code ec;
  std::string best;
  for (const auto& entry : std::filesystem::directory_iterator("runs", ec)) {
    if (entry.is_directory() && FileExists(entry.path().string() + "/" + RunStore::kCheckpointFile)) {
      if (entry.path().string() > best) best = entry.path().string();
    }
  }
  return best;
}

// Flags that are sugar for --set, applied before the explicit --set list.
std::vector<std::string> SugarOverrides(const ServerFlags& f) {
  std::vector<std::string> out;
  if (f.rounds > 0) out.push_back(absl::StrCat("rounds=", f.rounds));
  if (!f.model.empty()) out.push_back(absl::StrCat("model=", f.model));
  if (!f.data_dir.empty()) out.push_back(absl::StrCat("data_dir=", f.data_dir));
  if (!f.init_weights.empty()) out.push_back(absl::StrCat("init_weights=", f.init_weights));
  if (f.seed >= 0) out.push_back(absl::StrCat("seed=", f.seed));
  if (f.min_clients > 0) out.push_back(absl::StrCat("sampling.min_clients=", f.min_clients));
  if (f.fraction > 0) out.push_back(absl::StrCat("sampling.fraction=", f.fraction));
  if (f.deadline > 0) out.push_back(absl::StrCat("deadline_seconds=", f.deadline));
  if (f.eval_samples >= 0) out.push_back(absl::StrCat("evaluation.max_samples=", f.eval_samples));
  if (f.eval_threads > 0) out.push_back(absl::StrCat("evaluation.threads=", f.eval_threads));
  out.insert(out.end(), f.sets.begin(), f.sets.end());
  return out;
}

int Main(int argc, char** argv) {
  if (argc >= 2 && std::string(argv[1]) == "token") return RunTokenCommand(argc - 1, argv + 1);
  ServerFlags f;
  FlagSet flags(kProgram,
                "The edgefl coordinator: schedules federated rounds over gRPC, aggregates the\n"
                "clients' updates (FedAvg), evaluates each new global model on the test set and\n"
                "writes metrics.jsonl, an atomic checkpoint after every round and the final model\n"
                "into the output folder.\n\n"
                "  fl-server --tls_cert server.pem --tls_key server.key --rounds 50\n"
                "  fl-server --tls_cert server.pem --tls_key server.key --client_ca ca.pem\n"
                "  fl-server --insecure --config examples/fmnist_fedavg.json --set client.lr=0.02\n"
                "  fl-server --insecure --resume --out runs/20261126-101500\n"
                "  fl-server token create --secret_file secret --ttl 24h --count 100\n\n"
                "TLS is required unless --insecure is given. Enrollment tokens are required\n"
                "when a server secret is configured (--secret_file or $EDGEFL_SERVER_SECRET).");
  flags.String("config", &f.config, "experiment config (JSON of edgefl.proto.ExperimentConfig)");
  flags.Repeated("set", &f.sets,
                 "override one config field, e.g. --set client.lr=0.02; wins over the other flags");
  flags.Int("rounds", &f.rounds, "number of rounds (config 'rounds'; 0 = config or 10)");
  flags.String("model", &f.model, "model name: fedavg_cnn, small_cnn, mlp (config 'model')");
  flags.String("listen", &f.listen, "address to serve on (port 0 picks a free port)");
  flags.String("out", &f.out, "output folder (default runs/<timestamp>; with --resume, the run "
                              "to continue, default the newest under runs/)");
  flags.Bool("resume", &f.resume, "continue the run in --out from its last completed round");
  flags.String("data_dir", &f.data_dir,
               "folder with the Fashion-MNIST .gz files (config 'data_dir', default "
               "/usr/share/datasets/fashion-mnist)");
  flags.String("init_weights", &f.init_weights,
               "raw float32 initial weights (config 'init_weights'; default seeded init)");
  flags.Int64("seed", &f.seed, "seed for init and sampling (config 'seed'; -1 = config or 0)");
  flags.Int("min_clients", &f.min_clients, "config sampling.min_clients (0 = config or 2)");
  flags.Double("fraction", &f.fraction, "config sampling.fraction (0 = config or 1.0)");
  flags.Double("deadline", &f.deadline, "round deadline in seconds (0 = config or 300)");
  flags.Int("eval_samples", &f.eval_samples,
            "evaluate on the first N test images (-1 = config, 0 = all 10,000)");
  flags.Int("eval_threads", &f.eval_threads, "torch threads for evaluation (0 = config or 1)");
  flags.Double("lease_seconds", &f.lease_seconds, "a client unseen this long is dropped");
  flags.Double("poll_seconds", &f.poll_seconds, "how long a CheckIn long poll is held");
  flags.Double("finish_grace_seconds", &f.finish_grace_seconds,
               "after the last round, how long to keep telling clients the run is over");
  flags.String("port_file", &f.port_file, "write the bound port to this file once serving");
  flags.Int("max_message_mb", &f.max_message_mb, "gRPC message size limit, both directions");
  flags.String("tls_cert", &f.tls_cert, "server certificate chain (PEM)");
  flags.String("tls_key", &f.tls_key,
               "server private key (PEM; refused if group/other can read it)");
  flags.String("client_ca", &f.client_ca,
               "CA bundle (PEM) for mutual TLS: clients must present a certificate it signed, "
               "and their client id is taken from it (first SAN, else CN)");
  flags.Bool("insecure", &f.insecure,
             "serve plaintext (no TLS): only on a trusted network, never in production");
  flags.String("secret_file", &f.secret_file,
               "server secret for enrollment and session tokens (default $EDGEFL_SERVER_SECRET); "
               "with a secret, a first Join needs an enrollment token");
  flags.String("token_uses", &f.token_uses,
               "file of enrollment-token use counts, kept across restarts (default "
               "<out>/token_uses; share it between runs to keep single-use tokens single-use)");
  flags.String("revoked", &f.revoked,
               "revocation list (token ids, fl-server token revoke), re-read when it changes "
               "(default <out>/revoked_tokens)");
  flags.String("session_ttl", &f.session_ttl,
               "lifetime of a session token; clients renew it by joining again");
  flags.Double("join_per_minute", &f.join_per_minute,
               "Join calls allowed per peer address (per certificate under mutual TLS) and "
               "minute, also the burst; 0 = no limit");
  flags.Double("checkin_per_minute", &f.checkin_per_minute,
               "CheckIn calls allowed per client and minute (burst: the same number, at most "
               "30); 0 = no limit");
  flags.Int64("max_update_bytes_per_round", &f.max_update_bytes_per_round,
              "update bytes a client may announce per round over all its Report attempts "
              "(0 = 4 x the dense model size + 1 MiB)");
  flags.ParseOrExit(argc, argv);
  if (!flags.positional().empty()) {
    ExitUsageError(kProgram, absl::StrCat("unexpected argument '", flags.positional()[0], "'"));
  }
  SetLogTag("server");
  // Uploads being assembled, snapshots and evaluation copies go back to the kernel when freed;
  // chunk buffers freed by many gRPC threads are reused instead of parked in per-thread arenas.
  TuneMallocForServing();
  // Refuse to start without transport security before anything else is loaded.
  absl::StatusOr<ServerTransport> transport =
      LoadServerTransport({f.tls_cert, f.tls_key, f.client_ca, f.insecure});
  if (!transport.ok()) ExitUsageError(kProgram, std::string(transport.status().message()));
  absl::StatusOr<absl::Duration> session_ttl = ParsePositiveDuration(f.session_ttl);
  if (!session_ttl.ok()) {
    ExitUsageError(kProgram, absl::StrCat("--session_ttl: ", session_ttl.status().message()));
  }
  if (f.max_update_bytes_per_round < 0) {
    ExitUsageError(kProgram, "--max_update_bytes_per_round must be >= 0");
  }
  // The server secret: enrollment tokens are required when there is one.
  std::string secret_source;
  absl::StatusOr<std::string> secret = LoadServerSecret(f.secret_file, &secret_source);
  if (!secret.ok() && !absl::IsNotFound(secret.status())) {
    ExitUsageError(kProgram, std::string(secret.status().message()));
  }
  if (!secret.ok() && !f.secret_file.empty()) {
    ExitUsageError(kProgram, std::string(secret.status().message()));
  }
  const bool enrollment_tokens = secret.ok();

  // ---- configuration -------------------------------------------------------------------------
  proto::ExperimentConfig config;
  int64_t completed = 0;
  std::vector<float> weights;
  double elapsed_before = 0;
  proto::Checkpoint resumed_from;  // on --resume
  if (f.resume) {
    if (f.out.empty()) f.out = NewestRunDir();
    if (f.out.empty()) ExitUsageError(kProgram, "--resume: no run with a checkpoint under runs/");
    if (!f.config.empty()) ExitUsageError(kProgram, "--resume takes the run's own config; "
                                                    "use --set or --rounds to change it");
  } else if (f.out.empty()) {
    f.out = absl::StrCat("runs/", absl::FormatTime("%Y%m%d-%H%M%S", absl::Now(),
                                                   absl::LocalTimeZone()));
  }
  absl::StatusOr<RunStore> store = RunStore::Open(f.out);
  if (!store.ok()) ExitUsageError(kProgram, std::string(store.status().message()));
  if (f.resume) {
    absl::StatusOr<proto::Checkpoint> ckpt = store->ReadCheckpoint();
    if (!ckpt.ok()) {
      ExitUsageError(kProgram, absl::StrCat("--resume: ", ckpt.status().message()));
    }
    config = ckpt->config();
    completed = ckpt->round();
    elapsed_before = ckpt->elapsed_seconds();
    absl::StatusOr<std::vector<float>> w = BytesToFloats(ckpt->weights());
    if (!w.ok()) ExitUsageError(kProgram, std::string(w.status().message()));
    weights = std::move(*w);
    resumed_from = std::move(*ckpt);
    resumed_from.clear_weights();
  } else if (!f.config.empty()) {
    absl::StatusOr<proto::ExperimentConfig> c = LoadConfigFile(f.config);
    if (!c.ok()) ExitUsageError(kProgram, std::string(c.status().message()));
    config = std::move(*c);
  }
  for (const std::string& assignment : SugarOverrides(f)) {
    if (absl::Status s = ApplyOverride(assignment, &config); !s.ok()) {
      ExitUsageError(kProgram, std::string(s.message()));
    }
  }
  FillDefaults(&config);
  if (absl::Status s = ValidateConfig(config); !s.ok()) {
    ExitUsageError(kProgram, std::string(s.message()));
  }
  absl::StatusOr<proto::ModelSpec> spec = models::SpecForModel(config.model());
  if (!spec.ok()) ExitUsageError(kProgram, std::string(spec.status().message()));
  if (!f.resume) {
    absl::StatusOr<std::vector<float>> w =
        config.init_weights().empty() ? models::InitialWeights(config.model(), config.seed())
                                      : models::LoadRawWeights(config.init_weights(), *spec);
    if (!w.ok()) ExitUsageError(kProgram, std::string(w.status().message()));
    weights = std::move(*w);
  } else if (static_cast<int64_t>(weights.size()) != models::NumParameters(*spec)) {
    ExitUsageError(kProgram, "--resume: the checkpoint does not match the configured model");
  }
  absl::StatusOr<models::ImageDataset> test_set = models::LoadFashionMnist(
      config.data_dir(), models::Split::kTest, std::nullopt, config.evaluation().max_samples());
  if (!test_set.ok()) ExitUsageError(kProgram, std::string(test_set.status().message()));
  // OpenBLAS starts one thread per core and, unless told otherwise, keeps the extra ones spinning
  // in sched_yield after every multi-threaded call (seen in perf; W: fl-server's system CPU time
  // 53 -> 8 s, taken from the clients' training). Evaluation uses the configured thread count.
  SetBlasThreads(std::max(1, config.evaluation().threads()));
  absl::StatusOr<std::unique_ptr<models::ModelRunner>> evaluator =
      models::ModelRunner::Create(config.model(), config.evaluation().threads());
  if (!evaluator.ok()) ExitUsageError(kProgram, std::string(evaluator.status().message()));

  if (absl::Status s = store->WriteConfig(config); !s.ok()) {
    ExitUsageError(kProgram, std::string(s.message()));
  }
  // Fills the test figures of m->stats.round() when the config evaluates that round. Runs on the
  // main thread on resume, then only on the scheduler's worker.
  auto evaluate_round = [&](const std::vector<float>& model, RoundMetrics* m) {
    const int64_t round = m->stats.round();
    if (round % config.evaluation().every() != 0 && round != config.rounds()) return;
    absl::Status s = (*evaluator)->SetWeights(model);
    absl::StatusOr<models::EvalResult> r =
        s.ok() ? (*evaluator)->Evaluate(*test_set, config.evaluation().batch_size())
               : absl::StatusOr<models::EvalResult>(s);
    if (!r.ok()) {
      EDGEFL_LOG_ERROR("evaluation of round ", round, " failed: ", r.status().ToString());
      return;
    }
    m->test_accuracy = r->accuracy;
    m->test_loss = r->loss;
    m->eval_seconds = r->seconds;
  };
  if (f.resume) {
    // Rounds that closed before the restart but whose evaluation was lost get their lines now;
    // the checkpoint's own model is evaluated again.
    absl::StatusOr<int> restored = store->RestoreMetrics(
        resumed_from, [&](RoundMetrics* m) { evaluate_round(weights, m); });
    if (!restored.ok()) {
      EDGEFL_LOG_ERROR("could not restore metrics.jsonl: ", restored.status().ToString());
      return 1;
    }
    if (*restored > 0) {
      EDGEFL_LOG_WARN("metrics.jsonl: wrote the lines of ", *restored, " round(s) up to ",
                      completed, " whose evaluation the restart lost",
                      *restored > 1 ? " (only the last is evaluated again)" : "");
    }
    EDGEFL_LOG_INFO("resuming ", store->dir(), " after round ", completed, " of ",
                    config.rounds());
  }

  // ---- components ----------------------------------------------------------------------------
  // Block the termination signals in every thread; one thread waits for them below.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  ClientRegistry::Options reg_opts;
  reg_opts.lease = absl::Seconds(f.lease_seconds);
  ClientRegistry registry(reg_opts, Clock::Real());

  // ---- who may call, as whom, how much ---------------------------------------------------------
  std::unique_ptr<EnrollmentLedger> ledger;
  std::string session_key;
  if (enrollment_tokens) {
    EnrollmentLedger::Options ledger_opts;
    ledger_opts.uses_path = f.token_uses.empty() ? store->Path("token_uses") : f.token_uses;
    ledger_opts.revocation_path = f.revoked.empty() ? store->Path("revoked_tokens") : f.revoked;
    absl::StatusOr<std::unique_ptr<EnrollmentLedger>> opened = EnrollmentLedger::Open(ledger_opts);
    if (!opened.ok()) ExitUsageError(kProgram, std::string(opened.status().message()));
    ledger = std::move(*opened);
    session_key = *secret;
    EDGEFL_LOG_INFO("enrollment tokens required (secret from ", secret_source, "; uses in ",
                    ledger_opts.uses_path, ", revocations from ", ledger_opts.revocation_path, ")");
  } else {
    // Sessions still bind every CheckIn and Report to the client that joined; without a
    // configured secret their key lives only as long as this process.
    absl::StatusOr<std::string> key = RandomBytes(32);
    if (!key.ok()) ExitUsageError(kProgram, std::string(key.status().message()));
    session_key = ToHex(*key);
    if (f.client_ca.empty()) {
      EDGEFL_LOG_WARN(
          "open enrollment: any client that reaches this server can join; use "
          "--client_ca (mutual TLS) or --secret_file (enrollment tokens) to restrict");
    }
  }
  absl::StatusOr<TokenAuthority> authority = TokenAuthority::Create(session_key);
  if (!authority.ok()) ExitUsageError(kProgram, std::string(authority.status().message()));
  AccessControl::Options access_opts;
  access_opts.require_client_cert = !f.client_ca.empty();
  access_opts.enrollment_tokens = enrollment_tokens;
  access_opts.session_ttl = *session_ttl;
  access_opts.join_rate = {f.join_per_minute, std::max(1.0, f.join_per_minute), 100000};
  access_opts.checkin_rate = {f.checkin_per_minute, std::clamp(f.checkin_per_minute, 1.0, 30.0),
                              100000};
  {
    const uint64_t dense = static_cast<uint64_t>(models::NumParameters(*spec)) * sizeof(float);
    access_opts.max_update_bytes_per_round =
        f.max_update_bytes_per_round > 0 ? static_cast<uint64_t>(f.max_update_bytes_per_round)
                                         : 4 * dense + (1 << 20);
  }
  absl::StatusOr<std::unique_ptr<AccessControl>> access = AccessControl::Create(
      access_opts, std::move(*authority), ledger.get(), &registry, Clock::Real());
  if (!access.ok()) ExitUsageError(kProgram, std::string(access.status().message()));

  const absl::Time started = absl::Now();
  const int64_t total_rounds = config.rounds();
  RunStore* run_store = &*store;
  const proto::ModelSpec model_spec = *spec;
  std::atomic<bool> worker_failed{false};
  // Closed rounds whose metrics line is not written yet; each checkpoint carries them, so that a
  // restart loses no round's line however far evaluation lags.
  absl::Mutex pending_mu;
  std::map<int64_t, proto::RoundRecord> pending_rounds;  // guarded by pending_mu
  // As each round closes, before the next one opens: the checkpoint (and, after the last round,
  // the final model), so that --resume continues from the last closed round.
  auto on_round_closed = [&](const proto::RoundRecord& stats,
                             std::shared_ptr<const std::vector<float>> model) {
    const double elapsed = elapsed_before + absl::ToDoubleSeconds(absl::Now() - started);
    proto::Checkpoint ckpt = MakeCheckpoint(stats.round(), model_spec, *model, config, elapsed);
    {
      absl::MutexLock lock(&pending_mu);
      pending_rounds[stats.round()] = stats;
      for (const auto& [round, pending] : pending_rounds) {
        *ckpt.add_pending_rounds() = pending;
      }
    }
    absl::Status s = run_store->WriteCheckpoint(ckpt);
    if (s.ok() && stats.round() == total_rounds) s = run_store->WriteFinalModel(model_spec, *model);
    if (!s.ok()) {
      EDGEFL_LOG_ERROR("could not write the checkpoint of round ", stats.round(), ": ",
                       s.ToString());
      worker_failed = true;
    }
  };
  // On the scheduler's worker thread, lagging behind the rounds while clients train: evaluation
  // and the round's metrics line.
  auto on_round_done = [&](const proto::RoundRecord& stats,
                           std::shared_ptr<const std::vector<float>> model) {
    RoundMetrics m;
    m.stats = stats;
    evaluate_round(*model, &m);
    absl::Status s = run_store->AppendMetrics(m);
    if (s.ok()) {
      absl::MutexLock lock(&pending_mu);
      pending_rounds.erase(stats.round());
    } else {
      EDGEFL_LOG_ERROR("could not write the metrics of round ", stats.round(), ": ", s.ToString());
      worker_failed = true;
    }
    EDGEFL_LOG_INFO(absl::StrFormat(
        "round %d/%d: test_accuracy %s test_loss %s clients %d/%d (failed %d) round %.1fs eval "
        "%.1fs up %.1f MB down %.1f MB",
        stats.round(), total_rounds,
        m.test_accuracy ? absl::StrFormat("%.4f", *m.test_accuracy) : "-",
        m.test_loss ? absl::StrFormat("%.4f", *m.test_loss) : "-", stats.clients_reported(),
        stats.clients_selected(), stats.clients_failed(), stats.round_seconds(), m.eval_seconds,
        stats.bytes_up() / 1e6, stats.bytes_down() / 1e6));
  };

  absl::StatusOr<std::unique_ptr<aggregation::Strategy>> strategy =
      aggregation::CreateFedAvg(weights.size());
  if (!strategy.ok()) ExitUsageError(kProgram, std::string(strategy.status().message()));
  RoundScheduler::Options sched_opts;
  sched_opts.config = config;
  sched_opts.spec = *spec;
  sched_opts.completed_rounds = completed;
  sched_opts.weights = std::move(weights);
  sched_opts.on_round_closed = on_round_closed;
  absl::StatusOr<std::unique_ptr<RoundScheduler>> scheduler =
      RoundScheduler::Create(std::move(sched_opts), &registry, std::move(*strategy),
                             on_round_done, Clock::Real());
  if (!scheduler.ok()) ExitUsageError(kProgram, std::string(scheduler.status().message()));

  CoordinatorService::Options svc_opts;
  svc_opts.checkin_poll = absl::Seconds(f.poll_seconds);
  CoordinatorService service(svc_opts, *spec, &registry, scheduler->get(), access->get());

  GrpcServerOptions grpc_opts;
  grpc_opts.listen = f.listen;
  grpc_opts.credentials = transport->credentials;
  grpc_opts.max_message_mb = f.max_message_mb;
  absl::StatusOr<StartedGrpcServer> grpc_server = StartGrpcServer(grpc_opts, {&service});
  if (!grpc_server.ok()) {
    EDGEFL_LOG_ERROR(grpc_server.status().message());
    ExitUsageError(kProgram, std::string(grpc_server.status().message()));
  }
  std::unique_ptr<grpc::Server> server = std::move(grpc_server->server);
  const int port = grpc_server->port;
  if (!f.port_file.empty()) {
    if (absl::Status s = WriteFileAtomically(f.port_file, absl::StrCat(port, "\n")); !s.ok()) {
      EDGEFL_LOG_ERROR(s.ToString());
      return 2;
    }
  }
  if (f.insecure) {
    EDGEFL_LOG_WARN(
        "--insecure: serving PLAINTEXT; updates, models and credentials travel "
        "unencrypted and unauthenticated. Use --tls_cert/--tls_key outside a trusted "
        "network.");
  }
  EDGEFL_LOG_INFO("serving ", transport->description, " on ",
                  f.listen.substr(0, f.listen.rfind(':')), ":", port, "; model ", config.model(),
                  " (", models::NumParameters(*spec), " parameters), ", config.rounds(),
                  " rounds, output ", store->dir());

  std::thread signal_thread([&] {
    int sig = 0;
    sigwait(&signals, &sig);
    if (sig == SIGINT || sig == SIGTERM) {
      EDGEFL_LOG_WARN("signal ", sig, ": shutting down");
      (*scheduler)->Shutdown();
    }
  });
  signal_thread.detach();

  absl::Status run = (*scheduler)->Run();
  if (run.ok()) {
    // Tell polling clients that the run is over before going away (bounded).
    const absl::Time until = absl::Now() + absl::Seconds(f.finish_grace_seconds);
    // A run resumed with every round already closed starts with an empty registry: it waits
    // (within the grace) for as many clients as a round needs to come back for the news.
    const int64_t returning = completed >= total_rounds ? config.sampling().min_clients() : 0;
    while (absl::Now() < until &&
           service.finished_notices() <
               std::max(returning, static_cast<int64_t>(registry.Eligible().size()))) {
      absl::SleepFor(absl::Milliseconds(100));
    }
  }
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  if (!run.ok()) {
    EDGEFL_LOG_ERROR("run stopped: ", run.ToString());
    return absl::IsCancelled(run) ? 130 : 1;
  }
  if (worker_failed) return 1;
  std::printf("fl-server: %lld rounds done. Metrics: %s  Final model: %s  Checkpoint: %s\n",
              static_cast<long long>(total_rounds), store->Path(RunStore::kMetricsFile).c_str(),
              store->Path(RunStore::kFinalModelFile).c_str(),
              store->Path(RunStore::kCheckpointFile).c_str());
  return 0;
}

}  // namespace
}  // namespace edgefl::server

int main(int argc, char** argv) { return edgefl::server::Main(argc, argv); }
