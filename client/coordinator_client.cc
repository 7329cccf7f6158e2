#include "client/coordinator_client.h"

#include "absl/strings/numbers.h"
#include "common/status_reason.h"

#include <grpcpp/grpcpp.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "client/budgets.h"
#include "common/channel_args.h"
#include "common/chunking.h"
#include "common/grpc_status.h"
#include "common/sha256.h"

namespace edgefl::client {
namespace {
void SetDeadline(grpc::ClientContext* ctx, absl::Time deadline) {
  ctx->set_deadline(absl::ToChronoTime(deadline));
}

bool Has(absl::string_view haystack, absl::string_view needle) {
  return absl::StrContains(absl::AsciiStrToLower(haystack), absl::AsciiStrToLower(needle));
}

// The host part of "host:port" / "[v6]:port" / "dns:///host:port".
std::string TargetHost(absl::string_view target) {
  absl::string_view t = target;
  if (size_t scheme = t.find(":///"); scheme != absl::string_view::npos)
    t.remove_prefix(scheme + 4);
  if (absl::ConsumePrefix(&t, "[")) return std::string(t.substr(0, t.find(']')));
  const size_t colon = t.rfind(':');
  return std::string(colon == absl::string_view::npos ? t : t.substr(0, colon));
}
}  // namespace

std::string CertificateExpiredAt(const std::string& pem) {
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  if (bio == nullptr) return "";
  X509* cert = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  if (cert == nullptr) {
    ERR_clear_error();
    return "";
  }
  std::string out;
  const ASN1_TIME* not_after = X509_get0_notAfter(cert);
  if (not_after != nullptr && X509_cmp_current_time(not_after) < 0) {
    BIO* text = BIO_new(BIO_s_mem());
    if (text != nullptr && ASN1_TIME_print(text, not_after) == 1) {
      char* data = nullptr;
      const long n = BIO_get_mem_data(text, &data);
      out.assign(data, static_cast<size_t>(n));
    }
    BIO_free(text);
    if (out.empty()) out = "an earlier date";
  }
  X509_free(cert);
  return out;
}

std::string DescribeTlsFailure(std::string_view message_std, bool tls,
                               std::string_view server_name_std, bool has_client_cert,
                               bool closed_at_setup) {
  const absl::string_view message(message_std.data(), message_std.size());
  const absl::string_view server_name(server_name_std.data(), server_name_std.size());
  const bool closed = Has(message, "Socket closed") || Has(message, "Connection reset");
  if (!tls) {
    if (closed && closed_at_setup) {
      return "the server keeps closing the plaintext connection during setup: it probably "
             "requires TLS (pass --ca_cert instead of --insecure)";
    }
    return "";
  }
  if (Has(message, "Peer name") && Has(message, "is not in peer certificate")) {
    return absl::StrCat("TLS: the server certificate does not match the host name '", server_name,
                        "' (its SANs name other hosts; connect by a name it "
                        "holds, or check --tls_server_name)");
  }
  if (Has(message, "certificate has expired") || Has(message, "CERTIFICATE_VERIFY_FAILED") ||
      Has(message, "certificate verify failed") || Has(message, "unable to get local issuer") ||
      Has(message, "self signed certificate") || Has(message, "self-signed certificate")) {
    if (Has(message, "expired")) {
      return "TLS: the server certificate has expired";
    }
    return "TLS: the server certificate could not be verified: it is not signed by a CA in "
           "--ca_cert (wrong CA?)";
  }
  if (Has(message, "alert certificate expired") ||
      (Has(message, "alert") && Has(message, "expired"))) {
    return "TLS: the server refused this client's certificate: it has expired";
  }
  if (Has(message, "alert unknown ca") || Has(message, "alert bad certificate") ||
      Has(message, "alert certificate required") || Has(message, "alert handshake failure") ||
      Has(message, "alert certificate unknown") || Has(message, "alert decrypt error")) {
    return has_client_cert
               ? absl::StrCat(
                     "TLS: the server refused this client's certificate (",
                     Has(message, "unknown ca") ? "not signed by a CA it trusts" : "not accepted",
                     "; check --tls_cert/--tls_key against the server's --client_ca)")
               : "TLS: the server requires a client certificate (mutual TLS): pass --tls_cert "
                 "and --tls_key";
  }
  if (Has(message, "wrong version number") || Has(message, "packet length too long") ||
      Has(message, "WRONG_VERSION_NUMBER") || Has(message, "record layer failure") ||
      Has(message, "http request")) {
    return "TLS: the server does not speak TLS (is it running with --insecure?)";
  }
  if (Has(message, "Handshake failed") || Has(message, "handshake failed") ||
      Has(message, "SSL_ERROR")) {
    return absl::StrCat("TLS handshake failed: ", message.substr(0, 300));
  }
  if (closed && closed_at_setup) {
    // Under TLS 1.3 the server checks the client certificate after the client has finished its
    // half of the handshake; its alert reaches gRPC only as a closed socket.
    return has_client_cert
               ? "TLS: the server refused this client's certificate during the handshake (not "
                 "signed by a CA in its --client_ca, expired, or not yet valid)"
               : "TLS: the server closes the connection during the handshake: it requires a "
                 "client certificate (mutual TLS): pass --tls_cert and --tls_key";
  }
  return "";
}

std::unique_ptr<CoordinatorClient> CoordinatorClient::Create(const Options& options) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(options.max_message_mb << 20);
  args.SetMaxSendMessageSize(options.max_message_mb << 20);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, channel_args::kKeepaliveTimeMs);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, channel_args::kKeepaliveTimeoutMs);
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, channel_args::kKeepalivePermitWithoutCalls);
  // Reconnect quickly after a server restart (gRPC's own backoff otherwise grows to 120 s).
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, channel_args::kClientMaxReconnectBackoffMs);
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS,
              channel_args::kClientInitialReconnectBackoffMs);
  // A process with many clients (fl-loadgen) gives each its own TCP connection; gRPC otherwise
  // shares one subchannel between channels of equal arguments.
  if (options.own_connection) args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  std::shared_ptr<grpc::ChannelCredentials> creds;
  if (options.insecure) {
    creds = grpc::InsecureChannelCredentials();
  } else {
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = options.ca_cert_pem;
    ssl.pem_cert_chain = options.client_cert_pem;
    ssl.pem_private_key = options.client_key_pem;
    creds = grpc::SslCredentials(ssl);
    if (!options.tls_server_name.empty()) {
      args.SetSslTargetNameOverride(options.tls_server_name);
    }
  }
  auto channel = grpc::CreateCustomChannel(options.target, creds, args);
  return std::unique_ptr<CoordinatorClient>(new CoordinatorClient(options, std::move(channel)));
}

