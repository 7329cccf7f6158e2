// fl-client: the edgefl device runtime.
#include <sys/statvfs.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/types/span.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/backoff.h"
#include "client/coordinator_client.h"
#include "client/update_pipeline.h"
#include "common/file_util.h"
#include "common/flags.h"
#include "common/log.h"
#include "common/threads.h"
#include "models/dataset.h"
#include "models/model_runner.h"
#include "models/model_spec.h"
#include "models/partition.h"

namespace edgefl::client {
namespace {

constexpr char kProgram[] = "fl-client";
constexpr int64_t kFashionMnistTrainRows = 60000;

struct ClientFlags {
  std::string server = "localhost:50051";
  std::string data = "fmnist";
  std::string data_dir = models::kDefaultFashionMnistDir;
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
};

proto::DeviceProfile MakeProfile(int64_t num_samples) {
  proto::DeviceProfile p;
  struct utsname u;
  if (uname(&u) == 0) p.set_arch(u.machine);
  p.set_cores(static_cast<int>(std::thread::hardware_concurrency()));
  p.set_ram_bytes(static_cast<uint64_t>(sysconf(_SC_PHYS_PAGES)) *
                  static_cast<uint64_t>(sysconf(_SC_PAGESIZE)));
  struct statvfs fs;
  if (statvfs(".", &fs) == 0) p.set_free_disk_bytes(static_cast<uint64_t>(fs.f_bavail) * fs.f_frsize);
  char host[256] = {0};
  if (gethostname(host, sizeof(host) - 1) == 0) p.set_hostname(host);
  p.set_num_samples(num_samples);
  return p;
}

absl::StatusOr<models::ImageDataset> LoadShard(const ClientFlags& f) {
  if (f.data != "fmnist") {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown --data '", f.data, "' (supported: fmnist)"));
  }
  models::Partition partition;
  if (!f.partition_file.empty()) {
    absl::StatusOr<models::Partition> p =
        models::ReadPartitionFile(f.partition_file, kFashionMnistTrainRows);
    if (!p.ok()) return p.status();
    partition = std::move(*p);
  } else {
    absl::StatusOr<std::vector<uint8_t>> labels =
        models::ReadIdxLabels(f.data_dir + "/train-labels-idx1-ubyte.gz");
    if (!labels.ok()) return labels.status();
    absl::StatusOr<models::Partition> p =
        models::PartitionFromSpec(f.partition, *labels, f.num_partitions, f.seed);
    if (!p.ok()) return p.status();
    partition = std::move(*p);
  }
  if (f.client_index < 0 || f.client_index >= static_cast<int>(partition.size())) {
    return absl::InvalidArgumentError(absl::StrCat("--client_index ", f.client_index,
                                                   " is outside the partition's ",
                                                   partition.size(), " clients"));
  }
  std::vector<int64_t> rows = std::move(partition[f.client_index]);
  partition.clear();
  partition.shrink_to_fit();
  return models::LoadFashionMnist(f.data_dir, models::Split::kTrain, rows);
}

class Client {
 public:
  Client(const ClientFlags& flags, std::unique_ptr<CoordinatorClient> rpc,
         models::ImageDataset data)
      : f_(flags),
        rpc_(std::move(rpc)),
        data_(std::move(data)),
        pipeline_(flags.state_dir.empty()
                      ? std::string()
                      : absl::StrCat(flags.state_dir, "/client-", flags.client_index, ".ef")),
        backoff_(Backoff::Options(), static_cast<uint64_t>(flags.seed) * 7919 + flags.client_index),
        tty_(flags.progress == "always" || (flags.progress == "auto" && isatty(STDERR_FILENO))) {}

