#include "common/pem.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/file_util.h"

namespace edgefl {
namespace {

absl::Status Prefixed(absl::string_view flag, const absl::Status& s) {
  return absl::Status(s.code(), absl::StrCat(flag, ": ", s.message()));
}

}  // namespace

absl::StatusOr<std::string> ReadPemCertificates(const std::string& path, absl::string_view flag) {
  absl::StatusOr<std::string> pem = ReadFile(path);
  if (!pem.ok()) return Prefixed(flag, pem.status());
  if (pem->find("-----BEGIN CERTIFICATE-----") == std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat(flag, ": ", path, " holds no PEM certificate"));
  }
  return pem;
}

absl::StatusOr<std::string> ReadPemPrivateKey(const std::string& path, absl::string_view flag) {
  absl::StatusOr<std::string> pem = ReadPrivateFile(path, "TLS private key");
  if (!pem.ok()) return Prefixed(flag, pem.status());
  if (pem->find("PRIVATE KEY-----") == std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat(flag, ": ", path, " holds no PEM private key"));
  }
  return pem;
}

}  // namespace edgefl
