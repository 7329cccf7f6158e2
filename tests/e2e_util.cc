#include "tests/e2e_util.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <google/protobuf/util/json_util.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"

namespace edgefl::testing {

std::string BinDir() { return EDGEFL_BIN_DIR; }
std::string SourceDir() { return EDGEFL_SOURCE_DIR; }

bool HasFlag(const std::vector<std::string>& args, const std::vector<std::string>& prefixes) {
  for (const std::string& a : args) {
    for (const std::string& p : prefixes) {
      if (a.rfind(p, 0) == 0) return true;
    }
  }
  return false;
}

std::string MakeTempDir(const std::string& prefix) {
  const char* base = getenv("TMPDIR");
  std::string tmpl = absl::StrCat(base != nullptr ? base : "/tmp", "/", prefix, "-XXXXXX");
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  char* dir = mkdtemp(buf.data());
  return dir != nullptr ? std::string(dir) : std::string();
}

Subprocess::Subprocess(std::vector<std::string> argv, std::string log_path,
                       std::vector<std::string> env)
    : log_path_(std::move(log_path)) {
  pid_ = fork();
  if (pid_ == 0) {
    for (std::string& e : env) putenv(e.data());  // the child's own copy of the strings
    int fd = open(log_path_.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
      dup2(fd, STDOUT_FILENO);
      dup2(fd, STDERR_FILENO);
      close(fd);
    }
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    execv(args[0], args.data());
    _exit(127);
  }
}

Subprocess::~Subprocess() {
  if (pid_ > 0 && !exited_) {
    kill(pid_, SIGKILL);
    Wait(absl::Seconds(10));
  }
}

int Subprocess::Wait(absl::Duration timeout) {
  if (exited_) return exit_code_;
  const absl::Time until = absl::Now() + timeout;
  while (true) {
    int status = 0;
    pid_t r = waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      exited_ = true;
      exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      return exit_code_;
    }
    if (r < 0 || absl::Now() >= until) return -1;
    absl::SleepFor(absl::Milliseconds(20));
  }
}

void Subprocess::Signal(int sig) {
  if (pid_ > 0 && !exited_) kill(pid_, sig);
}

bool Subprocess::running() { return Wait(absl::ZeroDuration()) == -1 && !exited_; }

std::string Subprocess::Log() const { return ReadFileOrEmpty(log_path_); }

bool WaitFor(const std::function<bool()>& cond, absl::Duration timeout) {
  const absl::Time until = absl::Now() + timeout;
  while (true) {
    if (cond()) return true;
    if (absl::Now() >= until) return cond();
    absl::SleepFor(absl::Milliseconds(50));
  }
}

std::string ReadFileOrEmpty(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<google::protobuf::Struct> ReadJsonLines(const std::string& path) {
  std::vector<google::protobuf::Struct> out;
  for (absl::string_view line : absl::StrSplit(ReadFileOrEmpty(path), '\n', absl::SkipEmpty())) {
    google::protobuf::Struct s;
    if (google::protobuf::util::JsonStringToMessage(std::string(line), &s).ok()) {
      out.push_back(std::move(s));
    }
  }
  return out;
}

double NumberField(const google::protobuf::Struct& s, const std::string& key, double dflt) {
  auto it = s.fields().find(key);
  if (it == s.fields().end() || !it->second.has_number_value()) return dflt;
  return it->second.number_value();
}

std::unique_ptr<Subprocess> StartServer(const std::vector<std::string>& args,
                                        const std::string& dir, const std::string& log_name,
                                        int* port) {
  const std::string port_file = absl::StrCat(dir, "/", log_name, ".port");
  unlink(port_file.c_str());
  std::vector<std::string> argv = {BinDir() + "/fl-server",
                                   absl::StrCat("--listen=127.0.0.1:", *port),
                                   "--port_file=" + port_file};
  if (!HasFlag(args, {"--tls_", "--client_ca", "--insecure", "--noinsecure"})) {
    argv.push_back("--insecure");
  }
  argv.insert(argv.end(), args.begin(), args.end());
  auto proc = std::make_unique<Subprocess>(argv, absl::StrCat(dir, "/", log_name));
  *port = 0;
  WaitFor(
      [&] {
        int p = 0;
        std::string text(absl::StripTrailingAsciiWhitespace(ReadFileOrEmpty(port_file)));
        if (absl::SimpleAtoi(text, &p) && p > 0) *port = p;
        return *port > 0 || !proc->running();
      },
      absl::Seconds(60));
  return proc;
}

std::unique_ptr<Subprocess> StartClient(int port, const std::vector<std::string>& args,
                                        const std::string& dir, const std::string& log_name) {
  std::vector<std::string> argv = {BinDir() + "/fl-client",
                                   absl::StrCat("--server=127.0.0.1:", port), "--progress=never"};
  if (!HasFlag(args, {"--ca_cert", "--tls_", "--insecure", "--noinsecure"})) {
    argv.push_back("--insecure");
  }
  argv.insert(argv.end(), args.begin(), args.end());
  return std::make_unique<Subprocess>(argv, absl::StrCat(dir, "/", log_name));
}

int RunProgram(const std::vector<std::string>& argv, std::string* output, absl::Duration timeout,
               const std::vector<std::string>& env) {
  const std::string dir = MakeTempDir("edgefl-run");
  Subprocess p(argv, dir + "/out.log", env);
  const int code = p.Wait(timeout);
  *output = p.Log();
  return code;
}

bool MakeDevCerts(const std::string& dir, int clients, std::string* log) {
  return RunProgram({"/bin/bash", SourceDir() + "/deploy/certs/make-dev-certs.sh", dir,
                     absl::StrCat(clients)},
                    log) == 0;
}

bool AddDevClientCert(const std::string& dir, const std::string& name, int days, std::string* log) {
  return RunProgram({"/bin/bash", SourceDir() + "/deploy/certs/make-dev-certs.sh", "--add-client",
                     name, dir},
                    log, absl::Seconds(60), {absl::StrCat("DAYS=", days)}) == 0;
}

int FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    close(fd);
    return 0;
  }
  close(fd);
  return ntohs(addr.sin_port);
}

std::string ScrapeMetrics(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  timeval tv{5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return "";
  }
  const std::string request = "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
  if (write(fd, request.data(), request.size()) != static_cast<ssize_t>(request.size())) {
    close(fd);
    return "";
  }
  std::string reply;
  char buf[4096];
  for (int i = 0; i < 4096; ++i) {  // bounded: at most 16 MiB
    const ssize_t n = read(fd, buf, sizeof(buf));
    if (n <= 0) break;
    reply.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  const size_t body = reply.find("\r\n\r\n");
  return body == std::string::npos ? "" : reply.substr(body + 4);
}

}  // namespace edgefl::testing
