// Helpers for end-to-end tests that start real fl-server / fl-client processes on 127.0.0.1.
#ifndef EDGEFL_TESTS_E2E_UTIL_H_
#define EDGEFL_TESTS_E2E_UTIL_H_

#include <sys/types.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "google/protobuf/struct.pb.h"

namespace edgefl::testing {

// Directory holding fl-server and fl-client (set by CMake).
std::string BinDir();
// A fresh temporary directory for one test (removed by the caller or left for debugging).
std::string MakeTempDir(const std::string& prefix);

// A child process with stdout and stderr redirected to `log_path`. Killed (SIGKILL) on destruction
// if still running.
class Subprocess {
 public:
  // `env` entries ("NAME=value") are added to the child's environment.
  Subprocess(std::vector<std::string> argv, std::string log_path,
             std::vector<std::string> env = {});
  ~Subprocess();
  Subprocess(const Subprocess&) = delete;
  Subprocess& operator=(const Subprocess&) = delete;

  pid_t pid() const { return pid_; }
  // Waits up to `timeout` for exit. Returns the exit code, 128+signal if killed by a signal, or -1
  // on timeout (the process keeps running).
  int Wait(absl::Duration timeout);
  void Signal(int sig);
  bool running();
  std::string Log() const;
  const std::string& log_path() const { return log_path_; }

 private:
  pid_t pid_ = -1;
  int exit_code_ = -1;
  bool exited_ = false;
  std::string log_path_;
};

// Polls `cond` every 50 ms until it is true or `timeout` passes; returns its last value.
bool WaitFor(const std::function<bool()>& cond, absl::Duration timeout);

std::string ReadFileOrEmpty(const std::string& path);
// Parses metrics.jsonl into one Struct per line (lines that fail to parse are skipped).
std::vector<google::protobuf::Struct> ReadJsonLines(const std::string& path);
double NumberField(const google::protobuf::Struct& s, const std::string& key, double dflt = -1);

// Starts fl-server with `args` plus --listen 127.0.0.1:<*port> (0 = any free port) and a port file
// in `dir`, logging to dir/<log_name>; waits (bounded) for the port file and stores the bound port
// in *port (0 if the server did not come up). Plaintext (--insecure is added) unless `args`
// choose the transport themselves (a --tls_* or --client_ca flag, or --insecure / --noinsecure).
std::unique_ptr<Subprocess> StartServer(const std::vector<std::string>& args,
                                        const std::string& dir, const std::string& log_name,
                                        int* port);
// Starts fl-client against 127.0.0.1:port with `args`, logging to dir/<log_name>. Plaintext
// (--insecure is added) unless `args` choose the transport (--ca_cert, --tls_*, --insecure or
// --noinsecure).
std::unique_ptr<Subprocess> StartClient(int port, const std::vector<std::string>& args,
                                        const std::string& dir, const std::string& log_name);

// Whether `args` hold a flag that starts with one of `prefixes` (e.g. "--tls_").
bool HasFlag(const std::vector<std::string>& args, const std::vector<std::string>& prefixes);

// A development PKI made by deploy/certs/make-dev-certs.sh in `dir`: ca.pem/.key,
// server.pem/.key (SAN 127.0.0.1, localhost), client-<i>.pem/.key. Returns false (with the
// script's output in *log) if the script failed.
bool MakeDevCerts(const std::string& dir, int clients, std::string* log);
// Adds one client certificate named `name` signed by dir's CA, valid for `days` (negative: already
// expired).
bool AddDevClientCert(const std::string& dir, const std::string& name, int days, std::string* log);
// Runs a program to completion (bounded by `timeout`) with stdout+stderr captured in *output;
// returns its exit code (-1 on timeout). `env` entries ("NAME=value") are added to the
// environment.
int RunProgram(const std::vector<std::string>& argv, std::string* output,
               absl::Duration timeout = absl::Seconds(60),
               const std::vector<std::string>& env = {});
// A loopback port that was free a moment ago (for a server to bind right after), 0 if none.
int FreePort();
// GET http://127.0.0.1:port/metrics (HTTP/1.0, bounded): the body, or "" when nothing answers.
std::string ScrapeMetrics(int port);
// The source tree root (set by CMake).
std::string SourceDir();

}  // namespace edgefl::testing

#endif  // EDGEFL_TESTS_E2E_UTIL_H_
