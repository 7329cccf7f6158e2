// fl-server as a library: start-up from options (transport, secret, run, evaluation, access
// control, scheduler, gRPC), the run, and the orderly end. server_main.cc only parses flags,
// calls this and maps the status to an exit code.
#ifndef EDGEFL_SERVER_FL_SERVER_H_
#define EDGEFL_SERVER_FL_SERVER_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/channel_args.h"
#include "common/clock.h"
#include "protos/config.pb.h"
#include "server/run.h"
#include "server/transport.h"
#include "server/upstream_link.h"

namespace edgefl::server {

struct ServerOptions {
  RunOptions run;              // what to run: fresh or resumed, config, overrides, output folder
  TransportOptions transport;  // TLS or --insecure
  std::string listen = "0.0.0.0:50051";  // port 0 picks a free port
  int max_message_mb = channel_args::kDefaultMaxMessageMb;
  std::string port_file;             // "" = none; else the bound port is written there once serving
  // "" = off; else host:port of a PLAINTEXT server carrying only grpc.health.v1.Health (SERVING
  // while the run is served), for Kubernetes' native gRPC probes, which cannot speak TLS.
  std::string health_listen;
  // "" = off; else host:port serving Prometheus metrics on GET /metrics (server/metrics_exporter.h).
  std::string metrics_listen;
  // With metrics_listen: how long /metrics stays up after the run (0 = not at all).
  double metrics_linger_seconds = 0;
  double lease_seconds = 300;        // a client unseen this long is dropped
  double poll_seconds = 20;          // how long a CheckIn long poll is held
  double finish_grace_seconds = 10;  // after the last round, how long to tell clients it is over
  // What Run() does once every round is done (also for a resumed run that was done already):
  // "exit" tells polling clients for finish_grace_seconds and returns; "serve" keeps serving
  // until Shutdown() (SIGTERM): CheckIn answers `finished`, health stays SERVING, metrics stay
  // up. "serve" is for a Deployment, which restarts a container that exits, even with 0.
  std::string after_finish = "exit";
  // Client identity and limits (server/access_control.h).
  std::string secret_file;  // "" = $EDGEFL_SERVER_SECRET or none (open enrollment)
  std::string token_uses;   // "" = <out>/token_uses
  std::string revoked;      // "" = <out>/revoked_tokens
  std::string session_ttl = "24h";
  double join_per_minute = 30;
  double checkin_per_minute = 60;
  int64_t max_update_bytes_per_round = 0;  // 0 = 4 x the dense model size + 1 MiB
  // Uploads received at once; more are refused RESOURCE_EXHAUSTED with a retry hint (>= 1).
  int max_concurrent_uploads = 4;
  // Rounds closed but not yet evaluated before the next round waits (each holds a model copy);
  // 0 = no bound (RoundScheduler::Options::max_evaluation_backlog).
  int max_evaluation_backlog = 16;
  // An upload that sends nothing for this long is cancelled and counted "report_stalled" (> 0).
  double upload_stall_seconds = 30;
  // Memory gRPC's transport may hold for all connections, MiB (0 = unbounded); see
  // GrpcServerOptions::max_transport_mb.
  int max_transport_mb = 64;
  // Set (address non-empty): run as a regional aggregator of that upstream coordinator
  // (server/upstream_link.h): rounds come from upstream, the config's aggregation must only
  // average (CheckAggregatorConfig), and there is no evaluation, checkpoint or resume here.
  UpstreamOptions upstream;
};

// Builds the evaluator of a run (server/test_set_evaluator.h CreateTestSetEvaluator in fl-server).
using EvaluatorFactory =
    std::function<absl::StatusOr<std::unique_ptr<Evaluator>>(const proto::ExperimentConfig&)>;

// Marks `status` as a usage error: the flags, the config or a named file are wrong, and the
// command line should say so in one line and exit with code 2.
absl::Status AsUsageError(absl::Status status);
bool IsUsageError(const absl::Status& status);

class FlServer {
 public:
  // Everything up to serving: checks the transport flags first, then loads or resumes the run
  // (server/run.h), builds the evaluator, writes config.json, on resume restores the metrics
  // lines the restart lost, and starts the gRPC server (writing `port_file`). Errors about the
  // options, the config or the files are usage errors (IsUsageError); a failure to restore
  // metrics.jsonl is not. `clock` must outlive the server.
  static absl::StatusOr<std::unique_ptr<FlServer>> Start(const ServerOptions& options,
                                                         const EvaluatorFactory& evaluators,
                                                         const Clock* clock);
  ~FlServer();

  // Runs every remaining round (as a regional aggregator: every upstream task, until the
  // upstream's run is over), then tells polling clients the run is over (for at most
  // finish_grace_seconds), writes report.html, prints the summary line on stdout and stops
  // serving; with after_finish "serve" it keeps serving (`finished`) until Shutdown() instead and
  // then returns OK. The scheduler's errors (DEADLINE_EXCEEDED, UNAVAILABLE, CANCELLED after
  // Shutdown) come back logged as "run stopped". A checkpoint, final model or metrics line that
  // cannot be written (a full or read-only volume) stops the run at once: INTERNAL naming the
  // file and the reason; the files written before stay as they were. Call once.
  absl::Status Run();
  // Makes Run() return CANCELLED soon, or OK once the run is finished. Thread-safe (e.g. from a
  // signal-waiting thread).
  void Shutdown();

  int port() const;
  const std::string& out_dir() const;

 private:
  struct Parts;
  explicit FlServer(std::unique_ptr<Parts> parts);
  std::unique_ptr<Parts> parts_;
};

}  // namespace edgefl::server

#endif  // EDGEFL_SERVER_FL_SERVER_H_
