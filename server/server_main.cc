// fl-server: the edgefl coordinator. Wiring only: flags -> ServerOptions -> FlServer
// (server/fl_server.h), one status -> the exit code.
#include <pthread.h>
#include <signal.h>

#include <cstdio>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/flags.h"
#include "common/log.h"
#include "common/memory.h"
#include "common/status_macros.h"
#include "server/fl_server.h"
#include "server/report.h"
#include "server/server_flags.h"
#include "server/strategy_registry.h"
#include "server/test_set_evaluator.h"
#include "server/token_cli.h"

namespace edgefl::server {
namespace {

// The server a SIGINT / SIGTERM shuts down, while it exists.
absl::Mutex signal_mu;
FlServer* signal_target ABSL_GUARDED_BY(signal_mu) = nullptr;

absl::Status Serve(const ServerFlags& f, const sigset_t& signals) {
  ASSIGN_OR_RETURN(std::unique_ptr<FlServer> server,
                   FlServer::Start(ToServerOptions(f), CreateTestSetEvaluator, Clock::Real()));
  {
    absl::MutexLock lock(&signal_mu);
    signal_target = server.get();
  }
  std::thread([signals] {
    int sig = 0;
    sigwait(&signals, &sig);
    EDGEFL_LOG_WARN("signal ", sig, ": shutting down");
    absl::MutexLock lock(&signal_mu);
    if (signal_target != nullptr) signal_target->Shutdown();
  }).detach();
  absl::Status status = server->Run();
  absl::MutexLock lock(&signal_mu);
  signal_target = nullptr;
  return status;
}

// The one place a status becomes an exit code: 0, 2 with one line on stderr for usage errors,
// 130 after a signal, 1 for any other failure (already logged).
int ExitCode(const absl::Status& status) {
  if (status.ok()) return 0;
  if (IsUsageError(status)) {
    std::fprintf(stderr, "%s: %s\n", kServerProgram, std::string(status.message()).c_str());
    return 2;
  }
  return absl::IsCancelled(status) ? 130 : 1;
}

int Main(int argc, char** argv) {
  if (argc >= 2 && std::string(argv[1]) == "token") return RunTokenCommand(argc - 1, argv + 1);
  if (argc >= 2 && std::string(argv[1]) == "report") return RunReportCommand(argc - 1, argv + 1);
  if (argc >= 2 && std::string(argv[1]) == "strategies") {
    if (argc > 2) {
      std::fprintf(stderr, "%s strategies: takes no arguments\n", kServerProgram);
      return 2;
    }
    std::fputs(StrategiesHelp().c_str(), stdout);
    return 0;
  }
  ServerFlags f;
  FlagSet flags(kServerProgram, kServerDescription);
  DefineServerFlags(&flags, &f);
  flags.ParseOrExit(argc, argv);  // exits 2 with its own one-line message
  if (!flags.positional().empty()) {
    return ExitCode(AsUsageError(absl::InvalidArgumentError(
        absl::StrCat("unexpected argument '", flags.positional()[0], "'"))));
  }
  SetLogTag("server");
  // Uploads being assembled, snapshots and evaluation copies go back to the kernel when freed;
  // chunk buffers freed by many gRPC threads are reused instead of parked in per-thread arenas.
  TuneMallocForServing();
  // Block the termination signals in every thread (before any starts); Serve waits for them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  return ExitCode(Serve(f, signals));
}

}  // namespace
}  // namespace edgefl::server

int main(int argc, char** argv) { return edgefl::server::Main(argc, argv); }
