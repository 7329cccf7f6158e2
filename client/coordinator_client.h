// The device side of the wire contract: every call has a deadline, models are reassembled and
// checked against their SHA-256, updates are chunked, and every call carries the client's
// credential. gRPC stays inside this class.
//
// Transport: TLS (server verified against `ca_cert_pem`, or the system roots when empty; with
// `client_cert_pem`/`client_key_pem` the client authenticates too, for mutual TLS), or plaintext
// only when `insecure` is set. One channel (one connection, one TLS handshake) serves every call.
//
// Credentials: Join sends the session token when the client holds one (renewal, or re-joining
// after a server restart), else the enrollment token when one is set, as
// "authorization: Bearer <token>"; the session token a Join returns is kept and sent on every
// later CheckIn and Report.
#ifndef EDGEFL_CLIENT_COORDINATOR_CLIENT_H_
#define EDGEFL_CLIENT_COORDINATOR_CLIENT_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "client/coordinator.h"
#include "common/channel_args.h"
#include "protos/edgefl.grpc.pb.h"

namespace edgefl::client {

class CoordinatorClient : public Coordinator {
 public:
  struct Options {
    std::string target = "localhost:50051";
    absl::Duration rpc_timeout = absl::Seconds(60);  // Join, and the floor for Report
    int max_message_mb = channel_args::kDefaultMaxMessageMb;
    size_t chunk_bytes = 1 << 20;                    // update chunk size on the uplink
    uint64_t max_model_bytes = kMaxModelBytes;       // refuse to download larger models
    // Cap on the update upload's average rate in kilobits/s (0 = none): Report sends chunks of at
    // most a quarter second's worth and waits between them (client/budgets.h UploadPacer).
    double max_upload_kbps = 0;
    // ---- transport security
    bool insecure = false;        // plaintext; every TLS field below must then be empty
    std::string ca_cert_pem;      // trusted roots for the server certificate ("" = system)
    std::string client_cert_pem;  // client certificate chain for mutual TLS ("" = none)
    std::string client_key_pem;   // its private key
    std::string tls_server_name;  // name to verify instead of the target's host ("" = host)
    // Open a connection of its own even when another client in this process talks to the same
    // target with the same settings (fl-loadgen: one connection per simulated device).
    bool own_connection = false;
  };

  using CheckInResult = Coordinator::CheckInResult;

  // Creates the channel (TLS unless options.insecure) with keepalive and raised message limits.
  // Thread-safe.
  static std::unique_ptr<CoordinatorClient> Create(const Options& options);

  // Errors are the server's status (NOT_FOUND for an unknown client, UNAUTHENTICATED for a
  // refused credential, UNAVAILABLE when the server is unreachable, DEADLINE_EXCEEDED, ...).
  // A TLS handshake that fails for a reason retrying cannot fix (the server certificate is not
  // trusted or does not match the host name, the server refused this client's certificate, the
  // server does not speak TLS) is FAILED_PRECONDITION with a one-line message that says which.
  // A model whose digest or length does not match is DATA_LOSS.
  //
  // On success Join keeps the returned session for later calls. If Join with a held session is
  // refused as UNAUTHENTICATED (expired, revoked, or issued by another server), the session is
  // dropped and Join is tried once more with the enrollment token (or no credential if none).
  absl::StatusOr<proto::JoinResponse> Join(const proto::JoinRequest& request) override;
  absl::StatusOr<CheckInResult> CheckIn(const std::string& client_id, int64_t have_version,
                                        absl::Duration timeout, bool want_final_model,
                                        const proto::CheckInRequest& extras) override;
  // The same, without extras.
  absl::StatusOr<CheckInResult> CheckIn(const std::string& client_id, int64_t have_version,
                                        absl::Duration timeout, bool want_final_model) {
    return CheckIn(client_id, have_version, timeout, want_final_model, proto::CheckInRequest());
  }
  // The same, without asking for the final model.
  absl::StatusOr<CheckInResult> CheckIn(const std::string& client_id, int64_t have_version,
                                        absl::Duration timeout) {
    return CheckIn(client_id, have_version, timeout, /*want_final_model=*/false);
  }
  // Fills header.total_bytes and header.sha256 from `payload` and streams it in chunks. The call's
  // deadline is `deadline` (at least rpc_timeout from now).
  absl::StatusOr<proto::ReportResponse> Report(proto::ReportHeader header,
                                               std::string_view payload, absl::Time deadline,
                                               uint64_t* bytes_up) override;
  void CancelCheckIns() override;

  // ---- credentials (thread-safe)
  void SetEnrollmentToken(std::string token);
  // Installs a session (e.g. one saved across a restart of the client); "" clears it.
  void SetSession(std::string token, absl::Time expires) override;
  void ClearSession() { SetSession("", absl::InfinitePast()); }
  std::string session_token() const override;
  absl::Time session_expires() const override;

 private:
  explicit CoordinatorClient(const Options& options, std::shared_ptr<grpc::Channel> channel);
  // Adds the authorization metadata (`bearer` if non-empty, else the session).
  void Authorize(grpc::ClientContext* ctx, const std::string& bearer) const;
  // grpc::Status -> absl::Status, turning TLS handshake failures into a clear message.
  absl::Status Convert(const grpc::Status& s);
  absl::StatusOr<proto::JoinResponse> JoinOnce(const proto::JoinRequest& request,
                                               const std::string& bearer);

  Options options_;
  std::string own_cert_expired_;  // "" or when the client certificate expired (for messages)
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<proto::Coordinator::Stub> stub_;
  mutable absl::Mutex mu_;
  std::string enrollment_token_ ABSL_GUARDED_BY(mu_);
  std::string session_token_ ABSL_GUARDED_BY(mu_);
  absl::Time session_expires_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  // A server that closes every new connection at once, before any call ever succeeded, is
  // refusing the transport (TLS vs plaintext, or the client certificate); counted to tell that
  // apart from a server that is merely restarting.
  bool ever_reached_ ABSL_GUARDED_BY(mu_) = false;
  int closed_at_setup_ ABSL_GUARDED_BY(mu_) = 0;
  // CancelCheckIns: the context of the CheckIn in flight (to TryCancel it), and whether to refuse
  // further CheckIns.
  grpc::ClientContext* checkin_ctx_ ABSL_GUARDED_BY(mu_) = nullptr;
  bool checkins_cancelled_ ABSL_GUARDED_BY(mu_) = false;
};

// When the PEM certificate `pem` expired ("" if it has not, or cannot be parsed), as text.
std::string CertificateExpiredAt(const std::string& pem);

// Recognises why a TLS connection failed from gRPC's UNAVAILABLE message (which carries
// OpenSSL's handshake error) and says it in one line: the server certificate is not trusted,
// does not match the host name, the server refused the client certificate, or one side does not
// speak TLS. Returns "" when `message` shows no TLS failure. `tls` says whether this client uses
// TLS; `server_name` is the name it verifies. A connection closed during setup ("Socket
// closed"), which is all gRPC shows when the server rejects the client's certificate or speaks
// the other protocol, is only described when `closed_at_setup` (the caller has seen it repeat
// before any call succeeded). Pure; exposed for tests.
std::string DescribeTlsFailure(std::string_view message, bool tls, std::string_view server_name,
                               bool has_client_cert, bool closed_at_setup);

}  // namespace edgefl::client

#endif  // EDGEFL_CLIENT_COORDINATOR_CLIENT_H_
