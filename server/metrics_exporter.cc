#include "server/metrics_exporter.h"

#include <cmath>

#include <unistd.h>

#include <cstdio>
#include <map>
#include <utility>
#include <vector>

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <limits>
#include <sstream>
#include <thread>

#include <prometheus/collectable.h>
#include <prometheus/metric_family.h>
#include <prometheus/text_serializer.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/numbers.h"
#include "absl/synchronization/mutex.h"
#include "common/log.h"

namespace edgefl::server {
namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

struct Histogram {
  std::vector<double> bounds;
  std::vector<uint64_t> counts;  // per bucket, not cumulative; last = +Inf
  uint64_t count = 0;
  double sum = 0;
  explicit Histogram(std::vector<double> b) : bounds(std::move(b)), counts(bounds.size() + 1) {}
  void Observe(double v) {
    size_t i = 0;
    while (i < bounds.size() && v > bounds[i]) ++i;
    ++counts[i];
    ++count;
    sum += v;
  }
};

ClientMetric Value(double v, std::vector<ClientMetric::Label> labels = {}) {
  ClientMetric m;
  m.label = std::move(labels);
  m.gauge.value = v;
  m.counter.value = v;
  return m;
}

MetricFamily Family(std::string name, std::string help, MetricType type,
                    std::vector<ClientMetric> metrics) {
  MetricFamily f;
  f.name = std::move(name);
  f.help = std::move(help);
  f.type = type;
  f.metric = std::move(metrics);
  return f;
}

MetricFamily HistogramFamily(std::string name, std::string help, const Histogram& h) {
  ClientMetric m;
  m.histogram.sample_count = h.count;
  m.histogram.sample_sum = h.sum;
  uint64_t cumulative = 0;
  for (size_t i = 0; i <= h.bounds.size(); ++i) {
    cumulative += h.counts[i];
    ClientMetric::Bucket b;
    b.cumulative_count = cumulative;
    b.upper_bound = i < h.bounds.size() ? h.bounds[i] : std::numeric_limits<double>::infinity();
    m.histogram.bucket.push_back(b);
  }
  return Family(std::move(name), std::move(help), MetricType::Histogram, {m});
}

// Resident set size (bytes) and CPU time (user + system seconds) of this process, from /proc.
void ProcessFigures(double* rss_bytes, double* cpu_seconds) {
  *rss_bytes = 0;
  *cpu_seconds = 0;
  if (FILE* f = std::fopen("/proc/self/statm", "r")) {
    long size = 0, resident = 0;
    if (std::fscanf(f, "%ld %ld", &size, &resident) == 2) {
      *rss_bytes = static_cast<double>(resident) * static_cast<double>(sysconf(_SC_PAGESIZE));
    }
    std::fclose(f);
  }
  if (FILE* f = std::fopen("/proc/self/stat", "r")) {
    char buf[4096];
    const size_t n = std::fread(buf, 1, sizeof(buf) - 1, f);
    std::fclose(f);
    buf[n] = '\0';
    // Fields after the command name (which may hold spaces) start after the last ')'.
    std::string rest(buf);
    const size_t close = rest.rfind(')');
    if (close != std::string::npos) {
      std::vector<std::string> fields = absl::StrSplit(rest.substr(close + 2), ' ');
      double utime = 0, stime = 0;  // fields 14 and 15 of stat; index 11 and 12 here
      if (fields.size() > 12 && absl::SimpleAtod(fields[11], &utime) &&
          absl::SimpleAtod(fields[12], &stime)) {
        *cpu_seconds = (utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
      }
    }
  }
}

}  // namespace

struct MetricsExporter::State {
  int64_t total_rounds = 0;
  int64_t closed_round = 0;     // last closed round
  int64_t evaluated_round = 0;  // last round with test figures
  int64_t line_round = 0;       // last round whose metrics line is written
  double rounds_closed = 0;     // by this process
  double failed_attempts = 0;
  // totals; refused (an update rejected as bad, which ends the client's part in the attempt)
  // is part of failed
  double clients_selected = 0, clients_reported = 0, clients_failed = 0, clients_refused = 0;
  double last_selected = 0, last_reported = 0, last_failed = 0, last_refused = 0;  // last round
  double bytes_up = 0, bytes_down = 0;
  double reports_repeated = 0;  // uploads repeating an accepted update (answered "accepted")
  std::map<std::string, double> rejected;
  double test_accuracy = 0, test_loss = 0, eval_seconds = 0;
  bool evaluated = false;
  // With aggregation.averaging the last evaluated line's global model figures (test_accuracy is
  // then the averaged model's); has_global is false for a line without them.
  double global_test_accuracy = 0, global_test_loss = 0;
  bool has_global = false;
  Histogram round_seconds{{1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800}};
  Histogram checkpoint_seconds{{0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10}};
  Histogram aggregation_seconds{{0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 60}};
  double dp_epsilon = 0;
  bool has_dp = false;
  Histogram evaluation_seconds{{0.1, 0.5, 1, 2, 5, 10, 30, 60, 120}};
};

class MetricsExporter::Collector : public prometheus::Collectable {
 public:
  Collector(State initial, std::function<int64_t()> registered)
      : state_(std::move(initial)), registered_(std::move(registered)) {}

