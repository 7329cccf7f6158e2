// fl-server's Prometheus endpoint (--metrics_listen): the run's figures as they happen, fed from
// the few places a round's record is final (the scheduler closing a round, the recorder writing
// its metrics line) and read at scrape time from one consistent snapshot. Torch-free.
#ifndef EDGEFL_SERVER_METRICS_EXPORTER_H_
#define EDGEFL_SERVER_METRICS_EXPORTER_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "protos/edgefl.pb.h"
#include "server/run_store.h"

namespace edgefl::server {

class MetricsExporter {
 public:
  struct Options {
    std::string listen;        // host:port; port 0 picks a free one (port())
    int64_t total_rounds = 0;  // the config's rounds
    int64_t completed_rounds = 0;  // closed before this process (resume)
    // Clients currently registered (the registry's eligible count), read at scrape time; may be
    // null. Called from the HTTP server's threads: must be thread-safe.
    std::function<int64_t()> registered_clients;
  };

  // Serves GET /metrics in Prometheus' text format on options.listen. UNAVAILABLE "could not
  // listen on <listen>: ..." when the address cannot be bound.
  static absl::StatusOr<std::unique_ptr<MetricsExporter>> Create(Options options);
  ~MetricsExporter();

  // Thread-safe. A round closed (after its checkpoint was written in `checkpoint_seconds`).
  void OnRoundClosed(const proto::RoundRecord& record, double checkpoint_seconds);
  // Thread-safe. A round's metrics line was written (with its evaluation, if it had one).
  void OnMetricsLine(const RoundMetrics& line);

  int port() const;

  struct State;
  class Collector;

 private:
  MetricsExporter() = default;
  std::shared_ptr<Collector> collector_;
  struct Server;
  std::unique_ptr<Server> server_;
};

}  // namespace edgefl::server

#endif  // EDGEFL_SERVER_METRICS_EXPORTER_H_
