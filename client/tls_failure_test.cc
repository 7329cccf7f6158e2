// The one-line explanations of TLS connection failures (client/coordinator_client.h), from the
// UNAVAILABLE messages gRPC 1.51 with OpenSSL 3 actually produces.
#include "client/coordinator_client.h"
#include "gtest/gtest.h"

namespace edgefl::client {
namespace {

constexpr char kVerifyFailed[] =
    "failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:46447: Ssl handshake "
    "failed: SSL_ERROR_SSL: error:0A000086:SSL routines::certificate verify failed";
constexpr char kWrongName[] =
    "failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:46447: Peer name "
    "evil.example is not in peer certificate";
constexpr char kNotTls[] =
    "failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:35489: Ssl handshake "
    "failed: SSL_ERROR_SSL: error:0A00010B:SSL routines::wrong version number";
constexpr char kClosed[] =
    "failed to connect to all addresses; last error: UNAVAILABLE: ipv4:127.0.0.1:44545: Socket "
    "closed";
constexpr char kRefused[] =
    "failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:1: Failed to "
    "connect to remote host: Connection refused";

TEST(TlsFailure, SaysWhichCheckFailed) {
  EXPECT_NE(DescribeTlsFailure(kVerifyFailed, true, "127.0.0.1", false, false)
                .find("could not be verified"),
            std::string::npos);
  EXPECT_NE(DescribeTlsFailure(kWrongName, true, "evil.example", false, false)
                .find("does not match the host name 'evil.example'"),
            std::string::npos);
  EXPECT_NE(DescribeTlsFailure(kNotTls, true, "127.0.0.1", false, false).find("does not speak TLS"),
            std::string::npos);
}

TEST(TlsFailure, ClosedSocketsOnlyCountWhenTheyRepeatBeforeAnySuccess) {
  // A restarting server also closes sockets: not a TLS verdict on its own.
  EXPECT_EQ(DescribeTlsFailure(kClosed, true, "h", true, false), "");
  EXPECT_EQ(DescribeTlsFailure(kClosed, false, "h", false, false), "");
  EXPECT_NE(DescribeTlsFailure(kClosed, true, "h", true, true).find("refused this client's"),
            std::string::npos);
  EXPECT_NE(DescribeTlsFailure(kClosed, true, "h", false, true).find("requires a client cert"),
            std::string::npos);
  EXPECT_NE(DescribeTlsFailure(kClosed, false, "h", false, true).find("requires TLS"),
            std::string::npos);
  // A server that is down is not a TLS problem.
  EXPECT_EQ(DescribeTlsFailure(kRefused, true, "h", false, true), "");
  EXPECT_EQ(DescribeTlsFailure(kRefused, false, "h", false, true), "");
}

TEST(TlsFailure, OwnCertificateExpiry) {
  EXPECT_EQ(CertificateExpiredAt(""), "");
  EXPECT_EQ(CertificateExpiredAt("not a certificate"), "");
}

}  // namespace
}  // namespace edgefl::client