  template <typename F>
  void Update(F f) {
    absl::MutexLock lock(&mu_);
    f(&state_);
  }

  std::vector<MetricFamily> Collect() const override {
    State s;
    {
      absl::MutexLock lock(&mu_);
      s = state_;
    }
    const double registered = registered_ ? static_cast<double>(registered_()) : 0;
    double rss = 0, cpu = 0;
    ProcessFigures(&rss, &cpu);
    const std::string p = "edgefl_server_";
    std::vector<MetricFamily> out;
    out.push_back(Family(p + "rounds_total", "rounds the run is configured for", MetricType::Gauge,
                         {Value(s.total_rounds)}));
    out.push_back(Family(p + "round", "last closed round", MetricType::Gauge, {Value(s.closed_round)}));
    out.push_back(Family(p + "rounds_closed_total", "rounds closed by this process",
                         MetricType::Counter, {Value(s.rounds_closed)}));
    out.push_back(HistogramFamily(p + "round_duration_seconds", "wall time of a round",
                                  s.round_seconds));
    out.push_back(Family(p + "round_failed_attempts_total",
                         "round attempts that failed and were retried (quorum or deadline)",
                         MetricType::Counter, {Value(s.failed_attempts)}));
    out.push_back(Family(p + "clients_registered", "clients registered and eligible now",
                         MetricType::Gauge, {Value(registered)}));
    out.push_back(Family(p + "round_clients", "clients of the last closed round, by state",
                         MetricType::Gauge,
                         {Value(s.last_selected, {{"state", "selected"}}),
                          Value(s.last_reported, {{"state", "reported"}}),
                          Value(s.last_failed, {{"state", "failed"}}),
                          Value(s.last_refused, {{"state", "refused"}})}));
    out.push_back(Family(p + "clients_total", "clients over the closed rounds, by state",
                         MetricType::Counter,
                         {Value(s.clients_selected, {{"state", "selected"}}),
                          Value(s.clients_reported, {{"state", "reported"}}),
                          Value(s.clients_failed, {{"state", "failed"}}),
                          Value(s.clients_refused, {{"state", "refused"}})}));
    std::vector<ClientMetric> rejected;
    for (const auto& [reason, n] : s.rejected) rejected.push_back(Value(n, {{"reason", reason}}));
    out.push_back(Family(p + "updates_rejected_total", "updates refused, by reason",
                         MetricType::Counter, std::move(rejected)));
    out.push_back(Family(p + "reports_repeated_total",
                         "uploads that repeated an update already accepted (a device that did not "
                         "hear its answer): answered accepted again, not folded in",
                         MetricType::Counter, {Value(s.reports_repeated)}));
    out.push_back(Family(p + "bytes_total", "model bytes sent to clients (down) and updates received (up)",
                         MetricType::Counter,
                         {Value(s.bytes_down, {{"direction", "down"}}),
                          Value(s.bytes_up, {{"direction", "up"}})}));
    out.push_back(HistogramFamily(p + "checkpoint_seconds", "time to write a round's checkpoint",
                                  s.checkpoint_seconds));
    out.push_back(HistogramFamily(p + "evaluation_seconds", "time to evaluate a global model",
                                  s.evaluation_seconds));
    out.push_back(HistogramFamily(p + "aggregation_seconds",
                                  "time to combine a round's updates and step the server optimizer",
                                  s.aggregation_seconds));
    if (s.has_dp) {
      out.push_back(Family(p + "dp_epsilon", "central DP epsilon spent so far (at aggregation.dp.delta)",
                           MetricType::Gauge, {Value(s.dp_epsilon, {})}));
    }
    out.push_back(Family(p + "evaluation_lag_rounds",
                         "closed rounds whose metrics line (evaluation) is not written yet",
                         MetricType::Gauge, {Value(s.closed_round - s.line_round)}));
    out.push_back(Family(p + "evaluated_round", "last round with test figures", MetricType::Gauge,
                         {Value(s.evaluated_round)}));
    if (s.evaluated) {
      out.push_back(Family(p + "test_accuracy", "top-1 accuracy of the last evaluated model",
                           MetricType::Gauge, {Value(s.test_accuracy)}));
      out.push_back(Family(p + "test_loss", "mean cross-entropy of the last evaluated model",
                           MetricType::Gauge, {Value(s.test_loss)}));
    }
    if (s.has_global) {
      out.push_back(Family(p + "global_test_accuracy",
                           "with aggregation.averaging: top-1 accuracy of the last evaluated round's "
                           "global model (test_accuracy is the averaged model's)",
                           MetricType::Gauge, {Value(s.global_test_accuracy)}));
      out.push_back(Family(p + "global_test_loss",
                           "with aggregation.averaging: mean cross-entropy of the last evaluated "
                           "round's global model",
                           MetricType::Gauge, {Value(s.global_test_loss)}));
    }
    out.push_back(Family("process_resident_memory_bytes", "resident memory size in bytes",
                         MetricType::Gauge, {Value(rss)}));
    out.push_back(Family("process_cpu_seconds_total", "user and system CPU time in seconds",
                         MetricType::Counter, {Value(cpu)}));
    return out;
  }

