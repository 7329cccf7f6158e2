#include "client/device_runtime.h"

#include <sys/statvfs.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <random>
#include <thread>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "common/file_util.h"
#include "common/log.h"
#include "common/memory.h"
#include "common/status_reason.h"
#include "common/transient_status.h"
#include "models/model_spec.h"

namespace edgefl::client {
namespace {

// Prefixes a step's error with what failed, keeping the code: "<what>: <CODE>: <message>".
absl::Status Context(const char* what, const absl::Status& s) {
  return absl::Status(s.code(), absl::StrCat(what, ": ", s.ToString()));
}

// The seed of a task's local shuffling and of its update's stochastic encoding.
uint64_t TrainingSeed(const proto::Task& task, int client_index) {
  return task.config().seed() ^ (0x9e3779b97f4a7c15ULL * (client_index + 1));
}

class ExportingDistiller : public Distiller {
 public:
  ExportingDistiller(students::DistillOptions options, uint64_t seed, std::string out_dir)
      : options_(std::move(options)), seed_(seed), out_dir_(std::move(out_dir)) {}

  absl::StatusOr<students::DistillReport> Distill(const proto::Task& task,
                                                absl::Span<const float> global,
                                                const data::ImageDataset& local) override {
    students::DistillOptions o = options_;
    o.seed = seed_ + task.round();
    o.teacher_source = absl::StrCat("fl-client global model version ", task.model_version());
    o.teacher_round = task.model_version();
    o.host_check_samples = 200;
    return students::DistillAndExport(o, task.spec(), global, local, nullptr, out_dir_);
  }

