// fl-client: the edgefl device runtime.
#include <sys/statvfs.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "client/backoff.h"
#include "client/coordinator_client.h"
#include "client/update_pipeline.h"
#include "common/file_util.h"
#include "common/flags.h"
#include "common/log.h"
#include "common/memory.h"
#include "common/threads.h"
#include "data/dataset.h"
#include "data/device_data.h"
#include "students/distill.h"
#include "models/model_runner.h"
#include "models/model_spec.h"

namespace edgefl::client {
namespace {

constexpr char kProgram[] = "fl-client";

struct ClientFlags {
  std::string server = "localhost:50051";
  std::string data = "fmnist";
  std::string data_dir = data::kDefaultFashionMnistDir;
  std::string partition_file;
  std::string partition = "iid";
  int num_partitions = 1;
  int client_index = 0;
  int64_t seed = 0;
  int threads = 1;
  double max_retry_seconds = 900;
  double rpc_timeout = 60;
  int max_message_mb = 16;
  std::string progress = "auto";
  std::string state_dir = "edgefl-state";
  std::string distill_to;
  std::string distill_student = "student_tiny";
  int distill_epochs = 3;
  int distill_samples = 3000;
  bool distill_final_only = false;
  bool spill_model = true;
  // Transport security and credentials.
  bool insecure = false;
  std::string ca_cert;
  std::string tls_cert;
  std::string tls_key;
  std::string tls_server_name;
  std::string token_file;
};

constexpr char kTokenEnvVar[] = "EDGEFL_ENROLLMENT_TOKEN";

// Fills the transport fields of `opts` from the flags; exits 2 on a usage or file error.
void ConfigureTransport(const ClientFlags& f, CoordinatorClient::Options* opts) {
  const bool any_tls =
      !f.ca_cert.empty() || !f.tls_cert.empty() || !f.tls_key.empty() || !f.tls_server_name.empty();
  if (f.insecure) {
    if (any_tls) {
      ExitUsageError(kProgram,
                     "--insecure cannot be combined with --ca_cert, --tls_cert, "
                     "--tls_key or --tls_server_name");
    }
    opts->insecure = true;
    return;
  }
  if (f.ca_cert.empty()) {
    ExitUsageError(kProgram,
                   "no CA certificate to verify the server with: pass --ca_cert (the CA that "
                   "signed the server's certificate; 'system' for the system roots), or --insecure "
                   "for plaintext on a trusted network");
  }
  if (f.ca_cert != "system") {
    absl::StatusOr<std::string> ca = ReadFile(f.ca_cert);
    if (!ca.ok()) ExitUsageError(kProgram, absl::StrCat("--ca_cert: ", ca.status().message()));
    if (ca->find("-----BEGIN CERTIFICATE-----") == std::string::npos) {
      ExitUsageError(kProgram, absl::StrCat("--ca_cert: ", f.ca_cert, " holds no PEM certificate"));
    }
    opts->ca_cert_pem = std::move(*ca);
  }
  if (f.tls_cert.empty() != f.tls_key.empty()) {
    ExitUsageError(kProgram,
                   "--tls_cert and --tls_key go together (the client certificate for "
                   "mutual TLS and its private key)");
  }
  if (!f.tls_cert.empty()) {
    absl::StatusOr<std::string> cert = ReadFile(f.tls_cert);
    if (!cert.ok()) ExitUsageError(kProgram, absl::StrCat("--tls_cert: ", cert.status().message()));
    absl::StatusOr<std::string> key = ReadPrivateFile(f.tls_key, "TLS private key");
    if (!key.ok()) ExitUsageError(kProgram, absl::StrCat("--tls_key: ", key.status().message()));
    opts->client_cert_pem = std::move(*cert);
    opts->client_key_pem = std::move(*key);
  }
  opts->tls_server_name = f.tls_server_name;
}

// The enrollment token from --token_file or $EDGEFL_ENROLLMENT_TOKEN ("" when neither is given).
std::string LoadEnrollmentToken(const ClientFlags& f) {
  std::string token;
  if (!f.token_file.empty()) {
    absl::StatusOr<std::string> text = ReadPrivateFile(f.token_file, "enrollment token file");
    if (!text.ok())
      ExitUsageError(kProgram, absl::StrCat("--token_file: ", text.status().message()));
    token = std::move(*text);
  } else if (const char* env = std::getenv(kTokenEnvVar); env != nullptr) {
    token = env;
  }
  token = std::string(absl::StripAsciiWhitespace(token));
  if (token.find_first_of(" \t\r\n") != std::string::npos) {
    ExitUsageError(kProgram, "the enrollment token must be a single token (one line)");
  }
  return token;
}

proto::DeviceProfile MakeProfile(int64_t num_samples) {
  proto::DeviceProfile p;
  struct utsname u;
  if (uname(&u) == 0) p.set_arch(u.machine);
  p.set_cores(static_cast<int>(std::thread::hardware_concurrency()));
  p.set_ram_bytes(static_cast<uint64_t>(sysconf(_SC_PHYS_PAGES)) *
                  static_cast<uint64_t>(sysconf(_SC_PAGESIZE)));
  struct statvfs fs;
  if (statvfs(".", &fs) == 0)
    p.set_free_disk_bytes(static_cast<uint64_t>(fs.f_bavail) * fs.f_frsize);
  char host[256] = {0};
  if (gethostname(host, sizeof(host) - 1) == 0) p.set_hostname(host);
  p.set_num_samples(num_samples);
  return p;
}

students::DistillOptions DistillOptionsFrom(const ClientFlags& f) {
  students::DistillOptions o;
  o.student = f.distill_student;
  o.epochs = f.distill_epochs;
  o.max_samples = f.distill_samples;
  return o;
}

// The global model a round trains from is needed again only after training (for the delta, as
// the next downlink's base, for --distill_to). While training it can wait in a file of the state
// folder instead of in memory: the page cache holds it, not the process (6.65 MB of fedavg_cnn
// off the round's memory peak). The file is unlinked as soon as it is created, so clients sharing
// a state folder never collide and nothing is left behind, even after a crash.
class SpilledFloats {
 public:
  // Writes `values` to a new unlinked file in `dir` and frees them (`*values` ends up empty).
  static absl::StatusOr<std::unique_ptr<SpilledFloats>> Create(const std::string& dir,
                                                               std::vector<float>* values) {
    std::string path = dir + "/.spill-XXXXXX";
    const int fd = mkstemp(path.data());
    if (fd < 0) return absl::InternalError(absl::StrCat(path, ": ", std::strerror(errno)));
    unlink(path.c_str());
    std::unique_ptr<SpilledFloats> file(new SpilledFloats(fd, values->size()));
    const char* data = reinterpret_cast<const char*>(values->data());
    const size_t bytes = values->size() * sizeof(float);
    for (size_t done = 0; done < bytes;) {
      const ssize_t n = pwrite(fd, data + done, bytes - done, static_cast<off_t>(done));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return absl::InternalError(absl::StrCat(dir, ": ", std::strerror(errno)));
      done += static_cast<size_t>(n);
    }
    values->clear();
    values->shrink_to_fit();
    return file;
  }
  ~SpilledFloats() { close(fd_); }