 private:
  mutable absl::Mutex mu_;
  State state_ ABSL_GUARDED_BY(mu_);
  const std::function<int64_t()> registered_;
};

// The HTTP side: one thread answering GET /metrics (HTTP/1.0, one request per connection) with
// prometheus-cpp's text serialization. Not civetweb (prometheus-cpp's pull library): its threads
// are created with a fixed small stack that cannot hold this process's static TLS (LibTorch,
// OpenBLAS), so pthread_create fails with EINVAL inside fl-server.
struct MetricsExporter::Server {
  int listen_fd = -1;
  int port = 0;
  std::atomic<bool> stop{false};
  std::thread thread;

  ~Server() {
    stop = true;
    if (thread.joinable()) thread.join();
    if (listen_fd >= 0) ::close(listen_fd);
  }

  void Serve(const Collector* collector) {
    while (!stop) {
      pollfd pfd{listen_fd, POLLIN, 0};
      if (::poll(&pfd, 1, 200) <= 0) continue;
      const int fd = ::accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) continue;
      timeval tv{2, 0};  // a slow or silent peer costs at most 2 s
      ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
      ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
      std::string request;
      char buf[2048];
      while (request.find("\r\n\r\n") == std::string::npos && request.size() < 8192) {
        const ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
        if (n <= 0) break;
        request.append(buf, static_cast<size_t>(n));
      }
      std::string response;
      if (absl::StartsWith(request, "GET /metrics ") || absl::StartsWith(request, "GET /metrics?")) {
        std::ostringstream body;
        prometheus::TextSerializer().Serialize(body, collector->Collect());
        response = absl::StrCat("HTTP/1.0 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n"
                                "Content-Length: ", body.str().size(), "\r\nConnection: close\r\n\r\n",
                                body.str());
      } else {
        response = "HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
      }
      size_t sent = 0;
      while (sent < response.size()) {
        const ssize_t n = ::send(fd, response.data() + sent, response.size() - sent, MSG_NOSIGNAL);
        if (n <= 0) break;
        sent += static_cast<size_t>(n);
      }
      ::close(fd);
    }
  }
};