 private:
  const students::DistillOptions options_;
  const uint64_t seed_;
  const std::string out_dir_;
};

}  // namespace

std::unique_ptr<Distiller> NewExportingDistiller(students::DistillOptions options, uint64_t seed,
                                                 std::string out_dir) {
  return std::make_unique<ExportingDistiller>(std::move(options), seed, std::move(out_dir));
}

proto::DeviceProfile DescribeThisDevice() {
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
  return p;
}

// The global model a round trains from is needed again only after training (for the delta, as
// the next downlink's base, for distillation). While training it can wait in a file of the state
// folder instead of in memory: the page cache holds it, not the process (6.65 MB of fedavg_cnn
// off the round's memory peak). The file is unlinked as soon as it is created, so clients sharing
// a state folder never collide and nothing is left behind, even after a crash.
class DeviceRuntime::Spill {
 public:
  // Writes `values` to a new unlinked file in `dir` and frees them (`*values` ends up empty).
  static absl::StatusOr<std::unique_ptr<Spill>> Create(const std::string& dir,
                                                       std::vector<float>* values) {
    std::string path = dir + "/.spill-XXXXXX";
    const int fd = mkstemp(path.data());
    if (fd < 0) return absl::InternalError(absl::StrCat(path, ": ", std::strerror(errno)));
    unlink(path.c_str());
    std::unique_ptr<Spill> file(new Spill(fd, values->size()));
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
  ~Spill() { close(fd_); }

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
  Spill(int fd, size_t size) : fd_(fd), size_(size) {}
  int fd_;
  size_t size_;
};

absl::StatusOr<std::unique_ptr<DeviceRuntime>> DeviceRuntime::Create(
    const Options& options, std::unique_ptr<Coordinator> coordinator, data::ImageDataset data,
    const Clock* clock, std::unique_ptr<Distiller> distiller, RunnerFactory runners) {
  if (coordinator == nullptr || clock == nullptr) {
    return absl::InvalidArgumentError("DeviceRuntime needs a coordinator and a clock");
  }
  if (data.size() == 0) return absl::InvalidArgumentError("the local shard is empty");
  if (options.distill_final_only && distiller == nullptr) {
    return absl::InvalidArgumentError("distill_final_only needs a distiller");
  }
  if (!runners) runners = &models::ModelRunner::Create;
  std::unique_ptr<DeviceRuntime> runtime(
      new DeviceRuntime(options, std::move(coordinator), std::move(data), clock,
                        std::move(distiller), std::move(runners)));
  runtime->LoadSession();
  return runtime;
}

DeviceRuntime::DeviceRuntime(const Options& options, std::unique_ptr<Coordinator> coordinator,
                             data::ImageDataset data, const Clock* clock,
                             std::unique_ptr<Distiller> distiller, RunnerFactory runners)
    : options_(options),
      rpc_(std::move(coordinator)),
      data_(std::move(data)),
      clock_(clock),
      distiller_(std::move(distiller)),
      runners_(std::move(runners)),
      pipeline_(options.state_dir.empty()
                    ? std::string()
                    : absl::StrCat(options.state_dir, "/client-", options.client_index, ".ef")),
      feddyn_(options.state_dir.empty()
                  ? std::string()
                  : absl::StrCat(options.state_dir, "/client-", options.client_index, ".feddyn")),
      backoff_(options.backoff, options.seed * 7919 + options.client_index),
      retry_rng_(options.seed * 104729 + options.client_index) {
  device_state_ = options.device_state;
  if (!device_state_) {
    auto reader = std::make_shared<DeviceStateReader>("/");
    device_state_ = [reader] { return reader->Read(); };
  }
}

proto::DeviceProfile DeviceRuntime::CurrentProfile(const DeviceState& state) const {
  proto::DeviceProfile p = options_.profile;
  p.set_num_samples(data_.size());
  FillProfile(state, &p);
  return p;
}

namespace {
// The device's own conditions tightened by the round's (config client.min_battery_percent, ...).
EligibilityThresholds Stricter(EligibilityThresholds t, const proto::TaskConfig& c) {
  auto tighter_max = [](double own, double round) {
    if (round <= 0) return own;
    return own <= 0 ? round : std::min(own, round);
  };
  t.min_battery_percent = std::max(t.min_battery_percent, c.min_battery_percent());
  t.max_temperature_c = tighter_max(t.max_temperature_c, c.max_temperature_c());
  t.require_charging = t.require_charging || c.require_charging();
  t.max_load_per_core = tighter_max(t.max_load_per_core, c.max_load_per_core());
  return t;
}
}  // namespace

std::string DeviceRuntime::DeclineReasonFor(const proto::Task& task, std::string* why) {
  const DeviceState state = device_state_();
  const EligibilityThresholds t = Stricter(options_.thresholds, task.config());
  const std::string reason = DeclineReason(state, t);
  if (!reason.empty()) {
    *why = DescribeDecline(reason, state, t);
    return reason;
  }
  if (options_.train_window && !options_.train_window->Contains(clock_->Now(), options_.time_zone)) {
    *why = absl::StrCat("outside --train_window ", options_.train_window->ToString(), " (local ",
                        absl::FormatTime("%H:%M", clock_->Now(), options_.time_zone), ")");
    return "outside_train_window";
  }
  return "";
}

void DeviceRuntime::Decline(const proto::Task& task, const std::string& reason,
                            const std::string& why) {
  // Told to the server with the next CheckIn, which then does not wait for this device.
  EDGEFL_LOG_WARN("round ", task.round(), " (attempt ", task.attempt(), "): declining the task: ",
                  why, " [", reason, "]");
  ++tasks_declined_;
  pending_decline_.set_declined_reason(reason);
  pending_decline_.set_declined_round(task.round());
  pending_decline_.set_declined_attempt(task.attempt());
}

DeviceRuntime::~DeviceRuntime() = default;

void DeviceRuntime::LoadSession() {
  const std::string& file = options_.session_file;
  if (file.empty() || !FileExists(file)) return;
  absl::StatusOr<std::string> text = ReadPrivateFile(file, "session file");
  if (!text.ok()) {
    EDGEFL_LOG_WARN("ignoring the saved session: ", text.status().message());
    return;
  }
  std::vector<std::string> lines = absl::StrSplit(*text, '\n', absl::SkipEmpty());
  int64_t expires = 0;
  if (lines.size() == 2 && absl::SimpleAtoi(lines[1], &expires) &&
      absl::FromUnixSeconds(expires) > clock_->Now()) {
    rpc_->SetSession(lines[0], absl::FromUnixSeconds(expires));
  }
}

void DeviceRuntime::SaveSession() {
  if (options_.session_file.empty()) return;
  const std::string token = rpc_->session_token();
  const std::string text =
      token.empty() ? std::string()
                    : absl::StrCat(token, "\n", absl::ToUnixSeconds(rpc_->session_expires()), "\n");
  if (absl::Status s = WriteFileAtomically(options_.session_file, text, 0600); !s.ok()) {
    EDGEFL_LOG_WARN("could not save the session: ", s.message());
  }
}

absl::Status DeviceRuntime::Run() {
  if (absl::Status s = pipeline_.Load(); !s.ok()) {
    EDGEFL_LOG_WARN("error-feedback state: ", s.ToString());
  }
  if (absl::Status s = feddyn_.Load(); !s.ok()) EDGEFL_LOG_WARN("FedDyn state: ", s.ToString());
  const bool distill_final = distiller_ != nullptr && options_.distill_final_only;
  const bool wait_for_next_run = options_.after_finish_poll > absl::ZeroDuration();
  bool final_distilled = false;  // this run's final model (with wait_for_next_run)
  while (true) {
    const bool want_final_model = distill_final && !final_distilled;
    // Renew the session half-way through its life (Join with the session itself).
    if (!client_id_.empty() && clock_->Now() >= renew_at_) client_id_.clear();
    if (client_id_.empty()) {
      if (absl::Status s = JoinWithRetry(); !s.ok()) return s;
    }
    // Every CheckIn refreshes the profile (battery, temperature, load) and delivers a decline.
    proto::CheckInRequest extras = pending_decline_;
    *extras.mutable_profile() = CurrentProfile(device_state_());
    absl::StatusOr<Coordinator::CheckInResult> r =
        rpc_->CheckIn(client_id_, have_version_, poll_timeout_, want_final_model, extras);
    if (!r.ok()) {
      if (absl::Status s = HandleError(r.status(), "CheckIn"); !s.ok()) return s;
      continue;
    }
    pending_decline_.Clear();
    Reachable();
    switch (r->kind) {
      case Coordinator::CheckInResult::Kind::kIdle:
        break;
      case Coordinator::CheckInResult::Kind::kFinished:
        if (!wait_for_next_run) {
          finished_ = true;
          return absl::OkStatus();
        }
        WaitForNextRun();
        break;
      case Coordinator::CheckInResult::Kind::kTask:
        if (finished_) {
          EDGEFL_LOG_INFO("a new run started (round ", r->task.round(), ", model ",
                          r->task.spec().model(), "); taking part");
          finished_ = false;
          final_distilled = false;
        }
        if (AlreadyTrained(r->task)) {
          // A well-behaved coordinator never sends one; do not let one that does spin the loop.
          EDGEFL_LOG_WARN("round ", r->task.round(), " (attempt ", r->task.attempt(),
                          "): already reported in this session; not training it again");
          clock_->SleepFor(absl::Seconds(1));
          break;
        }
        if (std::string why, reason = DeclineReasonFor(r->task, &why); !reason.empty()) {
          const auto task_id = std::make_pair(static_cast<int64_t>(r->task.round()),
                                              static_cast<int64_t>(r->task.attempt()));
          if (last_declined_ == task_id) {
            // Offered again (a coordinator that ignores declines): look again in a while.
            clock_->SleepFor(absl::Seconds(5));
          }
          last_declined_ = task_id;
          Decline(r->task, reason, why);
          break;
        }
        RunTask(std::move(*r));
        break;
      case Coordinator::CheckInResult::Kind::kFinalModel:
        if (!wait_for_next_run) {
          finished_ = true;
          return DistilFinal(std::move(*r));
        }
        // Its failure is logged; the device waits for the next run all the same.
        DistilFinal(std::move(*r)).IgnoreError();
        final_distilled = true;
        WaitForNextRun();
        break;
    }
  }
}

void DeviceRuntime::WaitForNextRun() {
  if (!finished_) {
    finished_ = true;
    EDGEFL_LOG_INFO("the federation is finished (took part in ", rounds_done_,
                    " rounds so far); checking for a new run every ",
                    absl::FormatDuration(options_.after_finish_poll));
    // The next run starts from its own model, numbered from its own versions: never apply its
    // delta to this run's model.
    UnspillModel();
    model_.clear();
    model_.shrink_to_fit();
    have_version_ = -1;
    last_trained_.reset();
    last_declined_.reset();
  }
  clock_->SleepFor(options_.after_finish_poll);
}

absl::Status DeviceRuntime::JoinWithRetry() {
  proto::JoinRequest req;
  *req.mutable_profile() = CurrentProfile(device_state_());
  while (true) {
    absl::StatusOr<proto::JoinResponse> r = rpc_->Join(req);
    if (r.ok()) {
      client_id_ = r->client_id();
      last_trained_.reset();
      const absl::Time now = clock_->Now();
      const absl::Time expires = rpc_->session_expires();
      renew_at_ = expires > now ? now + (expires - now) / 2 : absl::InfiniteFuture();
      SaveSession();
      poll_timeout_ = CheckInTimeout(*r, options_.min_download_bytes_per_second);
      SetLogTag(absl::StrCat("client-", options_.client_index));
      EDGEFL_LOG_INFO("joined ", options_.server, " as ", client_id_, " with ", data_.size(),
                      " local samples");
      // Reachable, but a session refused again right after this Join still counts towards the
      // re-join bound (a CheckIn or Report that succeeds clears it).
      const int reauth_attempts = reauth_attempts_;
      Reachable();
      reauth_attempts_ = reauth_attempts;
      return absl::OkStatus();
    }
    if (absl::Status s = HandleError(r.status(), "Join"); !s.ok()) return s;
  }
}

void DeviceRuntime::Reachable() {
  backoff_.Reset();
  unreachable_since_.reset();
  reauth_attempts_ = 0;
}

absl::Status DeviceRuntime::HandleError(const absl::Status& s, const char* what) {
  if (absl::IsNotFound(s) && !client_id_.empty()) {
    EDGEFL_LOG_WARN(what, ": ", s.message(), " (the server may have restarted); joining again");
    client_id_.clear();
    return absl::OkStatus();
  }
  if (absl::IsUnauthenticated(s) && !client_id_.empty() && ++reauth_attempts_ <= 3) {
    // The session was refused (expired, revoked, or the server's key changed): join again,
    // with the session if it can still be renewed, else with the enrollment token.
    EDGEFL_LOG_WARN(what, ": ", s.message(), "; joining again");
    client_id_.clear();
    return absl::OkStatus();
  }
  if (!IsTransient(s)) {
    EDGEFL_LOG_ERROR(what, " failed: ", s.ToString());
    return absl::Status(s.code(), absl::StrCat(what, " failed: ", s.message()));
  }
  const absl::Time now = clock_->Now();
  if (!unreachable_since_) unreachable_since_ = now;
  if (now - *unreachable_since_ > options_.max_unreachable) {
    return absl::Status(s.code(), absl::StrFormat("gave up after %.0f s without reaching %s: %s",
                                                  absl::ToDoubleSeconds(options_.max_unreachable),
                                                  options_.server, s.message()));
  }
  const absl::Duration wait = backoff_.Next();
  EDGEFL_LOG_WARN(what, ": ", s.ToString(), "; retrying in ",
                  absl::FormatDuration(absl::Trunc(wait, absl::Milliseconds(1))));
  clock_->SleepFor(wait);
  return absl::OkStatus();
}

bool DeviceRuntime::AlreadyTrained(const proto::Task& task) const {
  if (!last_trained_) return false;
  const auto& [round, attempt] = *last_trained_;
  return task.round() < round || (task.round() == round && task.attempt() <= attempt);
}

void DeviceRuntime::RunTask(Coordinator::CheckInResult task_result) {
  const proto::Task& task = task_result.task;
  if (absl::Status s = PrepareModel(&task_result); !s.ok()) {
    EDGEFL_LOG_ERROR("round ", task.round(), ": ", s.message());
    return;
  }
  batch_override_ = 0;
  if (options_.max_rss_bytes > 0) {
    if (activation_per_sample_ <= 0) activation_per_sample_ = options_.activation_bytes_per_sample;
    const int asked = std::max(1, task.config().batch_size());
    const int64_t model_bytes = static_cast<int64_t>(model_.size() * sizeof(float));
    int64_t estimate = 0;
    const int batch = BatchWithinRssBudget(options_.max_rss_bytes, CurrentRssBytes(), model_bytes,
                                           activation_per_sample_, asked, &estimate);
    if (batch == 0) {
      Decline(task, "rss_budget",
              absl::StrCat("estimated peak ", estimate >> 20, " MiB at batch 1 > --max_rss_mb ",
                           options_.max_rss_bytes >> 20));
      return;
    }
    if (batch < asked) {
      EDGEFL_LOG_WARN("round ", task.round(), ": batch ", asked, " -> ", batch,
                      " to stay under --max_rss_mb ", options_.max_rss_bytes >> 20,
                      " (estimated peak ", estimate >> 20, " MiB)");
      batch_override_ = batch;
    }
  }
  // Train parks the global model on disk; it comes back however this round ends.
  struct RestoreModel {
    DeviceRuntime* r;
    ~RestoreModel() { r->UnspillModel(); }
  } restore_model{this};
  absl::StatusOr<Trained> trained = Train(task);
  if (!trained.ok()) {
    EDGEFL_LOG_ERROR("round ", task.round(), ": ", trained.status().message());
    return;
  }
  absl::StatusOr<EncodedUpdate> update = Encode(task, std::move(trained->delta));
  if (!update.ok()) {
    EDGEFL_LOG_ERROR("round ", task.round(), ": ", update.status().message());
    return;
  }
  if (!Upload(task, trained->result, std::move(*update), task_result.bytes_down).ok()) return;
  if (distiller_ != nullptr && !options_.distill_final_only) {
    UnspillModel();
    if (!model_.empty()) Distil(task, model_).IgnoreError();  // logged; the federation goes on
  }
}

absl::Status DeviceRuntime::PrepareModel(Coordinator::CheckInResult* task_result) {
  const proto::Task& task = task_result->task;
  UnspillModel();
  // Rebuild the round's global model: the full download, or the held model plus a delta.
  if (absl::Status s =
          UpdatePipeline::ApplyDownload(task, task_result->payload, have_version_, &model_);
      !s.ok()) {
    have_version_ = -1;  // the next CheckIn asks for the full model
    model_.clear();
    return Context("cannot use the download", s);
  }
  task_result->payload.clear();
  task_result->payload.shrink_to_fit();
  have_version_ = task.model_version();
  if (runner_ == nullptr || runner_->spec().model() != task.spec().model()) {
    runner_.reset();
    absl::StatusOr<std::unique_ptr<models::ModelRunner>> r =
        runners_(task.spec().model(), options_.threads);
    if (!r.ok()) return absl::Status(r.status().code(), r.status().ToString());
    runner_ = std::move(*r);
  }
  if (absl::Status s = models::CheckSpecMatches(runner_->spec(), task.spec()); !s.ok()) {
    return Context("the task's model does not match", s);
  }
  if (absl::Status s = runner_->SetWeights(model_); !s.ok()) {
    return Context("cannot load the global model", s);
  }
  return absl::OkStatus();
}

absl::StatusOr<DeviceRuntime::Trained> DeviceRuntime::Train(const proto::Task& task) {
  if (runner_ == nullptr) return absl::FailedPreconditionError("no model loaded (PrepareModel)");
  models::TrainOptions opts;
  opts.epochs = task.config().epochs();
  opts.batch_size = batch_override_ > 0 ? batch_override_ : task.config().batch_size();
  last_batch_size_ = opts.batch_size;
  opts.lr = task.config().lr();
  opts.momentum = task.config().momentum();
  opts.weight_decay = task.config().weight_decay();
  opts.proximal_mu = task.config().proximal_mu();
  if (task.config().has_restricted_softmax_alpha()) {
    opts.restricted_softmax_alpha = task.config().restricted_softmax_alpha();
  }
  opts.freeze_head = task.config().freeze_head();
  if (task.config().ntd_beta() > 0) {
    opts.not_true_distillation_beta = task.config().ntd_beta();
    opts.not_true_distillation_tau = task.config().ntd_tau();
  }
  opts.max_samples = task.config().max_samples();
  opts.seed = TrainingSeed(task, options_.client_index);
  EDGEFL_LOG_INFO("round ", task.round(), ": training on ", data_.size(), " samples (", opts.epochs,
                  " epoch(s), batch ", opts.batch_size, ", lr ", opts.lr, ")");
  absl::Time last_draw = absl::InfinitePast();
  int64_t batches = 0;
  auto progress = [&](int64_t done, int64_t total, double loss) {
    // The first batches run one-time code (oneDNN primitive creation, the autograd engine's
    // start) whose pages would otherwise stay resident through the whole round.
    if (++batches <= 2) ReleaseIdleLibraryPages();
    if (!options_.show_progress) return;
    const absl::Time now = clock_->Now();
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
  // Park the global model on disk while training (UnspillModel brings it back).
  const size_t model_size = model_.size();
  if (options_.spill_model && !options_.state_dir.empty() && spilled_ == nullptr) {
    absl::StatusOr<std::unique_ptr<Spill>> spill = Spill::Create(options_.state_dir, &model_);
    if (spill.ok()) {
      spilled_ = std::move(*spill);
    } else {
      EDGEFL_LOG_WARN("keeping the global model in memory: ", spill.status().message());
    }
  }
  // FedDyn: the proximal weight is alpha and the device's linear term is subtracted.
  const double feddyn_alpha = task.config().feddyn_alpha();
  if (feddyn_alpha > 0) {
    opts.proximal_mu = feddyn_alpha;
    opts.linear_term = feddyn_.For(model_size);
  }
  const int64_t peak_before = PeakRssBytes();
  absl::StatusOr<models::TrainResult> result = runner_->Train(data_, opts, progress);
  if (!result.ok()) return Context("training failed", result.status());
  if (options_.max_rss_bytes > 0 && PeakRssBytes() > peak_before && opts.batch_size > 0) {
    // This round set a new peak: learn the activation memory per sample from it.
    const int64_t grown = PeakRssBytes() - rss_before -
                          4 * static_cast<int64_t>(model_size * sizeof(float));
    activation_per_sample_ = std::max<int64_t>(4096, grown / opts.batch_size);
  }
  Trained trained;
  trained.result = *result;
  std::vector<float>& delta = trained.delta;
  runner_->GetWeights(&delta);
  if (delta.size() != model_size) {
    return absl::InternalError("model size changed during training");
  }
  if (spilled_ != nullptr) {
    absl::Status s = spilled_->Read([&](size_t offset, absl::Span<const float> global) {
      float* d = delta.data() + offset;
      for (size_t i = 0; i < global.size(); ++i) d[i] -= global[i];
    });
    if (!s.ok()) return Context("cannot read the global model back", s);
  } else {
    for (size_t i = 0; i < delta.size(); ++i) delta[i] -= model_[i];
  }
  if (feddyn_alpha > 0) {
    // Pending until the server accepts the update (SettleUpdate).
    if (absl::Status s = feddyn_.Update(feddyn_alpha, delta); !s.ok()) return Context("FedDyn", s);
  }
  ++tasks_trained_;
  return trained;
}

absl::StatusOr<EncodedUpdate> DeviceRuntime::Encode(const proto::Task& task,
                                                    std::vector<float> delta) {
  // Consumes the delta: a dense update is the delta vector itself.
  absl::StatusOr<EncodedUpdate> update =
      pipeline_.Encode(task, std::move(delta), TrainingSeed(task, options_.client_index));
  if (!update.ok()) return Context("cannot encode the update", update.status());
  return update;
}

absl::Status DeviceRuntime::Upload(const proto::Task& task, const models::TrainResult& trained,
                                   EncodedUpdate update, uint64_t bytes_down) {
  const absl::Time deadline =
      absl::FromUnixSeconds(0) + absl::Seconds(task.deadline_unix_seconds());
  proto::ReportHeader header;
  header.set_client_id(client_id_);
  header.set_round(task.round());
  header.set_attempt(task.attempt());
  header.set_model_version(task.model_version());
  header.set_num_samples(trained.samples);
  *header.mutable_spec() = task.spec();
  header.set_codec(update.codec);
  header.mutable_metrics()->set_train_loss(trained.mean_loss);
  header.mutable_metrics()->set_train_accuracy(trained.accuracy);
  header.mutable_metrics()->set_train_seconds(trained.seconds);
  header.mutable_metrics()->set_num_samples(trained.samples);
  if (last_student_accuracy_) {
    header.mutable_metrics()->set_student_local_accuracy(*last_student_accuracy_);
  }
  const std::string_view payload = update.payload();
  // Retry a transient upload failure while the round is still open.
  while (true) {
    uint64_t bytes_up = 0;
    absl::StatusOr<proto::ReportResponse> r = rpc_->Report(header, payload, deadline, &bytes_up);
    if (r.ok()) {
      ++rounds_done_;
      last_trained_ =
          std::make_pair(static_cast<int64_t>(task.round()), static_cast<int64_t>(task.attempt()));
      SettleUpdate(true);
      EDGEFL_LOG_INFO(absl::StrFormat(
          "round %d: reported %d samples, train loss %.4f acc %.4f, %.1f s training, "
          "%.3f MB down (%s), %.3f MB up (%s)",
          task.round(), trained.samples, trained.mean_loss, trained.accuracy, trained.seconds,
          bytes_down / 1e6, task.downlink_codec(), bytes_up / 1e6, header.codec()));
      Reachable();
      return absl::OkStatus();
    }
    const absl::Status& s = r.status();
    if (absl::IsFailedPrecondition(s) || absl::IsPermissionDenied(s) ||
        absl::IsInvalidArgument(s)) {
      EDGEFL_LOG_WARN("round ", task.round(), ": update not accepted: ", s.ToString());
      SettleUpdate(false);
      return s;
    }
    if (clock_->Now() > deadline) {
      SettleUpdate(false);  // the round closed: the update is lost
      return s;
    }
    if (std::optional<absl::Duration> hint = RetryAfterOf(s); hint.has_value()) {
      // A busy server (upload admission) said when to try again: wait that long, jittered so that
      // the devices it refused together do not come back together, within the round.
      const double jitter = std::uniform_real_distribution<double>(0.5, 1.5)(retry_rng_);
      const absl::Duration wait = std::min(*hint * jitter, deadline - clock_->Now());
      EDGEFL_LOG_INFO("round ", task.round(), ": ", s.message(), "; retrying in ",
                      absl::FormatDuration(absl::Trunc(wait, absl::Milliseconds(1))));
      clock_->SleepFor(wait);
      continue;
    }
    absl::Status handled = HandleError(s, "Report");
    if (!handled.ok() || client_id_.empty()) {
      SettleUpdate(false);  // the update is lost (or we are re-joining)
      return handled.ok() ? s : handled;
    }
  }
}

absl::Status DeviceRuntime::Distil(const proto::Task& task, absl::Span<const float> global) {
  if (distiller_ == nullptr) return absl::FailedPreconditionError("no distiller configured");
  absl::StatusOr<students::DistillReport> r = distiller_->Distill(task, global, data_);
  if (!r.ok()) {
    EDGEFL_LOG_WARN("round ", task.round(), ": distillation failed: ", r.status().ToString());
    return r.status();
  }
  last_student_accuracy_ = r->student_int8_local_accuracy;
  EDGEFL_LOG_INFO(absl::StrFormat(
      "%s: exported %s to %s: %d B weights, %d B arena, int8 local accuracy %s",
      task.final_model() ? std::string("final model") : absl::StrCat("round ", task.round()),
      r->student, r->out_dir, r->weight_bytes, r->arena_bytes,
      r->student_int8_local_accuracy ? absl::StrFormat("%.4f", *r->student_int8_local_accuracy)
                                     : "-"));
  return absl::OkStatus();
}

absl::Status DeviceRuntime::DistilFinal(Coordinator::CheckInResult result) {
  const proto::Task& task = result.task;
  UnspillModel();
  if (absl::Status s = UpdatePipeline::ApplyDownload(task, result.payload, have_version_, &model_);
      !s.ok()) {
    EDGEFL_LOG_ERROR("cannot use the final model: ", s.ToString());
    return absl::Status(s.code(), absl::StrCat("cannot use the final model: ", s.message()));
  }
  have_version_ = task.model_version();
  result.payload = std::string();
  EDGEFL_LOG_INFO("distilling the final global model (version ", task.model_version(), ")");
  if (absl::Status s = Distil(task, model_); !s.ok()) {
    return absl::Status(s.code(), absl::StrCat("distilling the final model failed: ", s.message()));
  }
  return absl::OkStatus();
}

void DeviceRuntime::SettleUpdate(bool accepted) {
  if (!accepted) {
    pipeline_.Rollback();
    feddyn_.Rollback();
    return;
  }
  if (absl::Status s = pipeline_.Commit(); !s.ok()) {
    EDGEFL_LOG_WARN("could not save the error-feedback residual: ", s.ToString());
  }
  if (absl::Status s = feddyn_.Commit(); !s.ok()) {
    EDGEFL_LOG_WARN("could not save the FedDyn term: ", s.ToString());
  }
}

void DeviceRuntime::UnspillModel() {
  if (spilled_ == nullptr) return;
  std::unique_ptr<Spill> spill = std::move(spilled_);
  model_.resize(spill->size());
  absl::Status s = spill->Read([&](size_t offset, absl::Span<const float> block) {
    std::memcpy(model_.data() + offset, block.data(), block.size() * sizeof(float));
  });
  if (!s.ok()) {
    EDGEFL_LOG_WARN("lost the global model: ", s.message(), "; the next round downloads it whole");
    have_version_ = -1;
    model_.clear();
    model_.shrink_to_fit();
  }
}

}  // namespace edgefl::client