  size_t size() const { return size_; }

  // Reads the floats back in blocks, handing each to `use(offset, block)`. DATA_LOSS on a short
  // or failed read.
  template <typename Fn>
  absl::Status Read(Fn use) const {
    std::vector<float> block(std::min<size_t>(size_, 64 << 10));
    for (size_t done = 0; done < size_;) {
      const size_t want = std::min(block.size(), size_ - done);
      const ssize_t n =
          pread(fd_, block.data(), want * sizeof(float), static_cast<off_t>(done * sizeof(float)));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0 || n % sizeof(float) != 0) {
        return absl::DataLossError("cannot read back the spilled global model");
      }
      const size_t got = static_cast<size_t>(n) / sizeof(float);
      use(done, absl::Span<const float>(block.data(), got));
      done += got;
    }
    return absl::OkStatus();
  }

 private:
  SpilledFloats(int fd, size_t size) : fd_(fd), size_(size) {}
  int fd_;
  size_t size_;
};

class Client {
 public:
  Client(const ClientFlags& flags, std::unique_ptr<CoordinatorClient> rpc,
         data::ImageDataset data)
      : f_(flags),
        rpc_(std::move(rpc)),
        data_(std::move(data)),
        pipeline_(flags.state_dir.empty()
                      ? std::string()
                      : absl::StrCat(flags.state_dir, "/client-", flags.client_index, ".ef")),
        backoff_(Backoff::Options(), static_cast<uint64_t>(flags.seed) * 7919 + flags.client_index),
        tty_(flags.progress == "always" || (flags.progress == "auto" && isatty(STDERR_FILENO))),
        want_final_model_(!flags.distill_to.empty() && flags.distill_final_only) {}