absl::StatusOr<std::unique_ptr<MetricsExporter>> MetricsExporter::Create(Options options) {
  std::unique_ptr<MetricsExporter> e(new MetricsExporter);
  State initial;
  initial.total_rounds = options.total_rounds;
  initial.closed_round = options.completed_rounds;
  initial.line_round = options.completed_rounds;
  e->collector_ = std::make_shared<Collector>(initial, std::move(options.registered_clients));
  e->server_ = std::make_unique<Server>();
  const size_t colon = options.listen.rfind(':');
  int port = -1;
  std::string host = colon == std::string::npos ? "" : options.listen.substr(0, colon);
  if (colon == std::string::npos || !absl::SimpleAtoi(options.listen.substr(colon + 1), &port) ||
      port < 0 || port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("not host:port: '", options.listen, "'"));
  }
  if (host.empty() || host == "*") host = "0.0.0.0";
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  if (int rc = ::getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &found); rc != 0) {
    return absl::UnavailableError(absl::StrCat("could not listen on ", options.listen, ": ", gai_strerror(rc)));
  }
  int fd = -1;
  std::string why = "no address";
  for (addrinfo* a = found; a != nullptr && fd < 0; a = a->ai_next) {
    fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) continue;
    const int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (::bind(fd, a->ai_addr, a->ai_addrlen) != 0 || ::listen(fd, 16) != 0) {
      why = std::strerror(errno);
      ::close(fd);
      fd = -1;
    }
  }
  ::freeaddrinfo(found);
  if (fd < 0) return absl::UnavailableError(absl::StrCat("could not listen on ", options.listen, ": ", why));
  sockaddr_storage bound{};
  socklen_t len = sizeof(bound);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &len);
  e->server_->port = ntohs(bound.ss_family == AF_INET6
                               ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                               : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  e->server_->listen_fd = fd;
  Server* server = e->server_.get();
  const Collector* collector = e->collector_.get();
  server->thread = std::thread([server, collector] { server->Serve(collector); });
  return e;
}

MetricsExporter::~MetricsExporter() = default;

int MetricsExporter::port() const { return server_->port; }

void MetricsExporter::OnRoundClosed(const proto::RoundRecord& r, double checkpoint_seconds) {
  collector_->Update([&](State* s) {
    s->closed_round = std::max(s->closed_round, r.round());
    s->rounds_closed += 1;
    s->round_seconds.Observe(r.round_seconds());
    s->failed_attempts += std::max(0, r.attempts() - 1);
    s->clients_selected += r.clients_selected();
    s->clients_reported += r.clients_reported();
    s->clients_failed += r.clients_failed();
    s->clients_refused += r.clients_refused();
    s->last_selected = r.clients_selected();
    s->last_reported = r.clients_reported();
    s->last_failed = r.clients_failed();
    s->last_refused = r.clients_refused();
    s->bytes_up += static_cast<double>(r.bytes_up());
    s->bytes_down += static_cast<double>(r.bytes_down());
    s->reports_repeated += r.reports_repeated();
    for (const auto& [reason, n] : r.rejected()) s->rejected[reason] += static_cast<double>(n);
    s->checkpoint_seconds.Observe(checkpoint_seconds);
    s->aggregation_seconds.Observe(r.aggregation_seconds());
    if (r.has_dp_epsilon() && std::isfinite(r.dp_epsilon())) {
      s->has_dp = true;
      s->dp_epsilon = r.dp_epsilon();
    }
  });
}

void MetricsExporter::OnMetricsLine(const RoundMetrics& line) {
  collector_->Update([&](State* s) {
    s->line_round = std::max(s->line_round, line.stats.round());
    if (line.test_accuracy.has_value()) {
      s->evaluated = true;
      s->evaluated_round = line.stats.round();
      s->test_accuracy = *line.test_accuracy;
      s->test_loss = line.test_loss.value_or(0);
      s->has_global = line.global_test_accuracy.has_value();
      s->global_test_accuracy = line.global_test_accuracy.value_or(0);
      s->global_test_loss = line.global_test_loss.value_or(0);
      s->evaluation_seconds.Observe(line.eval_seconds);
    }
  });
}

}  // namespace edgefl::server
