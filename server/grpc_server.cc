#include "server/grpc_server.h"

#include <grpcpp/generic/async_generic_service.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/resource_quota.h>

#include "absl/strings/str_cat.h"

namespace edgefl::server {
namespace {

// Answers every method that is not registered UNIMPLEMENTED. With it the builder accepts a server
// whose only registered service is the default health service.
class UnimplementedGenericService : public grpc::CallbackGenericService {
 public:
  grpc::ServerGenericBidiReactor* CreateReactor(grpc::GenericCallbackServerContext*) override {
    class Reactor : public grpc::ServerGenericBidiReactor {
     public:
      Reactor() { Finish(grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "health service only")); }
      void OnDone() override { delete this; }
    };
    return new Reactor;
  }
};

}  // namespace

absl::StatusOr<StartedGrpcServer> StartHealthOnlyServer(const GrpcServerOptions& options) {
  static UnimplementedGenericService* const unimplemented = new UnimplementedGenericService;
  grpc::EnableDefaultHealthCheckService(true);
  grpc::ServerBuilder builder;
  StartedGrpcServer started;
  builder.AddListeningPort(
      options.listen,
      options.credentials != nullptr ? options.credentials : grpc::InsecureServerCredentials(),
      &started.port);
  builder.RegisterCallbackGenericService(unimplemented);
  started.server = builder.BuildAndStart();
  if (started.server == nullptr || started.port == 0) {
    return absl::UnavailableError(absl::StrCat("could not listen on ", options.listen));
  }
  started.server->GetHealthCheckService()->SetServingStatus(true);
  return started;
}

absl::StatusOr<StartedGrpcServer> StartGrpcServer(const GrpcServerOptions& options,
                                                  const std::vector<grpc::Service*>& services) {
  if (options.max_message_mb < 1 || options.max_message_mb > 2047) {
    return absl::InvalidArgumentError(
        absl::StrCat("--max_message_mb must be in 1..2047, not ", options.max_message_mb));
  }
  grpc::EnableDefaultHealthCheckService(true);
  grpc::ServerBuilder builder;
  StartedGrpcServer started;
  builder.AddListeningPort(
      options.listen,
      options.credentials != nullptr ? options.credentials : grpc::InsecureServerCredentials(),
      &started.port);
  for (grpc::Service* service : services) builder.RegisterService(service);
  if (options.max_sync_threads > 0 || options.max_transport_mb > 0) {
    grpc::ResourceQuota quota("edgefl-server");
    if (options.max_sync_threads > 0) quota.SetMaxThreads(options.max_sync_threads);
    // Under pressure gRPC shrinks its per-connection read buffers instead of growing them.
    if (options.max_transport_mb > 0) quota.Resize(static_cast<size_t>(options.max_transport_mb) << 20);
    builder.SetResourceQuota(quota);
  }
  builder.SetMaxReceiveMessageSize(options.max_message_mb << 20);
  builder.SetMaxSendMessageSize(options.max_message_mb << 20);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, channel_args::kKeepaliveTimeMs);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, channel_args::kKeepaliveTimeoutMs);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS,
                             channel_args::kKeepalivePermitWithoutCalls);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
                             channel_args::kServerMinPingIntervalMs);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES, channel_args::kServerMaxPingStrikes);
  started.server = builder.BuildAndStart();
  if (started.server == nullptr || started.port == 0) {
    return absl::UnavailableError(absl::StrCat("could not listen on ", options.listen));
  }
  started.server->GetHealthCheckService()->SetServingStatus(true);
  return started;
}

}  // namespace edgefl::server
