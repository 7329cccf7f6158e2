#include "bench/loadgen/loadgen.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <map>
#include <memory>
#include <random>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/log.h"
#include "common/model_layout.h"
#include "common/status_reason.h"
#include "common/transient_status.h"
#include "compression/chain.h"
#include "compression/error_feedback.h"
#include "compression/update_codec.h"

namespace edgefl::loadgen {
namespace {

enum class Fault { kNone, kNeverReport, kDisconnect, kReconnect };

uint64_t Mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// Shared between the device threads.
class Shared {
 public:
  explicit Shared(const Options& o) : options(o) {}
  const Options options;

  absl::Mutex mu;
  Result result ABSL_GUARDED_BY(mu);
  std::vector<double> task_checkin_seconds ABSL_GUARDED_BY(mu);
  std::vector<float> initial ABSL_GUARDED_BY(mu);
  // (round, attempt) -> sum of n_k delta_k and sum of n_k, over the accepted updates.
  struct Sum {
    std::vector<double> weighted;
    double total = 0;
  };
  std::map<std::pair<int64_t, int64_t>, Sum> sums ABSL_GUARDED_BY(mu);
};

std::unique_ptr<client::CoordinatorClient> Connect(const Options& o,
                                                   client::CoordinatorClient::Options rpc) {
  rpc.own_connection = true;
  auto c = client::CoordinatorClient::Create(rpc);
  if (!o.enrollment_token.empty()) c->SetEnrollmentToken(o.enrollment_token);
  return c;
}

// The synthetic update of `device` for a task: uniform in [-scale, scale], a function of the
// seed, device, round and attempt only.
std::vector<float> SyntheticDelta(const Options& o, int device, const proto::Task& task,
                                  size_t dim) {
  std::vector<float> delta(dim);
  uint64_t state = Mix(o.seed ^ Mix(static_cast<uint64_t>(device) * 1000003 +
                                    static_cast<uint64_t>(task.round()) * 7919 +
                                    static_cast<uint64_t>(task.attempt())));
  for (size_t i = 0; i < dim; ++i) {
    state = Mix(state);
    const double u = static_cast<double>(state >> 11) * 0x1.0p-53;  // [0, 1)
    delta[i] = static_cast<float>(o.update_scale * (2 * u - 1));
  }
  return delta;
}

void RunDevice(Shared* shared, int device, Fault fault, absl::Time give_up) {
  const Options& o = shared->options;
  std::unique_ptr<client::CoordinatorClient> rpc = Connect(o, o.rpc);
  std::mt19937_64 rng(Mix(o.seed * 31 + static_cast<uint64_t>(device)));
  std::lognormal_distribution<double> train_time(std::log(std::max(1e-6, o.train_median_seconds)),
                                                 o.train_sigma);
  auto count = [&](auto&& f) {
    absl::MutexLock lock(&shared->mu);
    f(shared->result);
  };
  std::string client_id;
  absl::Duration poll = o.poll;
  auto join = [&]() -> bool {
    while (absl::Now() < give_up) {
      proto::JoinRequest req;
      req.mutable_profile()->set_arch("loadgen");
      req.mutable_profile()->set_hostname(absl::StrCat("loadgen-", device));
      req.mutable_profile()->set_num_samples(o.samples_per_device);
      req.mutable_profile()->set_cores(1);
      absl::StatusOr<proto::JoinResponse> r = rpc->Join(req);
      if (r.ok()) {
        client_id = r->client_id();
        // The server holds a CheckIn this long: wait for it and a download at fl-client's default
        // slowest rate (--min_download_kib_per_second).
        poll = std::max(o.poll, client::CheckInTimeout(*r, client::kDefaultMinDownloadBytesPerSecond));
        count([](Result& res) { ++res.joins; });
        return true;
      }
      count([](Result& res) { ++res.rpc_errors; });
      absl::SleepFor(absl::Seconds(1));
    }
    return false;
  };
  if (!join()) return;
  int64_t have = -1;
  std::pair<int64_t, int64_t> done_task = {-1, -1};  // the last task handled (round, attempt)
  while (absl::Now() < give_up) {
    const absl::Time t0 = absl::Now();
    absl::StatusOr<client::Coordinator::CheckInResult> r = rpc->CheckIn(client_id, have, poll);
    if (!r.ok()) {
      count([](Result& res) { ++res.rpc_errors; });
      if (absl::IsNotFound(r.status()) || absl::IsUnauthenticated(r.status())) {
        rpc->ClearSession();
        if (!join()) return;
      } else {
        absl::SleepFor(absl::Seconds(1));
      }
      continue;
    }
    using Kind = client::Coordinator::CheckInResult::Kind;
    if (r->kind == Kind::kIdle) continue;
    if (r->kind == Kind::kFinished || r->kind == Kind::kFinalModel) {
      count([](Result& res) { ++res.devices_finished; });
      return;
    }
    const proto::Task& task = r->task;
    const std::pair<int64_t, int64_t> this_task = {task.round(), task.attempt()};
    const absl::Time deadline = absl::FromUnixSeconds(0) + absl::Seconds(task.deadline_unix_seconds());
    {
      absl::MutexLock lock(&shared->mu);
      shared->task_checkin_seconds.push_back(absl::ToDoubleSeconds(absl::Now() - t0));
      ++shared->result.tasks;
      shared->result.bytes_down += r->bytes_down;
      shared->result.last_round = std::max(shared->result.last_round, task.round());
      if (o.reference && task.model_version() == 0 && task.base_version() == -1 &&
          shared->initial.empty() && r->payload.size() % sizeof(float) == 0) {
        shared->initial.resize(r->payload.size() / sizeof(float));
        std::memcpy(shared->initial.data(), r->payload.data(), r->payload.size());
      }
    }
    have = task.model_version();
    r->payload.clear();
    r->payload.shrink_to_fit();
    if (this_task == done_task) {  // already handled: wait for the round to move on
      absl::SleepFor(std::min(absl::Seconds(1), std::max(absl::ZeroDuration(), deadline - absl::Now())));
      continue;
    }
    done_task = this_task;
    // "Training".
    double seconds = o.train_sigma > 0 ? std::min(train_time(rng), o.train_max_seconds)
                                       : o.train_median_seconds;
    if (device >= o.devices - static_cast<int>(std::lround(o.slow_fraction * o.devices))) {
      seconds *= o.slow_factor;
    }
    absl::SleepFor(std::min(absl::Seconds(seconds), std::max(absl::ZeroDuration(), deadline - absl::Now())));
    if (fault == Fault::kNeverReport) {
      count([](Result& res) { ++res.tasks_dropped; });
      continue;
    }
    // The update, through the round's real codec chain.
    const std::vector<compression::TensorLayout> layout = LayoutOf(task.spec());
    size_t dim = 0;
    for (const auto& t : layout) dim += t.numel;
    const std::vector<float> delta = SyntheticDelta(o, device, task, dim);
    proto::ReportHeader header;
    header.set_client_id(client_id);
    header.set_round(task.round());
    header.set_attempt(task.attempt());
    header.set_model_version(task.model_version());
    header.set_num_samples(o.samples_per_device);
    *header.mutable_spec() = task.spec();
    std::string payload;
    std::vector<float> decoded;  // what the server will fold in
    const std::string uplink = task.config().uplink().empty() ? "dense" : task.config().uplink();
    if (uplink == "dense") {
      header.set_codec("dense");
      payload.assign(reinterpret_cast<const char*>(delta.data()), delta.size() * sizeof(float));
      if (o.reference) decoded = delta;
    } else {
      absl::StatusOr<compression::ChainSpec> chain = compression::ParseChain(uplink);
      if (!chain.ok()) {
        EDGEFL_LOG_ERROR("loadgen device ", device, ": uplink ", uplink, ": ", chain.status().ToString());
        continue;
      }
      // A fresh (zero) error-feedback residual per upload instead of one kept per device: a
      // kept one would cost a model per device, and the server sees the same kind of update.
      std::unique_ptr<compression::ErrorFeedback> ef;
      if (chain->error_feedback) ef = std::make_unique<compression::ErrorFeedback>(dim);
      absl::StatusOr<std::string> encoded = compression::EncodeUpdate(
          *chain, ViewsOf(layout, delta), ef.get(), Mix(o.seed + static_cast<uint64_t>(device)));
      if (!encoded.ok()) {
        EDGEFL_LOG_ERROR("loadgen device ", device, ": encode: ", encoded.status().ToString());
        continue;
      }
      header.set_codec(chain->ToString());
      payload = std::move(*encoded);
      if (o.reference && !compression::DecodeToDense(payload, layout, &decoded).ok()) decoded.clear();
    }
    if (fault == Fault::kReconnect) {
      const std::string token = rpc->session_token();
      const absl::Time expires = rpc->session_expires();
      rpc = Connect(o, o.rpc);
      rpc->SetSession(token, expires);
      count([](Result& res) { ++res.reconnects; });
    }
    std::unique_ptr<client::CoordinatorClient> cut;
    client::CoordinatorClient* sender = rpc.get();
    if (fault == Fault::kDisconnect) {
      // Cut for certain: 1 KB/s (1 KiB chunks, about a second between them) outlives the 1 ms
      // deadline whatever the load. Without the cap a loaded machine once let the whole update
      // through before the deadline fired: the server accepted it while this device counted it
      // as cut, and the reference missed it.
      client::CoordinatorClient::Options fragile = o.rpc;
      fragile.rpc_timeout = absl::Milliseconds(1);
      fragile.max_upload_kbps = 8;
      cut = Connect(o, fragile);
      cut->SetSession(rpc->session_token(), rpc->session_expires());
      sender = cut.get();
    }
    uint64_t bytes_up = 0;
    absl::StatusOr<proto::ReportResponse> report =
        sender->Report(header, payload, absl::Now() + absl::Milliseconds(1), &bytes_up);
    // The server admits a few uploads at a time (RESOURCE_EXHAUSTED), and in buffered mode
    // answers UNAVAILABLE between two versions: such an upload waits (jittered) and tries again
    // while its task's deadline allows, as fl-client does. So does one whose answer was lost
    // (seen here: INTERNAL "Received RST_STREAM" after the server had accepted the update; or a
    // deadline that passed as it replied): the server says "accepted" to the repeat
    // (RoundScheduler::IsRepeatOfAccepted) and the update joins the reference. A device whose
    // upload this run cuts on purpose (kDisconnect) does not retry.
    const auto retryable = [fault](const absl::Status& s) {
      if (absl::IsResourceExhausted(s) || absl::IsUnavailable(s)) return true;
      return fault != Fault::kDisconnect && IsTransient(s);
    };
    std::uniform_real_distribution<double> jitter(0.5, 1.5);
    for (int tries = 0; !report.ok() && retryable(report.status()) &&
                        absl::Now() < deadline && tries < 1000;
         ++tries) {
      count([](Result& res) { ++res.uploads_deferred; });
      const absl::Duration hint =
          RetryAfterOf(report.status()).value_or(absl::Milliseconds(500));
      absl::SleepFor(std::min(hint * jitter(rng),
                              std::max(absl::ZeroDuration(), deadline - absl::Now())));
      uint64_t more = 0;
      report = sender->Report(header, payload, absl::Now() + absl::Milliseconds(1), &more);
      bytes_up += more;
    }
    absl::MutexLock lock(&shared->mu);
    shared->result.bytes_up += bytes_up;
    if (report.ok() && report->accepted()) {
      ++shared->result.reports_accepted;
      if (o.reference && decoded.size() == dim) {
        Shared::Sum& sum = shared->sums[this_task];
        if (sum.weighted.empty()) sum.weighted.assign(dim, 0.0);
        const double n = static_cast<double>(o.samples_per_device);
        for (size_t i = 0; i < dim; ++i) sum.weighted[i] += n * static_cast<double>(decoded[i]);
        sum.total += n;
      }
    } else if (fault == Fault::kDisconnect && !report.ok() &&
               (absl::IsDeadlineExceeded(report.status()) || absl::IsCancelled(report.status()))) {
      ++shared->result.uploads_cut;
    } else {
      ++shared->result.reports_refused;
    }
  }
}

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t i = std::min(v.size() - 1, static_cast<size_t>(std::ceil(p * v.size())) - (p > 0 ? 1 : 0));
  return v[i];
}

}  // namespace