  // Where the session is kept across restarts of the client (only when an enrollment token pays
  // for it: then a restart must not spend another use). "" = not kept.
  void EnableSessionFile(std::string path) {
    session_file_ = std::move(path);
    if (session_file_.empty() || !FileExists(session_file_)) return;
    absl::StatusOr<std::string> text = ReadPrivateFile(session_file_, "session file");
    if (!text.ok()) {
      EDGEFL_LOG_WARN("ignoring the saved session: ", text.status().message());
      return;
    }
    std::vector<std::string> lines = absl::StrSplit(*text, '\n', absl::SkipEmpty());
    int64_t expires = 0;
    if (lines.size() == 2 && absl::SimpleAtoi(lines[1], &expires) &&
        absl::FromUnixSeconds(expires) > absl::Now()) {
      rpc_->SetSession(lines[0], absl::FromUnixSeconds(expires));
    }
  }

  // Returns the process exit code.
  int Run() {
    if (absl::Status s = pipeline_.Load(); !s.ok()) {
      EDGEFL_LOG_WARN("error-feedback state: ", s.ToString());
    }
    while (true) {
      // Renew the session half-way through its life (Join with the session itself).
      if (!client_id_.empty() && absl::Now() >= renew_at_) client_id_.clear();
      if (client_id_.empty() && !JoinWithRetry()) return 1;
      absl::StatusOr<CoordinatorClient::CheckInResult> r =
          rpc_->CheckIn(client_id_, have_version_, poll_timeout_, want_final_model_);
      if (!r.ok()) {
        if (!HandleError(r.status(), "CheckIn")) return 1;
        continue;
      }
      Reachable();
      switch (r->kind) {
        case CoordinatorClient::CheckInResult::Kind::kIdle:
          break;
        case CoordinatorClient::CheckInResult::Kind::kFinished:
          std::printf("fl-client: the federation is finished; took part in %d rounds.\n",
                      rounds_done_);
          return 0;
        case CoordinatorClient::CheckInResult::Kind::kTask:
          RunTask(std::move(*r));
          break;
        case CoordinatorClient::CheckInResult::Kind::kFinalModel: {
          const bool exported = DistillFinal(std::move(*r));
          std::printf("fl-client: the federation is finished; took part in %d rounds.\n",
                      rounds_done_);
          return exported ? 0 : 1;
        }
      }
    }
  }

 private:
  bool JoinWithRetry() {
    proto::JoinRequest req;
    *req.mutable_profile() = MakeProfile(data_.size());
    while (true) {
      absl::StatusOr<proto::JoinResponse> r = rpc_->Join(req);
      if (r.ok()) {
        client_id_ = r->client_id();
        const absl::Time now = absl::Now();
        const absl::Time expires = rpc_->session_expires();
        renew_at_ = expires > now ? now + (expires - now) / 2 : absl::InfiniteFuture();
        SaveSession();
        poll_timeout_ = absl::Seconds(r->checkin_poll_seconds() + 15);
        SetLogTag(absl::StrCat("client-", f_.client_index));
        EDGEFL_LOG_INFO("joined ", f_.server, " as ", client_id_, " with ", data_.size(),
                        " local samples");
        Reachable();
        return true;
      }
      if (!HandleError(r.status(), "Join")) return false;
    }
  }

  void Reachable() {
    backoff_.Reset();
    unreachable_since_.reset();
    reauth_attempts_ = 0;
  }

  void SaveSession() {
    if (session_file_.empty()) return;
    const std::string token = rpc_->session_token();
    const std::string text =
        token.empty()
            ? std::string()
            : absl::StrCat(token, "\n", absl::ToUnixSeconds(rpc_->session_expires()), "\n");
    if (absl::Status s = WriteFileAtomically(session_file_, text, 0600); !s.ok()) {
      EDGEFL_LOG_WARN("could not save the session: ", s.message());
    }
  }