void CoordinatorClient::SetEnrollmentToken(std::string token) {
  absl::MutexLock lock(&mu_);
  enrollment_token_ = std::move(token);
}

void CoordinatorClient::SetSession(std::string token, absl::Time expires) {
  absl::MutexLock lock(&mu_);
  session_token_ = std::move(token);
  session_expires_ = session_token_.empty() ? absl::InfinitePast() : expires;
}

std::string CoordinatorClient::session_token() const {
  absl::MutexLock lock(&mu_);
  return session_token_;
}

absl::Time CoordinatorClient::session_expires() const {
  absl::MutexLock lock(&mu_);
  return session_expires_;
}

void CoordinatorClient::Authorize(grpc::ClientContext* ctx, const std::string& bearer) const {
  std::string token = bearer;
  if (token.empty()) token = session_token();
  if (!token.empty()) ctx->AddMetadata("authorization", "Bearer " + token);
}

absl::Status CoordinatorClient::Convert(const grpc::Status& s) {
  bool closed_at_setup = false;
  {
    absl::MutexLock lock(&mu_);
    const bool closed =
        s.error_code() == grpc::StatusCode::UNAVAILABLE &&
        (Has(s.error_message(), "Socket closed") || Has(s.error_message(), "Connection reset"));
    // Any answer from the server (even an error status) proves the transport works.
    if (s.ok() || s.error_code() != grpc::StatusCode::UNAVAILABLE) ever_reached_ = true;
    if (!closed) closed_at_setup_ = 0;
    if (closed && !ever_reached_) closed_at_setup = ++closed_at_setup_ >= 3;
  }
  if (s.ok()) return absl::OkStatus();
  if (s.error_code() == grpc::StatusCode::UNAVAILABLE) {
    const std::string server_name =
        options_.tls_server_name.empty() ? TargetHost(options_.target) : options_.tls_server_name;
    std::string tls = DescribeTlsFailure(s.error_message(), !options_.insecure, server_name,
                                         !options_.client_cert_pem.empty(), closed_at_setup);
    if (!tls.empty()) {
      if (!own_cert_expired_.empty() && absl::StrContains(tls, "client's certificate")) {
        absl::StrAppend(&tls, "; --tls_cert expired at ", own_cert_expired_);
      }
      return absl::FailedPreconditionError(tls);
    }
  }
  return FromGrpcStatus(s);
}