absl::StatusOr<Result> Run(const Options& options) {
  if (options.devices < 1) return absl::InvalidArgumentError("--devices must be >= 1");
  for (double f : {options.never_report, options.disconnect, options.reconnect}) {
    if (!(f >= 0 && f <= 1)) return absl::InvalidArgumentError("fault fractions must be in [0, 1]");
  }
  if (options.never_report + options.disconnect + options.reconnect > 1) {
    return absl::InvalidArgumentError("the fault fractions add up to more than 1");
  }
  if (!(options.train_median_seconds >= 0) || !(options.train_sigma >= 0)) {
    return absl::InvalidArgumentError("training time median and sigma must be >= 0");
  }
  Shared shared(options);
  const int n = options.devices;
  const int never = static_cast<int>(std::round(options.never_report * n));
  const int cut = static_cast<int>(std::round(options.disconnect * n));
  const int reconnect = static_cast<int>(std::round(options.reconnect * n));
  const absl::Time start = absl::Now();
  const absl::Time give_up = start + options.max_run;
  std::vector<std::thread> threads;
  threads.reserve(n);
  for (int d = 0; d < n; ++d) {
    Fault fault = Fault::kNone;
    if (d < never) {
      fault = Fault::kNeverReport;
    } else if (d < never + cut) {
      fault = Fault::kDisconnect;
    } else if (d < never + cut + reconnect) {
      fault = Fault::kReconnect;
    }
    threads.emplace_back(RunDevice, &shared, d, fault, give_up);
  }
  for (std::thread& t : threads) t.join();

  absl::MutexLock lock(&shared.mu);
  Result result = shared.result;
  result.devices = n;
  result.seconds = absl::ToDoubleSeconds(absl::Now() - start);
  result.task_checkin_p50 = Percentile(shared.task_checkin_seconds, 0.5);
  result.task_checkin_p99 = Percentile(shared.task_checkin_seconds, 0.99);
  if (options.reference && !shared.initial.empty()) {
    // The last attempt of each round with accepted updates is the one the server aggregated.
    std::map<int64_t, const Shared::Sum*> per_round;
    std::map<int64_t, int> attempts_with_reports;
    for (const auto& [key, sum] : shared.sums) {
      per_round[key.first] = &sum;
      ++attempts_with_reports[key.first];
    }
    for (const auto& [round, count] : attempts_with_reports) {
      if (count > 1) result.rounds_retried = true;
    }
    std::vector<float> model = shared.initial;
    for (const auto& [round, sum] : per_round) {
      if (sum->weighted.size() != model.size()) continue;
      for (size_t i = 0; i < model.size(); ++i) {
        model[i] = static_cast<float>(model[i] + sum->weighted[i] / sum->total);
      }
    }
    result.reference_model = std::move(model);
  }
  return result;
}

std::string ResultToJson(const Result& r) {
  return absl::StrFormat(
      "{\"devices\":%d,\"joins\":%d,\"tasks\":%d,\"reports_accepted\":%d,\"reports_refused\":%d,"
      "\"uploads_cut\":%d,\"uploads_deferred\":%d,\"tasks_dropped\":%d,\"reconnects\":%d,"
      "\"rpc_errors\":%d,"
      "\"devices_finished\":%d,\"bytes_down\":%d,\"bytes_up\":%d,\"last_round\":%d,"
      "\"rounds_retried\":%s,\"task_checkin_p50\":%.4f,\"task_checkin_p99\":%.4f,\"seconds\":%.2f}",
      r.devices, r.joins, r.tasks, r.reports_accepted, r.reports_refused, r.uploads_cut,
      r.uploads_deferred, r.tasks_dropped, r.reconnects, r.rpc_errors, r.devices_finished, r.bytes_down, r.bytes_up,
      r.last_round, r.rounds_retried ? "true" : "false", r.task_checkin_p50, r.task_checkin_p99,
      r.seconds);
}

}  // namespace edgefl::loadgen