  // Decides what to do after a failed call. Returns false when the client should give up.
  bool HandleError(const absl::Status& s, const char* what) {
    if (absl::IsNotFound(s) && !client_id_.empty()) {
      EDGEFL_LOG_WARN(what, ": ", s.message(), " (the server may have restarted); joining again");
      client_id_.clear();
      return true;
    }
    if (absl::IsUnauthenticated(s) && !client_id_.empty() && ++reauth_attempts_ <= 3) {
      // The session was refused (expired, revoked, or the server's key changed): join again,
      // with the session if it can still be renewed, else with the enrollment token.
      EDGEFL_LOG_WARN(what, ": ", s.message(), "; joining again");
      client_id_.clear();
      return true;
    }
    const bool transient = absl::IsUnavailable(s) || absl::IsDeadlineExceeded(s) ||
                           absl::IsCancelled(s) || absl::IsDataLoss(s) || absl::IsAborted(s) ||
                           absl::IsResourceExhausted(s) || absl::IsInternal(s) ||
                           absl::IsUnknown(s);
    if (!transient) {
      EDGEFL_LOG_ERROR(what, " failed: ", s.ToString());
      std::fprintf(stderr, "%s: %s failed: %s\n", kProgram, what, std::string(s.message()).c_str());
      return false;
    }
    const absl::Time now = absl::Now();
    if (!unreachable_since_) unreachable_since_ = now;
    if (now - *unreachable_since_ > absl::Seconds(f_.max_retry_seconds)) {
      std::fprintf(stderr, "%s: gave up after %.0f s without reaching %s: %s\n", kProgram,
                   f_.max_retry_seconds, f_.server.c_str(), std::string(s.message()).c_str());
      return false;
    }
    const absl::Duration wait = backoff_.Next();
    EDGEFL_LOG_WARN(what, ": ", s.ToString(), "; retrying in ",
                    absl::FormatDuration(absl::Trunc(wait, absl::Milliseconds(1))));
    absl::SleepFor(wait);
    return true;
  }

  // Distils the global model the task trained from into a student on the local data and exports
  // it to --distill_to (atomically replaced). Failures are logged; the federation goes on.
  bool Distill(const proto::Task& task, absl::Span<const float> global) {
    students::DistillOptions o = DistillOptionsFrom(f_);
    o.seed = static_cast<uint64_t>(f_.seed) + task.round();
    o.threads = f_.threads;
    o.teacher_source = absl::StrCat("fl-client global model version ", task.model_version());
    o.teacher_round = task.model_version();
    o.host_check_samples = 200;
    absl::StatusOr<students::DistillReport> r =
        students::DistillAndExport(o, task.spec(), global, data_, nullptr, f_.distill_to);
    if (!r.ok()) {
      EDGEFL_LOG_WARN("round ", task.round(), ": distillation failed: ", r.status().ToString());
      return false;
    }
    last_student_accuracy_ = r->student_int8_local_accuracy;
    EDGEFL_LOG_INFO(absl::StrFormat(
        "%s: exported %s to %s: %d B weights, %d B arena, int8 local accuracy %s",
        task.final_model() ? std::string("final model") : absl::StrCat("round ", task.round()),
        r->student, f_.distill_to, r->weight_bytes, r->arena_bytes,
        r->student_int8_local_accuracy ? absl::StrFormat("%.4f", *r->student_int8_local_accuracy)
                                       : "-"));
    return true;
  }

  // --distill_final_only: distils the federation's final model (rebuilt like a task's download).
  // Returns whether the export succeeded.
  bool DistillFinal(CoordinatorClient::CheckInResult result) {
    const proto::Task& task = result.task;
    if (absl::Status s =
            UpdatePipeline::ApplyDownload(task, result.payload, have_version_, &model_);
        !s.ok()) {
      EDGEFL_LOG_ERROR("cannot use the final model: ", s.ToString());
      return false;
    }
    have_version_ = task.model_version();
    result.payload = std::string();
    EDGEFL_LOG_INFO("distilling the final global model (version ", task.model_version(), ")");
    return Distill(task, model_);
  }

