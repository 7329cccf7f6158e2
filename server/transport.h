// The server's transport security, from its TLS flags: read and checked before anything else
// starts, so that a missing or loose key is a one-line start-up error.
#ifndef EDGEFL_SERVER_TRANSPORT_H_
#define EDGEFL_SERVER_TRANSPORT_H_

#include <grpcpp/security/server_credentials.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace edgefl::server {

struct TransportOptions {
  std::string tls_cert;   // --tls_cert: certificate chain (PEM); required unless insecure
  std::string tls_key;    // --tls_key: private key (PEM, mode 0600 or stricter)
  std::string client_ca;  // --client_ca: CA bundle (PEM); set = mutual TLS, client certs required
  bool insecure = false;  // --insecure: plaintext; excludes the three above
};

struct ServerTransport {
  std::shared_ptr<grpc::ServerCredentials> credentials;  // never null on success
  std::string description;                               // for the start-up log line, e.g. "TLS"
};

// INVALID_ARGUMENT for inconsistent flags (--insecure with TLS files, TLS without a certificate
// or key) or files that hold no PEM certificate / key; the errors of ReadPemCertificates /
// ReadPemPrivateKey (common/pem.h) for unreadable or loose files. Every message names the flag.
absl::StatusOr<ServerTransport> LoadServerTransport(const TransportOptions& options);

}  // namespace edgefl::server

#endif  // EDGEFL_SERVER_TRANSPORT_H_
