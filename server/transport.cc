#include "server/transport.h"

#include <grpcpp/security/server_credentials.h>

#include <utility>

#include "common/pem.h"
#include "common/status_macros.h"

namespace edgefl::server {

absl::StatusOr<ServerTransport> LoadServerTransport(const TransportOptions& o) {
  const bool any_tls = !o.tls_cert.empty() || !o.tls_key.empty() || !o.client_ca.empty();
  if (o.insecure) {
    if (any_tls) {
      return absl::InvalidArgumentError(
          "--insecure cannot be combined with --tls_cert, --tls_key or --client_ca");
    }
    return ServerTransport{grpc::InsecureServerCredentials(), "PLAINTEXT (--insecure)"};
  }
  if (o.tls_cert.empty() || o.tls_key.empty()) {
    return absl::InvalidArgumentError(
        "no TLS certificate: pass --tls_cert and --tls_key (development ones: "
        "deploy/certs/make-dev-certs.sh), or --insecure to serve plaintext on a trusted network");
  }
  ASSIGN_OR_RETURN(std::string cert, ReadPemCertificates(o.tls_cert, "--tls_cert"));
  ASSIGN_OR_RETURN(std::string key, ReadPemPrivateKey(o.tls_key, "--tls_key"));
  grpc::SslServerCredentialsOptions options(GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  options.pem_key_cert_pairs.push_back({std::move(key), std::move(cert)});
  std::string description = "TLS";
  if (!o.client_ca.empty()) {
    ASSIGN_OR_RETURN(options.pem_root_certs, ReadPemCertificates(o.client_ca, "--client_ca"));
    options.client_certificate_request = GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
    description = "mutual TLS (client certificates required, ids from certificates)";
  }
  std::shared_ptr<grpc::ServerCredentials> credentials = grpc::SslServerCredentials(options);
  if (credentials == nullptr) {
    return absl::InvalidArgumentError("the TLS certificate or key cannot be used");
  }
  return ServerTransport{std::move(credentials), std::move(description)};
}

}  // namespace edgefl::server