  void RunTask(CoordinatorClient::CheckInResult task_result) {
    const proto::Task& task = task_result.task;
    const absl::Time deadline =
        absl::FromUnixSeconds(0) + absl::Seconds(task.deadline_unix_seconds());
    // Rebuild the round's global model: the full download, or the held model plus a delta.
    if (absl::Status s =
            UpdatePipeline::ApplyDownload(task, task_result.payload, have_version_, &model_);
        !s.ok()) {
      EDGEFL_LOG_ERROR("round ", task.round(), ": cannot use the download: ", s.ToString());
      have_version_ = -1;  // the next CheckIn asks for the full model
      model_.clear();
      return;
    }
    task_result.payload.clear();
    task_result.payload.shrink_to_fit();
    have_version_ = task.model_version();
    if (runner_ == nullptr || runner_->spec().model() != task.spec().model()) {
      runner_.reset();
      absl::StatusOr<std::unique_ptr<models::ModelRunner>> r =
          models::ModelRunner::Create(task.spec().model(), f_.threads);
      if (!r.ok()) {
        EDGEFL_LOG_ERROR("round ", task.round(), ": ", r.status().ToString());
        return;
      }
      runner_ = std::move(*r);
    }
    if (absl::Status s = models::CheckSpecMatches(runner_->spec(), task.spec()); !s.ok()) {
      EDGEFL_LOG_ERROR("round ", task.round(), ": the task's model does not match: ", s.ToString());
      return;
    }
    if (absl::Status s = runner_->SetWeights(model_); !s.ok()) {
      EDGEFL_LOG_ERROR("round ", task.round(), ": cannot load the global model: ", s.ToString());
      return;
    }
    models::TrainOptions opts;
    opts.epochs = task.config().epochs();
    opts.batch_size = task.config().batch_size();
    opts.lr = task.config().lr();
    opts.momentum = task.config().momentum();
    opts.weight_decay = task.config().weight_decay();
    opts.max_samples = task.config().max_samples();
    opts.seed = task.config().seed() ^ (0x9e3779b97f4a7c15ULL * (f_.client_index + 1));
    EDGEFL_LOG_INFO("round ", task.round(), ": training on ", data_.size(), " samples (",
                    opts.epochs, " epoch(s), batch ", opts.batch_size, ", lr ", opts.lr, ")");
    absl::Time last_draw = absl::InfinitePast();
    int64_t batches = 0;
    auto progress = [&](int64_t done, int64_t total, double loss) {
      // The first batches run one-time code (oneDNN primitive creation, the autograd engine's
      // start) whose pages would otherwise stay resident through the whole round.
      if (++batches <= 2) ReleaseIdleLibraryPages();
      if (!tty_) return;
      const absl::Time now = absl::Now();
      if (done < total && now - last_draw < absl::Milliseconds(200)) return;
      last_draw = now;
      std::fprintf(stderr, "\r  round %lld  %6lld/%lld samples  loss %.4f   ",
                   static_cast<long long>(task.round()), static_cast<long long>(done),
                   static_cast<long long>(total), loss);
      if (done >= total) std::fprintf(stderr, "\n");
    };
    // LibTorch's start-up touched tens of MiB of library code that training never runs again;
    // hand those clean pages back before the round's peak (the ones training needs fault back in).
    const int64_t rss_before = CurrentRssBytes();
    ReleaseIdleLibraryPages();
    EDGEFL_LOG_INFO("memory: resident ", rss_before >> 20, " MiB, ", CurrentRssBytes() >> 20,
                    " MiB after releasing idle library pages; peak so far ", PeakRssBytes() >> 20,
                    " MiB");
    // Park the global model on disk while training; it comes back however RunTask leaves.
    const size_t model_size = model_.size();
    if (f_.spill_model && !f_.state_dir.empty()) {
      absl::StatusOr<std::unique_ptr<SpilledFloats>> spill =
          SpilledFloats::Create(f_.state_dir, &model_);
      if (spill.ok()) {
        spilled_ = std::move(*spill);
      } else {
        EDGEFL_LOG_WARN("keeping the global model in memory: ", spill.status().message());
      }
    }
    struct RestoreModel {
      Client* c;
      ~RestoreModel() { c->UnspillModel(); }
    } restore_model{this};
    absl::StatusOr<models::TrainResult> trained = runner_->Train(data_, opts, progress);
    if (!trained.ok()) {
      EDGEFL_LOG_ERROR("round ", task.round(), ": training failed: ", trained.status().ToString());
      return;
    }
    std::vector<float> delta;
    runner_->GetWeights(&delta);
    if (delta.size() != model_size) {
      EDGEFL_LOG_ERROR("round ", task.round(), ": model size changed during training");
      return;
    }
    if (spilled_ != nullptr) {
      absl::Status s = spilled_->Read([&](size_t offset, absl::Span<const float> global) {
        float* d = delta.data() + offset;
        for (size_t i = 0; i < global.size(); ++i) d[i] -= global[i];
      });
      if (!s.ok()) {
        EDGEFL_LOG_ERROR("round ", task.round(),
                         ": cannot read the global model back: ", s.ToString());
        return;
      }
    } else {
      for (size_t i = 0; i < delta.size(); ++i) delta[i] -= model_[i];
    }
    // Consumes the delta: a dense update is the delta vector itself.
    absl::StatusOr<EncodedUpdate> update = pipeline_.Encode(task, std::move(delta), opts.seed);
    if (!update.ok()) {
      EDGEFL_LOG_ERROR("round ", task.round(),
                       ": cannot encode the update: ", update.status().ToString());
      return;
    }

    proto::ReportHeader header;
    header.set_client_id(client_id_);
    header.set_round(task.round());
    header.set_attempt(task.attempt());
    header.set_model_version(task.model_version());
    header.set_num_samples(trained->samples);
    *header.mutable_spec() = task.spec();
    header.set_codec(update->codec);
    header.mutable_metrics()->set_train_loss(trained->mean_loss);
    header.mutable_metrics()->set_train_accuracy(trained->accuracy);
    header.mutable_metrics()->set_train_seconds(trained->seconds);
    header.mutable_metrics()->set_num_samples(trained->samples);
    if (last_student_accuracy_) {
      header.mutable_metrics()->set_student_local_accuracy(*last_student_accuracy_);
    }
    const std::string_view payload = update->payload();
    // Retry a transient upload failure while the round is still open.
    while (true) {
      uint64_t bytes_up = 0;
      absl::StatusOr<proto::ReportResponse> r = rpc_->Report(header, payload, deadline, &bytes_up);
      if (r.ok()) {
        ++rounds_done_;
        if (absl::Status s = pipeline_.Commit(); !s.ok()) {
          EDGEFL_LOG_WARN("could not save the error-feedback residual: ", s.ToString());
        }
        if (!f_.distill_to.empty() && !f_.distill_final_only) {
          *update = EncodedUpdate();  // free the update before the model comes back
          UnspillModel();
          if (!model_.empty()) Distill(task, model_);
        }
        EDGEFL_LOG_INFO(absl::StrFormat(
            "round %d: reported %d samples, train loss %.4f acc %.4f, %.1f s training, "
            "%.3f MB down (%s), %.3f MB up (%s)",
            task.round(), trained->samples, trained->mean_loss, trained->accuracy, trained->seconds,
            task_result.bytes_down / 1e6, task.downlink_codec(), bytes_up / 1e6, header.codec()));
        Reachable();
        return;
      }
      const absl::Status& s = r.status();
      if (absl::IsFailedPrecondition(s) || absl::IsPermissionDenied(s) ||
          absl::IsInvalidArgument(s)) {
        EDGEFL_LOG_WARN("round ", task.round(), ": update not accepted: ", s.ToString());
        pipeline_.Rollback();
        return;
      }
      if (absl::Now() > deadline || !HandleError(s, "Report") || client_id_.empty()) {
        pipeline_.Rollback();  // the update is lost (or we are re-joining)
        return;
      }
    }
  }

