// Starting fl-server's gRPC server: listening port, message limits, the keepalive policy of
// common/channel_args.h and the standard health-check service, in one place for fl-server and
// the in-process tests.
#ifndef EDGEFL_SERVER_GRPC_SERVER_H_
#define EDGEFL_SERVER_GRPC_SERVER_H_

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/channel_args.h"

namespace edgefl::server {

struct GrpcServerOptions {
  // host:port to listen on; port 0 picks a free port (reported in StartedGrpcServer::port).
  std::string listen = "0.0.0.0:50051";
  // Transport security (server/transport.h); null = plaintext.
  std::shared_ptr<grpc::ServerCredentials> credentials;
  // Message size limit in MiB, both directions (--max_message_mb).
  int max_message_mb = channel_args::kDefaultMaxMessageMb;
  // Threads for the synchronous handlers (Join, Report). CheckIn long polls use the callback API
  // and need none; uploads are admitted a few at a time (CoordinatorService), so this bounds the
  // server's threads whatever the number of devices. A call that finds every thread busy is
  // answered RESOURCE_EXHAUSTED by gRPC, which devices retry with backoff.
  int max_sync_threads = 64;
  // Memory gRPC's transport may hold for all connections (read buffers, frames), MiB; 0 = no
  // bound. With it, a burst of uploads from a large fleet does not grow the server's memory
  // with the number of devices: gRPC reads in smaller pieces under pressure.
  int max_transport_mb = 0;
};

struct StartedGrpcServer {
  std::unique_ptr<grpc::Server> server;  // serving; health status SERVING
  int port = 0;                          // the bound port
};

// Registers `services` (not owned; they must outlive the server), enables the default health
// check service, applies the keepalive / ping settings of common/channel_args.h and starts
// serving. UNAVAILABLE "could not listen on <listen>" when the address cannot be bound;
// INVALID_ARGUMENT for a max_message_mb outside 1..2047.
absl::StatusOr<StartedGrpcServer> StartGrpcServer(const GrpcServerOptions& options,
                                                  const std::vector<grpc::Service*>& services);

// A server carrying only gRPC's default grpc.health.v1.Health (SERVING) on options.listen; every
// other method is UNIMPLEMENTED. For probes (Kubernetes' gRPC probe speaks plaintext only).
// Errors as StartGrpcServer.
absl::StatusOr<StartedGrpcServer> StartHealthOnlyServer(const GrpcServerOptions& options);

}  // namespace edgefl::server

#endif  // EDGEFL_SERVER_GRPC_SERVER_H_