CoordinatorClient::CoordinatorClient(const Options& options, std::shared_ptr<grpc::Channel> channel)
    : options_(options),
      own_cert_expired_(CertificateExpiredAt(options.client_cert_pem)),
      channel_(std::move(channel)),
      stub_(proto::Coordinator::NewStub(channel_)) {}

absl::StatusOr<proto::JoinResponse> CoordinatorClient::JoinOnce(const proto::JoinRequest& request,
                                                                const std::string& bearer) {
  grpc::ClientContext ctx;
  SetDeadline(&ctx, absl::Now() + options_.rpc_timeout);
  if (!bearer.empty()) ctx.AddMetadata("authorization", "Bearer " + bearer);
  proto::JoinResponse response;
  grpc::Status s = stub_->Join(&ctx, request, &response);
  if (absl::Status st = Convert(s); !st.ok()) return st;
  SetSession(response.session_token(),
             absl::FromUnixSeconds(static_cast<int64_t>(response.session_expires_unix_seconds())));
  return response;
}

absl::StatusOr<proto::JoinResponse> CoordinatorClient::Join(const proto::JoinRequest& request) {
  std::string session;
  std::string enrollment;
  {
    absl::MutexLock lock(&mu_);
    if (!session_token_.empty() && session_expires_ > absl::Now()) session = session_token_;
    enrollment = enrollment_token_;
  }
  if (!session.empty()) {
    absl::StatusOr<proto::JoinResponse> r = JoinOnce(request, session);
    if (r.ok() || !absl::IsUnauthenticated(r.status())) return r;
    // Expired, revoked, or from another server: join afresh (with the enrollment token, if any).
    ClearSession();
  }
  return JoinOnce(request, enrollment);
}

absl::StatusOr<CoordinatorClient::CheckInResult> CoordinatorClient::CheckIn(
    const std::string& client_id, int64_t have_version, absl::Duration timeout,
    bool want_final_model, const proto::CheckInRequest& extras) {
  grpc::ClientContext ctx;
  // Registered for CancelCheckIns until the call returns, however it returns.
  {
    absl::MutexLock lock(&mu_);
    if (checkins_cancelled_) return absl::CancelledError("CheckIn cancelled: shutting down");
    checkin_ctx_ = &ctx;
  }
  struct Unregister {
    CoordinatorClient* self;
    ~Unregister() {
      absl::MutexLock lock(&self->mu_);
      self->checkin_ctx_ = nullptr;
    }
  } unregister{this};
  SetDeadline(&ctx, absl::Now() + timeout);
  Authorize(&ctx, "");
  proto::CheckInRequest request = extras;
  request.set_client_id(client_id);
  request.set_have_model_version(have_version);
  request.set_want_final_model(want_final_model);
  std::unique_ptr<grpc::ClientReader<proto::CheckInResponse>> reader =
      stub_->CheckIn(&ctx, request);
  CheckInResult result;
  proto::CheckInResponse msg;
  bool have_first = reader->Read(&msg);
  absl::Status stream_error;
  if (have_first) {
    if (msg.has_task()) {
      result.task = msg.task();
      result.kind = result.task.final_model() ? CheckInResult::Kind::kFinalModel
                                              : CheckInResult::Kind::kTask;
      ChunkAssembler assembler(options_.max_model_bytes);
      stream_error = assembler.Start(result.task.total_bytes(), result.task.sha256());
      while (stream_error.ok() && reader->Read(&msg)) {
        if (!msg.has_chunk()) {
          stream_error = absl::DataLossError("unexpected message inside a model stream");
          break;
        }
        result.bytes_down += msg.chunk().data().size();
        stream_error = assembler.Add(msg.chunk().offset(), msg.chunk().data());
      }
      if (stream_error.ok()) {
        grpc::Status s = reader->Finish();
        if (absl::Status st = Convert(s); !st.ok()) return st;
        stream_error = assembler.Finish(&result.payload);
      }
      if (!stream_error.ok()) {
        ctx.TryCancel();
        return absl::DataLossError(absl::StrCat("model download: ", stream_error.message()));
      }
      return result;
    }
    result.kind = msg.finished() ? CheckInResult::Kind::kFinished : CheckInResult::Kind::kIdle;
    while (reader->Read(&msg)) {
    }
  }
  grpc::Status s = reader->Finish();
  if (absl::Status st = Convert(s); !st.ok()) return st;
  if (!have_first) return absl::UnavailableError("CheckIn stream ended without a message");
  return result;
}

