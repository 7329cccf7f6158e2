// fl-client's command line: the flags, their checks, and the objects they configure. Kept out of
// client_main.cc so that main is wiring only; every error here is a usage error (the binary
// prints it as one line "fl-client: <message>" and exits 2).
#ifndef EDGEFL_CLIENT_CLIENT_FLAGS_H_
#define EDGEFL_CLIENT_CLIENT_FLAGS_H_

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "client/coordinator_client.h"
#include "client/device_runtime.h"
#include "data/shard_flags.h"
#include "common/channel_args.h"
#include "common/flags.h"
#include "students/distill.h"

namespace edgefl::client {

// Defaults are the flags' defaults.
struct ClientFlags {
  std::string server = "localhost:50051";
  data::ShardFlags shard;  // --data ... --seed
  int threads = 1;
  double max_retry_seconds = 900;
  double rpc_timeout = 60;
  int max_message_mb = channel_args::kDefaultMaxMessageMb;
  std::string progress = "auto";
  std::string state_dir = "edgefl-state";
  std::string distill_to;
  std::string distill_student = "student_tiny";
  int distill_epochs = 3;
  int distill_samples = 3000;
  bool distill_final_only = false;
  bool spill_model = true;
  std::string after_finish = "exit";
  double after_finish_poll_seconds = 60;
  double min_download_kib_per_second = kDefaultMinDownloadBytesPerSecond / 1024;
  // Transport security and credentials.
  bool insecure = false;
  std::string ca_cert;
  std::string tls_cert;
  std::string tls_key;
  std::string tls_server_name;
  std::string token_file;
  // When the device takes a task (client/device_state.h) and its budgets (client/budgets.h).
  int min_battery_percent = 0;
  double max_temperature_c = 0;
  bool require_charging = false;
  double max_load_per_core = 0;
  std::string train_window;
  int max_rss_mb = 0;
  int nice = 0;
  double max_upload_kbps = 0;
  std::string device_state_root = "/";
};

// fl-client's --help text above the flag list.
extern const char kClientDescription[];

// Registers every fl-client flag on `flags`, writing into `*f` (which must outlive `flags`).
void RegisterClientFlags(FlagSet& flags, ClientFlags* f);

// Checks the values no run can use (INVALID_ARGUMENT "--threads must be >= 1", ...; the
// --distill_to target is checked too: unknown student, over budget, folder not writable).
absl::Status ValidateClientFlags(const ClientFlags& f);

// The coordinator stub's options: address, deadlines, message limit, and the transport
// (--insecure, or TLS with --ca_cert and optionally --tls_cert/--tls_key for mutual TLS; the
// PEM files are read here). Errors name the flag.
absl::StatusOr<CoordinatorClient::Options> CoordinatorOptionsFromFlags(const ClientFlags& f);

// The enrollment token from --token_file or $EDGEFL_ENROLLMENT_TOKEN ("" when neither is given).
absl::StatusOr<std::string> LoadEnrollmentToken(const ClientFlags& f);

// The device loop's options (the profile is this machine's; session_file is left empty).
DeviceRuntime::Options RuntimeOptionsFromFlags(const ClientFlags& f, bool stderr_is_tty);

// Everything from the flags to a device loop ready to run on the real clock over gRPC: checks the
// flags (in the order above), sets the process up for training (log tag, BLAS threads, malloc),
// loads the shard, creates --state_dir, and wires in the session file and the --distill_to
// distiller. Every error is a usage error. `runners` replaces the real ModelRunner (tests and
// benchmarks only: tests/fl_adversary.cc).
absl::StatusOr<std::unique_ptr<DeviceRuntime>> DeviceRuntimeFromFlags(const ClientFlags& f,
                                                                RunnerFactory runners = nullptr);

// The distillation the --distill_* flags ask for (student, epochs, samples, threads).
students::DistillOptions DistillOptionsFromFlags(const ClientFlags& f);

}  // namespace edgefl::client

#endif  // EDGEFL_CLIENT_CLIENT_FLAGS_H_
