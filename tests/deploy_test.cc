// End-to-end checks of what a Kubernetes deployment relies on, with a real fl-server process:
// the plaintext health port that kubelet's native gRPC probes use beside the TLS service port.
#include <arpa/inet.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/e2e_util.h"

namespace edgefl::testing {
namespace {

// A port that was free a moment ago (the server binds it right after).
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

// grpc.health.v1.Health/Check for the whole server (service ""), as kubelet sends it: returns
// the gRPC status and the serialized HealthCheckResponse.
grpc::Status HealthCheck(const std::shared_ptr<grpc::Channel>& channel, std::string* response) {
  grpc::GenericStub stub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  grpc::CompletionQueue cq;
  grpc::ByteBuffer request;  // HealthCheckRequest{service: ""} serializes to no bytes
  grpc::Slice empty;
  request = grpc::ByteBuffer(&empty, 1);
  auto call = stub.PrepareUnaryCall(&ctx, "/grpc.health.v1.Health/Check", request, &cq);
  call->StartCall();
  grpc::ByteBuffer reply;
  grpc::Status status;
  call->Finish(&reply, &status, reinterpret_cast<void*>(1));
  void* tag = nullptr;
  bool ok = false;
  if (!cq.Next(&tag, &ok) || !ok) return grpc::Status(grpc::StatusCode::UNKNOWN, "queue");
  std::vector<grpc::Slice> slices;
  if (status.ok() && reply.Dump(&slices).ok()) {
    for (const grpc::Slice& s : slices) response->append(reinterpret_cast<const char*>(s.begin()), s.size());
  }
  return status;
}

TEST(Deploy, PlaintextHealthPortServesBesideTheTlsPort) {
  const std::string dir = MakeTempDir("edgefl-health");
  std::string log;
  ASSERT_TRUE(MakeDevCerts(dir + "/certs", 1, &log)) << log;
  const int health_port = FreePort();
  ASSERT_GT(health_port, 0);
  int port = 0;
  auto server = StartServer(
      {"--model=mlp", "--rounds=1", "--min_clients=1", "--out=" + dir + "/run",
       "--tls_cert=" + dir + "/certs/server.pem", "--tls_key=" + dir + "/certs/server.key",
       absl::StrCat("--health_listen=127.0.0.1:", health_port)},
      dir, "server.log", &port);
  ASSERT_GT(port, 0) << server->Log();
  std::string response;
  grpc::Status s = HealthCheck(
      grpc::CreateChannel(absl::StrCat("127.0.0.1:", health_port), grpc::InsecureChannelCredentials()),
      &response);
  ASSERT_TRUE(s.ok()) << s.error_message() << "\n" << server->Log();
  EXPECT_EQ(response, std::string("\x08\x01", 2));  // status: SERVING
  // The service port stays TLS-only: a plaintext probe there cannot pass.
  response.clear();
  s = HealthCheck(grpc::CreateChannel(absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials()),
                  &response);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(server->Log().find("health service"), std::string::npos) << server->Log();
  server->Signal(SIGTERM);
  EXPECT_NE(server->Wait(absl::Seconds(30)), -1) << server->Log();  // stops on SIGTERM
}

TEST(Deploy, HealthListenThatCannotBindIsAUsageError) {
  const std::string dir = MakeTempDir("edgefl-health-bad");
  std::string out;
  const int rc = RunProgram({BinDir() + "/fl-server", "--insecure", "--model=mlp",
                             "--listen=127.0.0.1:0", "--out=" + dir + "/run",
                             "--health_listen=256.0.0.1:1"},
                            &out);
  EXPECT_EQ(rc, 2) << out;
  EXPECT_NE(out.find("fl-server: --health_listen: could not listen on 256.0.0.1:1"),
            std::string::npos)
      << out;
}

}  // namespace
}  // namespace edgefl::testing