void CoordinatorClient::CancelCheckIns() {
  absl::MutexLock lock(&mu_);
  checkins_cancelled_ = true;
  // TryCancel may be called from any thread while the call runs; the context outlives this,
  // since CheckIn unregisters it (under mu_) before it is destroyed.
  if (checkin_ctx_ != nullptr) checkin_ctx_->TryCancel();
}

absl::StatusOr<proto::ReportResponse> CoordinatorClient::Report(proto::ReportHeader header,
                                                                std::string_view payload,
                                                                absl::Time deadline,
                                                                uint64_t* bytes_up) {
  header.set_total_bytes(payload.size());
  header.set_sha256(Sha256::Of(payload));
  grpc::ClientContext ctx;
  SetDeadline(&ctx, std::max(deadline, absl::Now() + options_.rpc_timeout));
  Authorize(&ctx, "");
  proto::ReportResponse response;
  std::unique_ptr<grpc::ClientWriter<proto::ReportRequest>> writer =
      stub_->Report(&ctx, &response);
  proto::ReportRequest msg;
  *msg.mutable_header() = std::move(header);
  UploadPacer pacer(options_.max_upload_kbps);
  size_t chunk_bytes = options_.chunk_bytes;
  if (options_.max_upload_kbps > 0) {
    chunk_bytes = std::clamp<size_t>(static_cast<size_t>(options_.max_upload_kbps * 1000 / 8 / 4),
                                     1024, options_.chunk_bytes);
  }
  pacer.Start(absl::Now());
  bool ok = writer->Write(msg);
  uint64_t sent = 0;
  for (size_t off = 0; ok && off < payload.size(); off += chunk_bytes) {
    const size_t n = std::min(chunk_bytes, payload.size() - off);
    proto::ReportRequest chunk;
    chunk.mutable_chunk()->set_offset(off);
    chunk.mutable_chunk()->set_data(payload.data() + off, n);
    ok = writer->Write(chunk);
    if (ok) sent += n;
    if (const absl::Duration wait = pacer.Sent(n, absl::Now()); ok && wait > absl::ZeroDuration()) {
      absl::SleepFor(wait);  // the rate cap: the stream's deadline still bounds the whole upload
    }
  }
  if (bytes_up != nullptr) *bytes_up = sent;
  writer->WritesDone();
  grpc::Status s = writer->Finish();
  if (absl::Status st = Convert(s); !st.ok()) {
    // A busy server says when to try again (server/coordinator_service.h).
    const auto& trailers = ctx.GetServerTrailingMetadata();
    if (auto it = trailers.find("retry-after-ms"); it != trailers.end()) {
      int64_t ms = 0;
      if (absl::SimpleAtoi(absl::string_view(it->second.data(), it->second.size()), &ms)) {
        st = WithRetryAfter(std::move(st), absl::Milliseconds(ms));
      }
    }
    return st;
  }
  return response;
}

}  // namespace edgefl::client
