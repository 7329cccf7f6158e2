// Reading TLS material (PEM files) named by command-line flags: the one reader that fl-server,
// fl-client and the tools share, so a bad file gets the same one-line error everywhere.
#ifndef EDGEFL_COMMON_PEM_H_
#define EDGEFL_COMMON_PEM_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace edgefl {

// Reads `path` and checks that it holds at least one PEM certificate. Errors name `flag`
// (e.g. "--tls_cert") and the path: NOT_FOUND if missing, INVALID_ARGUMENT when the file holds no
// "-----BEGIN CERTIFICATE-----" block, other codes with the errno text.
absl::StatusOr<std::string> ReadPemCertificates(const std::string& path, absl::string_view flag);

// Reads a PEM private key through ReadPrivateFile (refused when group/others may read it, so a
// leaked key is caught at start-up) and checks it holds a "PRIVATE KEY-----" block. Errors name
// `flag` and the path.
absl::StatusOr<std::string> ReadPemPrivateKey(const std::string& path, absl::string_view flag);

}  // namespace edgefl

#endif  // EDGEFL_COMMON_PEM_H_