  // Reads the global model back from where RunTask parked it (no-op when it is in memory); on
  // failure the next CheckIn asks for the full model.
  void UnspillModel() {
    if (spilled_ == nullptr) return;
    std::unique_ptr<SpilledFloats> spill = std::move(spilled_);
    model_.resize(spill->size());
    absl::Status s = spill->Read([&](size_t offset, absl::Span<const float> block) {
      std::memcpy(model_.data() + offset, block.data(), block.size() * sizeof(float));
    });
    if (!s.ok()) {
      EDGEFL_LOG_WARN("lost the global model: ", s.message(),
                      "; the next round downloads it whole");
      have_version_ = -1;
      model_.clear();
      model_.shrink_to_fit();
    }
  }

  const ClientFlags f_;
  std::unique_ptr<CoordinatorClient> rpc_;
  std::unique_ptr<models::ModelRunner> runner_;
  data::ImageDataset data_;
  UpdatePipeline pipeline_;
  Backoff backoff_;
  const bool tty_;
  std::string client_id_;
  std::vector<float> model_;  // the global model version have_version_ (downlink base)
  std::unique_ptr<SpilledFloats> spilled_;  // model_'s content while RunTask trains, or null
  int64_t have_version_ = -1;
  absl::Duration poll_timeout_ = absl::Seconds(35);
  absl::Time renew_at_ = absl::InfiniteFuture();
  std::string session_file_;
  int reauth_attempts_ = 0;
  std::optional<absl::Time> unreachable_since_;
  int rounds_done_ = 0;
  std::optional<double> last_student_accuracy_;  // of the last --distill_to export
  const bool want_final_model_;                  // --distill_final_only
};

int Main(int argc, char** argv) {
  ClientFlags f;
  FlagSet flags(
      kProgram,
      "The edgefl device runtime: joins a coordinator, waits for tasks, fine-tunes the\n"
      "global model on local data that never leaves the device, and uploads the\n"
      "update. Exits 0 when the coordinator says the federation is finished.\n\n"
      "  fl-client --server host:50051 --ca_cert ca.pem --data fmnist --partition-file F \\\n"
      "            --client-index 3\n"
      "  fl-client --server host:50051 --ca_cert ca.pem --token_file device.token \\\n"
      "            --partition dirichlet:0.5 --num-partitions 10 --client-index 3 --seed 0\n"
      "  fl-client --server host:50051 --ca_cert ca.pem --tls_cert client-3.pem \\\n"
      "            --tls_key client-3.key ...      (mutual TLS)\n"
      "  fl-client --server localhost:50051 --insecure ...   (plaintext, trusted network)\n\n"
      "TLS is required unless --insecure is given. The enrollment token comes from\n"
      "--token_file or $EDGEFL_ENROLLMENT_TOKEN (never from the command line).");
  flags.String("server", &f.server, "coordinator address host:port");
  flags.String("data", &f.data, "local data set: fmnist (Fashion-MNIST training images)");
  flags.String("data_dir", &f.data_dir, "folder with the Fashion-MNIST .gz files");
  flags.String("partition_file", &f.partition_file,
               "workload partition file (lines '<client> <n> <idx...>'); wins over --partition");
  flags.String("partition", &f.partition,
               "how to split the training set: iid, dirichlet:<alpha>, "
               "labels:<n classes per client>");
  flags.Int("num_partitions", &f.num_partitions, "number of shards for --partition");
  flags.Int("client_index", &f.client_index, "which shard this device holds (0-based)");
  flags.Int64("seed", &f.seed, "seed of the partition and of local shuffling");
  flags.Int("threads", &f.threads, "torch and OpenBLAS compute threads");
  flags.Double("max_retry_seconds", &f.max_retry_seconds,
               "give up after the server has been unreachable this long");
  flags.Double("rpc_timeout", &f.rpc_timeout, "deadline of Join and the floor of Report (s)");
  flags.Int("max_message_mb", &f.max_message_mb, "gRPC message size limit, both directions");
  flags.String("progress", &f.progress,
               "training progress line: auto (on a terminal), always, never");
  flags.String("distill_to", &f.distill_to,
               "after each round it takes part in, distil the global model it trained from into a "
               "microcontroller student on the local data and export it (C library + manifest.json)"
               " to this folder; empty = off");
  flags.String("distill_student", &f.distill_student, "student architecture for --distill_to");
  flags.Int("distill_epochs", &f.distill_epochs, "distillation epochs per export");
  flags.Int("distill_samples", &f.distill_samples,
            "local images used per distillation (0 = all; distillation delays the next CheckIn)");
  flags.Bool("distill_final_only", &f.distill_final_only,
             "with --distill_to: distil once, from the federation's final global model (fetched "
             "when the coordinator says the run is finished), instead of after every round");
  flags.String("state_dir", &f.state_dir,
               "folder for the device's state (the error-feedback residual survives restarts "
               "there); empty = keep it in memory only");
  flags.Bool("spill_model", &f.spill_model,
             "park the global model in an unlinked file in --state_dir while training (about "
             "-5 MiB of peak memory for fedavg_cnn, one model-sized write per round)");
  flags.Bool("insecure", &f.insecure,
             "plaintext (no TLS): only on a trusted network, never in production");
  flags.String("ca_cert", &f.ca_cert,
               "CA certificate (PEM) that signed the server's certificate; 'system' = the "
               "system roots");
  flags.String("tls_cert", &f.tls_cert, "client certificate (PEM) for mutual TLS");
  flags.String("tls_key", &f.tls_key, "its private key (PEM; refused if group/other can read it)");
  flags.String("tls_server_name", &f.tls_server_name,
               "name to verify the server certificate against instead of --server's host");
  flags.String("token_file", &f.token_file,
               "file holding this device's enrollment token (default $EDGEFL_ENROLLMENT_TOKEN); "
               "refused if group/other can read it");
  flags.ParseOrExit(argc, argv);
  if (!flags.positional().empty()) {
    ExitUsageError(kProgram, absl::StrCat("unexpected argument '", flags.positional()[0], "'"));
  }
  CoordinatorClient::Options rpc_opts;
  ConfigureTransport(f, &rpc_opts);
  const std::string enrollment_token = LoadEnrollmentToken(f);
  if (f.threads < 1) ExitUsageError(kProgram, "--threads must be >= 1");
  if (f.num_partitions < 1) ExitUsageError(kProgram, "--num_partitions must be >= 1");
  if (f.progress != "auto" && f.progress != "always" && f.progress != "never") {
    ExitUsageError(kProgram, "--progress must be auto, always or never");
  }
  if (f.distill_final_only && f.distill_to.empty()) {
    ExitUsageError(kProgram, "--distill_final_only needs --distill_to");
  }
  if (f.distill_epochs < 1) ExitUsageError(kProgram, "--distill_epochs must be >= 1");
  if (f.distill_samples < 0) ExitUsageError(kProgram, "--distill_samples must be >= 0");
  if (!f.distill_to.empty()) {
    // Fail now, not after the first round: an unknown student, one over budget, or a folder that
    // cannot be written.
    if (absl::Status s = students::CheckDistillTarget(DistillOptionsFrom(f), f.distill_to); !s.ok()) {
      ExitUsageError(kProgram, absl::StrCat("--distill_to: ", s.message()));
    }
  }
  SetLogTag(absl::StrCat("client-", f.client_index));
  SetBlasThreads(f.threads);
  // Model copies go back to the kernel when freed; activations are reused without page faults.
  TuneMallocForTraining();
  // LibTorch's start-up (operator registration above all) touched tens of MiB of library pages
  // that nothing uses again; drop them before loading the shard.
  ReleaseIdleLibraryPages();

  absl::StatusOr<data::ImageDataset> data =
      data::LoadDeviceShard(data::ShardSourceFromFlags(f));
  if (!data.ok()) ExitUsageError(kProgram, std::string(data.status().message()));
  if (data->size() == 0) ExitUsageError(kProgram, "the local shard is empty");
  // The model is named by the server's task; the runner is created for it on the first task.
  rpc_opts.target = f.server;
  rpc_opts.rpc_timeout = absl::Seconds(f.rpc_timeout);
  rpc_opts.max_message_mb = f.max_message_mb;
  if (!f.state_dir.empty()) {
    if (absl::Status s = MakeDirs(f.state_dir); !s.ok()) {
      ExitUsageError(kProgram, absl::StrCat("--state_dir: ", s.message()));
    }
  }
  if (std::string expired = CertificateExpiredAt(rpc_opts.client_cert_pem); !expired.empty()) {
    EDGEFL_LOG_WARN("--tls_cert ", f.tls_cert, " expired at ", expired,
                    "; the server will refuse it");
  }
  if (f.insecure) {
    EDGEFL_LOG_WARN("--insecure: talking PLAINTEXT to ", f.server,
                    "; the model, the update and the credentials travel unencrypted and the "
                    "server is not authenticated");
  }
  std::unique_ptr<CoordinatorClient> rpc = CoordinatorClient::Create(rpc_opts);
  rpc->SetEnrollmentToken(enrollment_token);
  Client client(f, std::move(rpc), std::move(*data));
  if (!enrollment_token.empty() && !f.state_dir.empty()) {
    client.EnableSessionFile(absl::StrCat(f.state_dir, "/client-", f.client_index, ".session"));
  }
  // And the pages loading the shard and setting up the channel touched, before the first download.
  ReleaseIdleLibraryPages();
  return client.Run();
}

}  // namespace
}  // namespace edgefl::client

int main(int argc, char** argv) { return edgefl::client::Main(argc, argv); }
