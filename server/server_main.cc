// fl-server: the edgefl coordinator. Wiring only: flags -> ServerOptions -> FlServer
// (server/fl_server.h), one status -> the exit code.
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

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

// SIGINT / SIGTERM arrive as a byte on this pipe. Blocking the signals in main is not enough:
// threads that libraries start before main (OpenBLAS's pool) keep them unblocked, and the kernel
// may deliver the signal there, whose default action ends the process with 143 before the server
// could stop in order (a finished run served with --after_finish=serve ends by SIGTERM). A handler
// runs in whichever thread the signal reaches and only writes to the pipe (async-signal-safe).
int signal_pipe[2] = {-1, -1};

extern "C" void OnTerminationSignal(int sig) {
  const int saved = errno;
  const char byte = static_cast<char>(sig);
  [[maybe_unused]] ssize_t n = write(signal_pipe[1], &byte, 1);
  errno = saved;
}

absl::Status InstallTerminationHandlers() {
  if (pipe2(signal_pipe, O_CLOEXEC) != 0) {
    return absl::InternalError(absl::StrCat("pipe: ", std::strerror(errno)));
  }
  struct sigaction action {};
  action.sa_handler = OnTerminationSignal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;
  for (int sig : {SIGINT, SIGTERM}) {
    if (sigaction(sig, &action, nullptr) != 0) {
      return absl::InternalError(absl::StrCat("sigaction: ", std::strerror(errno)));
    }
  }
  return absl::OkStatus();
}

absl::Status Serve(const ServerFlags& f) {
  ASSIGN_OR_RETURN(std::unique_ptr<FlServer> server,
                   FlServer::Start(ToServerOptions(f), CreateTestSetEvaluator, Clock::Real()));
  {
    absl::MutexLock lock(&signal_mu);
    signal_target = server.get();
  }
  std::thread([] {
    char sig = 0;
    while (read(signal_pipe[0], &sig, 1) < 0 && errno == EINTR) {
    }
    EDGEFL_LOG_WARN("signal ", static_cast<int>(sig), ": shutting down");
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
  if (absl::Status s = InstallTerminationHandlers(); !s.ok()) return ExitCode(s);
  return ExitCode(Serve(f));
}

}  // namespace
}  // namespace edgefl::server

int main(int argc, char** argv) { return edgefl::server::Main(argc, argv); }
