#include "client/client_flags.h"

#include <sys/resource.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "client/budgets.h"
#include "client/coordinator.h"
#include "common/clock.h"
#include "common/file_util.h"
#include "common/log.h"
#include "common/memory.h"
#include "common/pem.h"
#include "common/status_macros.h"
#include "common/threads.h"
#include "data/device_data.h"

namespace edgefl::client {
namespace {

constexpr char kTokenEnvVar[] = "EDGEFL_ENROLLMENT_TOKEN";

// A usage error carrying `s`'s message.
absl::Status Usage(const absl::Status& s) { return absl::InvalidArgumentError(s.message()); }

}  // namespace

const char kClientDescription[] =
    "The edgefl device runtime: joins a coordinator, waits for tasks, fine-tunes the\n"
    "global model on local data that never leaves the device, and uploads the\n"
    "update. Exits 0 when the coordinator says the federation is finished (or, with\n"
    "--after_finish=wait, stays and takes part in the next run).\n\n"
    "  fl-client --server host:50051 --ca_cert ca.pem --data fmnist --partition-file F \\\n"
    "            --client-index 3\n"
    "  fl-client --server host:50051 --ca_cert ca.pem --token_file device.token \\\n"
    "            --partition dirichlet:0.5 --num-partitions 10 --client-index 3 --seed 0\n"
    "  fl-client --server host:50051 --ca_cert ca.pem --tls_cert client-3.pem \\\n"
    "            --tls_key client-3.key ...      (mutual TLS)\n"
    "  fl-client --server localhost:50051 --insecure ...   (plaintext, trusted network)\n\n"
    "TLS is required unless --insecure is given. The enrollment token comes from\n"
    "--token_file or $EDGEFL_ENROLLMENT_TOKEN (never from the command line).";

void RegisterClientFlags(FlagSet& flags, ClientFlags* f) {
  flags.String("server", &f->server, "coordinator address host:port");
  data::RegisterShardFlags(flags, &f->shard, "seed of the partition and of local shuffling");
  flags.Int("threads", &f->threads, "torch and OpenBLAS compute threads");
  flags.Double("max_retry_seconds", &f->max_retry_seconds,
               "give up after the server has been unreachable this long");
  flags.Double("rpc_timeout", &f->rpc_timeout, "deadline of Join and the floor of Report (s)");
  flags.Int("max_message_mb", &f->max_message_mb, "gRPC message size limit, both directions");
  flags.String("progress", &f->progress,
               "training progress line: auto (on a terminal), always, never");
  flags.String("distill_to", &f->distill_to,
               "after each round it takes part in, distil the global model it trained from into a "
               "microcontroller student on the local data and export it (C library + manifest.json)"
               " to this folder; empty = off");
  flags.String("distill_student", &f->distill_student, "student architecture for --distill_to");
  flags.Int("distill_epochs", &f->distill_epochs, "distillation epochs per export");
  flags.Int("distill_samples", &f->distill_samples,
            "local images used per distillation (0 = all; distillation delays the next CheckIn)");
  flags.Bool("distill_final_only", &f->distill_final_only,
             "with --distill_to: distil once, from the federation's final global model (fetched "
             "when the coordinator says the run is finished), instead of after every round");
  flags.String("after_finish", &f->after_finish,
               "when the coordinator says the federation is finished: exit (code 0), or wait "
               "(check in every --after_finish_poll_seconds and take part in the next run; for a "
               "DaemonSet, which restarts a container that exits)");
  flags.Double("after_finish_poll_seconds", &f->after_finish_poll_seconds,
               "with --after_finish=wait: how often to check in for a new run");
  flags.Double("min_download_kib_per_second", &f->min_download_kib_per_second,
               "slowest model download to wait for: a CheckIn's deadline is the server's long "
               "poll + 15 s + the model's dense size at this rate (fedavg_cnn, 6.6 MB: +51 s at "
               "the default), so that a download that starts late in the poll, or shares the "
               "link with many devices, is not cut off and restarted");
  flags.String("state_dir", &f->state_dir,
               "folder for the device's state (the error-feedback residual survives restarts "
               "there); empty = keep it in memory only");
  flags.Bool("spill_model", &f->spill_model,
             "park the global model in an unlinked file in --state_dir while training (about "
             "-5 MiB of peak memory for fedavg_cnn, one model-sized write per round)");
  flags.Bool("insecure", &f->insecure,
             "plaintext (no TLS): only on a trusted network, never in production");
  flags.String("ca_cert", &f->ca_cert,
               "CA certificate (PEM) that signed the server's certificate; 'system' = the "
               "system roots");
  flags.String("tls_cert", &f->tls_cert, "client certificate (PEM) for mutual TLS");
  flags.String("tls_key", &f->tls_key, "its private key (PEM; refused if group/other can read it)");
  flags.String("tls_server_name", &f->tls_server_name,
               "name to verify the server certificate against instead of --server's host");
  flags.String("token_file", &f->token_file,
               "file holding this device's enrollment token (default $EDGEFL_ENROLLMENT_TOKEN); "
               "refused if group/other can read it");
  flags.Int("min_battery_percent", &f->min_battery_percent,
            "decline a round's task when the battery is below this percentage (boards with a "
            "battery only; an unreadable level declines); 0 = no condition");
  flags.Double("max_temperature_c", &f->max_temperature_c,
               "decline a task when the hottest /sys/class/thermal zone is above this (degrees C; "
               "unreadable declines); 0 = no condition");
  flags.Bool("require_charging", &f->require_charging,
             "decline a task while a battery is not charging (mains-powered boards always take it)");
  flags.Double("max_load_per_core", &f->max_load_per_core,
               "decline a task while the 1-minute load average per core is above this (the board "
               "is busy with its real work); 0 = no condition");
  flags.String("train_window", &f->train_window,
               "train only in this daily local-time window, HH:MM-HH:MM (may wrap midnight, e.g. "
               "22:00-06:00); tasks outside it are declined; empty = any time");
  flags.Int("max_rss_mb", &f->max_rss_mb,
            "budget for a round's peak resident memory: the batch is halved until the estimate "
            "fits (logged), and the task declined when even batch 1 does not; 0 = none");
  flags.Int("nice", &f->nice,
            "scheduling niceness 0..19 for the whole client (training yields the CPU to the "
            "board's own work; rounds take longer when it is busy)");
  flags.String("device_state_root", &f->device_state_root,
               "where sys/class/power_supply, sys/class/thermal and proc/ are read from (a "
               "container that bind-mounts the host's /sys and /proc elsewhere; tests)");
  flags.Double("max_upload_kbps", &f->max_upload_kbps,
               "cap on the update upload's average rate in kilobits/s (a slow upload can miss the "
               "round's deadline); 0 = none");
}

absl::Status ValidateClientFlags(const ClientFlags& f) {
  if (f.threads < 1) return absl::InvalidArgumentError("--threads must be >= 1");
  if (f.min_battery_percent < 0 || f.min_battery_percent > 100) {
    return absl::InvalidArgumentError("--min_battery_percent must be in 0..100");
  }
  if (!(f.max_temperature_c >= 0 && f.max_temperature_c < 1000)) {
    return absl::InvalidArgumentError("--max_temperature_c must be >= 0 (degrees C)");
  }
  if (!(f.max_load_per_core >= 0 && std::isfinite(f.max_load_per_core))) {
    return absl::InvalidArgumentError("--max_load_per_core must be >= 0");
  }
  if (!f.train_window.empty()) {
    if (absl::StatusOr<TrainWindow> w = ParseTrainWindow(f.train_window); !w.ok()) return w.status();
  }
  if (f.max_rss_mb < 0) return absl::InvalidArgumentError("--max_rss_mb must be >= 0");
  if (f.nice < 0 || f.nice > 19) return absl::InvalidArgumentError("--nice must be in 0..19");
  if (!(f.max_upload_kbps >= 0 && std::isfinite(f.max_upload_kbps))) {
    return absl::InvalidArgumentError("--max_upload_kbps must be >= 0 (kilobits/s)");
  }
  if (absl::Status s = data::ValidateShardFlags(f.shard); !s.ok()) return s;
  if (f.progress != "auto" && f.progress != "always" && f.progress != "never") {
    return absl::InvalidArgumentError("--progress must be auto, always or never");
  }
  if (f.after_finish != "exit" && f.after_finish != "wait") {
    return absl::InvalidArgumentError(
        absl::StrCat("--after_finish must be exit or wait, not '", f.after_finish, "'"));
  }
  if (!(f.after_finish_poll_seconds >= 1 && f.after_finish_poll_seconds <= 86400)) {
    return absl::InvalidArgumentError("--after_finish_poll_seconds must be in 1..86400");
  }
  if (!IsValidMinDownloadRate(f.min_download_kib_per_second)) {
    return absl::InvalidArgumentError("--min_download_kib_per_second must be >= 1");
  }
  if (f.distill_final_only && f.distill_to.empty()) {
    return absl::InvalidArgumentError("--distill_final_only needs --distill_to");
  }
  if (f.distill_epochs < 1) return absl::InvalidArgumentError("--distill_epochs must be >= 1");
  if (f.distill_samples < 0) return absl::InvalidArgumentError("--distill_samples must be >= 0");
  if (!f.distill_to.empty()) {
    // Fail now, not after the first round: an unknown student, one over budget, or a folder that
    // cannot be written.
    if (absl::Status s = students::CheckDistillTarget(DistillOptionsFromFlags(f), f.distill_to);
        !s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("--distill_to: ", s.message()));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<CoordinatorClient::Options> CoordinatorOptionsFromFlags(const ClientFlags& f) {
  CoordinatorClient::Options opts;
  opts.target = f.server;
  opts.rpc_timeout = absl::Seconds(f.rpc_timeout);
  opts.max_message_mb = f.max_message_mb;
  opts.max_upload_kbps = f.max_upload_kbps;
  const bool any_tls =
      !f.ca_cert.empty() || !f.tls_cert.empty() || !f.tls_key.empty() || !f.tls_server_name.empty();
  if (f.insecure) {
    if (any_tls) {
      return absl::InvalidArgumentError(
          "--insecure cannot be combined with --ca_cert, --tls_cert, --tls_key or "
          "--tls_server_name");
    }
    opts.insecure = true;
    return opts;
  }
  if (f.ca_cert.empty()) {
    return absl::InvalidArgumentError(
        "no CA certificate to verify the server with: pass --ca_cert (the CA that signed the "
        "server's certificate; 'system' for the system roots), or --insecure for plaintext on a "
        "trusted network");
  }
  if (f.ca_cert != "system") {
    absl::StatusOr<std::string> ca = ReadPemCertificates(f.ca_cert, "--ca_cert");
    if (!ca.ok()) return Usage(ca.status());
    opts.ca_cert_pem = std::move(*ca);
  }
  if (f.tls_cert.empty() != f.tls_key.empty()) {
    return absl::InvalidArgumentError(
        "--tls_cert and --tls_key go together (the client certificate for mutual TLS and its "
        "private key)");
  }
  if (!f.tls_cert.empty()) {
    absl::StatusOr<std::string> cert = ReadPemCertificates(f.tls_cert, "--tls_cert");
    if (!cert.ok()) return Usage(cert.status());
    absl::StatusOr<std::string> key = ReadPemPrivateKey(f.tls_key, "--tls_key");
    if (!key.ok()) return Usage(key.status());
    opts.client_cert_pem = std::move(*cert);
    opts.client_key_pem = std::move(*key);
  }
  opts.tls_server_name = f.tls_server_name;
  return opts;
}

absl::StatusOr<std::string> LoadEnrollmentToken(const ClientFlags& f) {
  std::string token;
  if (!f.token_file.empty()) {
    absl::StatusOr<std::string> text = ReadPrivateFile(f.token_file, "enrollment token file");
    if (!text.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("--token_file: ", text.status().message()));
    }
    token = std::move(*text);
  } else if (const char* env = std::getenv(kTokenEnvVar); env != nullptr) {
    token = env;
  }
  token = std::string(absl::StripAsciiWhitespace(token));
  if (token.find_first_of(" \t\r\n") != std::string::npos) {
    return absl::InvalidArgumentError("the enrollment token must be a single token (one line)");
  }
  return token;
}

DeviceRuntime::Options RuntimeOptionsFromFlags(const ClientFlags& f, bool stderr_is_tty) {
  DeviceRuntime::Options o;
  o.server = f.server;
  o.client_index = f.shard.client_index;
  o.seed = static_cast<uint64_t>(f.shard.seed);
  o.threads = f.threads;
  o.max_unreachable = absl::Seconds(f.max_retry_seconds);
  o.show_progress = f.progress == "always" || (f.progress == "auto" && stderr_is_tty);
  o.state_dir = f.state_dir;
  o.spill_model = f.spill_model;
  o.distill_final_only = f.distill_final_only;
  if (f.after_finish == "wait") o.after_finish_poll = absl::Seconds(f.after_finish_poll_seconds);
  o.min_download_bytes_per_second = f.min_download_kib_per_second * 1024;
  o.profile = DescribeThisDevice();
  o.thresholds.min_battery_percent = f.min_battery_percent;
  o.thresholds.max_temperature_c = f.max_temperature_c;
  o.thresholds.require_charging = f.require_charging;
  o.thresholds.max_load_per_core = f.max_load_per_core;
  if (absl::StatusOr<TrainWindow> w = ParseTrainWindow(f.train_window); w.ok()) {
    o.train_window = *w;
  }
  o.max_rss_bytes = static_cast<int64_t>(f.max_rss_mb) << 20;
  auto reader = std::make_shared<DeviceStateReader>(f.device_state_root);
  o.device_state = [reader] { return reader->Read(); };
  return o;
}

students::DistillOptions DistillOptionsFromFlags(const ClientFlags& f) {
  students::DistillOptions o;
  o.student = f.distill_student;
  o.epochs = f.distill_epochs;
  o.max_samples = f.distill_samples;
  o.threads = f.threads;
  return o;
}

absl::StatusOr<std::unique_ptr<DeviceRuntime>> DeviceRuntimeFromFlags(const ClientFlags& f,
                                                                RunnerFactory runners) {
  ASSIGN_OR_RETURN(CoordinatorClient::Options rpc_opts, CoordinatorOptionsFromFlags(f));
  ASSIGN_OR_RETURN(const std::string enrollment_token, LoadEnrollmentToken(f));
  RETURN_IF_ERROR(ValidateClientFlags(f));
  SetLogTag(absl::StrCat("client-", f.shard.client_index));
  if (f.nice > 0 && setpriority(PRIO_PROCESS, 0, f.nice) != 0) {
    return absl::InvalidArgumentError(absl::StrCat("--nice ", f.nice, ": ", std::strerror(errno)));
  }
  SetBlasThreads(f.threads);
  TuneMallocForTraining();  // activations and gradients are reused from the heap (common/memory.h)
  // LibTorch's start-up (operator registration above all) touched tens of MiB of library pages
  // that nothing uses again; drop them before loading the shard.
  ReleaseIdleLibraryPages();
  absl::StatusOr<data::ImageDataset> data = data::LoadDeviceShard(data::ShardSourceFrom(f.shard));
  if (!data.ok()) return absl::InvalidArgumentError(data.status().message());
  if (data->size() == 0) return absl::InvalidArgumentError("the local shard is empty");
  if (!f.state_dir.empty()) {
    if (absl::Status s = MakeDirs(f.state_dir); !s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("--state_dir: ", s.message()));
    }
  }
  if (std::string expired = CertificateExpiredAt(rpc_opts.client_cert_pem); !expired.empty()) {
    EDGEFL_LOG_WARN("--tls_cert ", f.tls_cert, " expired at ", expired,
                    "; the server will refuse it");
  }
  if (f.insecure) {
    EDGEFL_LOG_WARN("--insecure: talking PLAINTEXT to ", f.server,
                    "; the model, the update and the credentials travel unencrypted and the "
                    "server is not authenticated");
  }
  std::unique_ptr<CoordinatorClient> rpc = CoordinatorClient::Create(rpc_opts);
  rpc->SetEnrollmentToken(enrollment_token);
  DeviceRuntime::Options opts = RuntimeOptionsFromFlags(f, isatty(STDERR_FILENO));
  // The session is kept across restarts only when an enrollment token pays for it.
  if (!enrollment_token.empty() && !f.state_dir.empty()) {
    opts.session_file = absl::StrCat(f.state_dir, "/client-", f.shard.client_index, ".session");
  }
  std::unique_ptr<Distiller> distiller;
  if (!f.distill_to.empty()) {
    distiller = NewExportingDistiller(DistillOptionsFromFlags(f),
                                      static_cast<uint64_t>(f.shard.seed), f.distill_to);
  }
  return DeviceRuntime::Create(opts, std::move(rpc), std::move(*data), Clock::Real(),
                               std::move(distiller), std::move(runners));
}

}  // namespace edgefl::client