  // Returns the process exit code.
  int Run() {
    if (absl::Status s = pipeline_.Load(); !s.ok()) {
      EDGEFL_LOG_WARN("error-feedback state: ", s.ToString());
    }
    while (true) {
      if (client_id_.empty() && !JoinWithRetry()) return 1;
      absl::StatusOr<CoordinatorClient::CheckInResult> r =
          rpc_->CheckIn(client_id_, have_version_, poll_timeout_);
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
  }

  // Decides what to do after a failed call. Returns false when the client should give up.
  bool HandleError(const absl::Status& s, const char* what) {
    if (absl::IsNotFound(s) && !client_id_.empty()) {
      EDGEFL_LOG_WARN(what, ": ", s.message(), " (the server may have restarted); joining again");
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

  void RunTask(CoordinatorClient::CheckInResult task_result) {
    const proto::Task& task = task_result.task;
    const absl::Time deadline = absl::FromUnixSeconds(0) +
                                absl::Seconds(task.deadline_unix_seconds());
    // Rebuild the round's global model: the full download, or the held model plus a delta.
    if (absl::Status s = UpdatePipeline::ApplyDownload(task, task_result.payload, have_version_,
                                                       &model_);
        !s.ok()) {
      EDGEFL_LOG_ERROR("round ", task.round(), ": cannot use the download: ", s.ToString());
      have_version_ = -1;  // the next CheckIn asks for the full model
      model_.clear();
      return;
    }
    task_result.payload.clear();
    task_result.payload.shrink_to_fit();
    have_version_ = task.model_version();
    const absl::Span<const float> global(model_);
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
    if (absl::Status s = runner_->SetWeights(global); !s.ok()) {
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
    auto progress = [&](int64_t done, int64_t total, double loss) {
      if (!tty_) return;
      const absl::Time now = absl::Now();
      if (done < total && now - last_draw < absl::Milliseconds(200)) return;
      last_draw = now;
      std::fprintf(stderr, "\r  round %lld  %6lld/%lld samples  loss %.4f   ",
                   static_cast<long long>(task.round()), static_cast<long long>(done),
                   static_cast<long long>(total), loss);
      if (done >= total) std::fprintf(stderr, "\n");
    };
    absl::StatusOr<models::TrainResult> trained = runner_->Train(data_, opts, progress);
    if (!trained.ok()) {
      EDGEFL_LOG_ERROR("round ", task.round(), ": training failed: ", trained.status().ToString());
      return;
    }
    std::vector<float> delta;
    runner_->GetWeights(&delta);
    if (delta.size() != global.size()) {
      EDGEFL_LOG_ERROR("round ", task.round(), ": model size changed during training");
      return;
    }
    for (size_t i = 0; i < delta.size(); ++i) delta[i] -= global[i];
    absl::StatusOr<EncodedUpdate> update = pipeline_.Encode(task, delta, opts.seed);
    if (!update.ok()) {
      EDGEFL_LOG_ERROR("round ", task.round(), ": cannot encode the update: ",
                       update.status().ToString());
      return;
    }
    delta.clear();
    delta.shrink_to_fit();

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
    const std::string_view payload(update->bytes);
    // Retry a transient upload failure while the round is still open.
    while (true) {
      uint64_t bytes_up = 0;
      absl::StatusOr<proto::ReportResponse> r = rpc_->Report(header, payload, deadline, &bytes_up);
      if (r.ok()) {
        ++rounds_done_;
        if (absl::Status s = pipeline_.Commit(); !s.ok()) {
          EDGEFL_LOG_WARN("could not save the error-feedback residual: ", s.ToString());
        }
        EDGEFL_LOG_INFO(absl::StrFormat(
            "round %d: reported %d samples, train loss %.4f acc %.4f, %.1f s training, "
            "%.3f MB down (%s), %.3f MB up (%s)",
            task.round(), trained->samples, trained->mean_loss, trained->accuracy,
            trained->seconds, task_result.bytes_down / 1e6, task.downlink_codec(),
            bytes_up / 1e6, header.codec()));
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

  const ClientFlags f_;
  std::unique_ptr<CoordinatorClient> rpc_;
  std::unique_ptr<models::ModelRunner> runner_;
  models::ImageDataset data_;
  UpdatePipeline pipeline_;
  Backoff backoff_;
  const bool tty_;
  std::string client_id_;
  std::vector<float> model_;   // the global model version have_version_ (downlink base)
  int64_t have_version_ = -1;
  absl::Duration poll_timeout_ = absl::Seconds(35);
  std::optional<absl::Time> unreachable_since_;
  int rounds_done_ = 0;
};

int Main(int argc, char** argv) {
  ClientFlags f;
  FlagSet flags(kProgram,
                "The edgefl device runtime: joins a coordinator, waits for tasks, fine-tunes the\n"
                "global model on local data that never leaves the device, and uploads the\n"
                "update. Exits 0 when the coordinator says the federation is finished.\n\n"
                "  fl-client --server host:50051 --data fmnist --partition-file F --client-index 3\n"
                "  fl-client --server host:50051 --partition dirichlet:0.5 --num-partitions 10 \\\n"
                "            --client-index 3 --seed 0");
  flags.String("server", &f.server, "coordinator address host:port");
  flags.String("data", &f.data, "local data set: fmnist (Fashion-MNIST training images)");
  flags.String("data_dir", &f.data_dir, "folder with the Fashion-MNIST .gz files");
  flags.String("partition_file", &f.partition_file,
               "workload partition file (lines '<client> <n> <idx...>'); wins over --partition");
  flags.String("partition", &f.partition, "how to split the training set: iid, dirichlet:<alpha>, "
                                          "labels:<n classes per client>");
  flags.Int("num_partitions", &f.num_partitions, "number of shards for --partition");
  flags.Int("client_index", &f.client_index, "which shard this device holds (0-based)");
  flags.Int64("seed", &f.seed, "seed of the partition and of local shuffling");
  flags.Int("threads", &f.threads, "torch and OpenBLAS compute threads");
  flags.Double("max_retry_seconds", &f.max_retry_seconds,
               "give up after the server has been unreachable this long");
  flags.Double("rpc_timeout", &f.rpc_timeout, "deadline of Join and the floor of Report (s)");
  flags.Int("max_message_mb", &f.max_message_mb, "gRPC message size limit, both directions");
  flags.String("progress", &f.progress, "training progress line: auto (on a terminal), always, never");
  flags.String("state_dir", &f.state_dir,
               "folder for the device's state (the error-feedback residual survives restarts "
               "there); empty = keep it in memory only");
  flags.ParseOrExit(argc, argv);
  if (!flags.positional().empty()) {
    ExitUsageError(kProgram, absl::StrCat("unexpected argument '", flags.positional()[0], "'"));
  }
  if (f.threads < 1) ExitUsageError(kProgram, "--threads must be >= 1");
  if (f.num_partitions < 1) ExitUsageError(kProgram, "--num_partitions must be >= 1");
  if (f.progress != "auto" && f.progress != "always" && f.progress != "never") {
    ExitUsageError(kProgram, "--progress must be auto, always or never");
  }
  SetLogTag(absl::StrCat("client-", f.client_index));
  SetBlasThreads(f.threads);

  absl::StatusOr<models::ImageDataset> data = LoadShard(f);
  if (!data.ok()) ExitUsageError(kProgram, std::string(data.status().message()));
  if (data->size() == 0) ExitUsageError(kProgram, "the local shard is empty");
  // The model is named by the server's task; the runner is created for it on the first task.
  CoordinatorClient::Options rpc_opts;
  rpc_opts.target = f.server;
  rpc_opts.rpc_timeout = absl::Seconds(f.rpc_timeout);
  rpc_opts.max_message_mb = f.max_message_mb;
  if (!f.state_dir.empty()) {
    if (absl::Status s = MakeDirs(f.state_dir); !s.ok()) {
      ExitUsageError(kProgram, absl::StrCat("--state_dir: ", s.message()));
    }
  }
  Client client(f, CoordinatorClient::Create(rpc_opts), std::move(*data));
  return client.Run();
}

}  // namespace
}  // namespace edgefl::client

int main(int argc, char** argv) { return edgefl::client::Main(argc, argv); }
