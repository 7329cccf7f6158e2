// Hierarchical aggregation: fl-server --upstream host:port runs as a regional aggregator. To its
// upstream coordinator (the root) it is one client whose weight is its devices' samples; to its
// own devices it is a coordinator whose rounds are the upstream's tasks instead of its own
// schedule. UpstreamLink is that client: it joins the root through the device-side Coordinator
// (client/coordinator_client.h: TLS, tokens, deadlines), long-polls for tasks, runs each task as a
// regional round (RoundScheduler::RunExternalRound: same round, attempt, model and TaskConfig for
// the devices, closing a margin before the upstream deadline), and uploads the region's combined
// update with num_samples = the total of its reporting devices' samples, dense or under the
// round's uplink chain. A region with nothing to send declines the task (the root then stops
// waiting for it). A refused or unreachable upstream is logged with its reason and retried with
// capped exponential backoff, forever (until Shutdown): an aggregator outlives a root restart or
// a certificate fix.
//
// What composes: the root computes sum_r N_r m_r / sum_r N_r over the regions' means m_r =
// sum_{i in r} n_i d_i / N_r, which is the flat FedAvg mean sum_i n_i d_i / sum_i n_i up to the
// rounding of each m_r to float (aggregation/pipeline_test.cc states the bound). So the aggregator
// only averages (sample-weighted mean; per-device filters such as the norm bound are fine here,
// since the root never sees single devices), and everything else happens at the root: server
// optimizers (FedAvgM, FedAdam, ...), robust rules (they then see one mean per region) and
// central DP (each region is one participant). CheckAggregatorConfig refuses the rest.
#ifndef EDGEFL_SERVER_UPSTREAM_LINK_H_
#define EDGEFL_SERVER_UPSTREAM_LINK_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "client/backoff.h"
#include "client/coordinator.h"
#include "client/coordinator_client.h"
#include "client/update_pipeline.h"
#include "common/clock.h"
#include "protos/config.pb.h"
#include "protos/edgefl.pb.h"
#include "server/client_registry.h"
#include "server/round_scheduler.h"

namespace edgefl::server {

// fl-server's --upstream* flags.
struct UpstreamOptions {
  std::string address;          // host:port of the upstream coordinator; "" = not an aggregator
  bool insecure = false;        // plaintext upstream; every TLS field below must then be empty
  std::string ca_cert;          // PEM file of the CA that signed the upstream's certificate
                                // ("system" = the system roots); required unless insecure
  std::string tls_cert;         // client certificate (PEM) for mutual TLS with the upstream
  std::string tls_key;          // its private key
  std::string tls_server_name;  // name to verify instead of the address's host
  // File with the enrollment token for the upstream ("" = $EDGEFL_UPSTREAM_TOKEN, or none).
  std::string token_file;
  double margin_seconds = 10;     // close regional rounds this long before the upstream deadline
  double retry_max_seconds = 60;  // cap of the backoff between refused / failed calls
  // Slowest acceptable download of the upstream model, in KiB/s: sizes each CheckIn's deadline.
  double min_download_kib_per_second = client::kDefaultMinDownloadBytesPerSecond / 1024;
};

// The CoordinatorClient options and enrollment token `options` stand for. INVALID_ARGUMENT (a
// usage error, naming the flag) for inconsistent flags or unreadable files.
struct UpstreamClientConfig {
  client::CoordinatorClient::Options rpc;
  std::string enrollment_token;
};
absl::StatusOr<UpstreamClientConfig> LoadUpstreamClientConfig(const UpstreamOptions& options);

// OK when the aggregation of `config` (FillDefaults applied) composes at a regional aggregator:
// combiner weighted_mean, no DP, server optimizer sgd with lr 1 and no momentum, no schedule
// entry changing server_lr or the DP noise. Else INVALID_ARGUMENT in one line naming the field
// and where it belongs (the root).
absl::Status CheckAggregatorConfig(const proto::ExperimentConfig& config);

// What the link drives: the aggregator's own devices. Thread-safe.
class Region {
 public:
  virtual ~Region() = default;
  // The sum of the registered eligible devices' num_samples: the weight announced upstream.
  virtual uint64_t RegisteredSamples() const = 0;
  // One regional round (RoundScheduler::RunExternalRound, with its errors).
  virtual absl::StatusOr<RoundScheduler::ExternalResult> RunRound(const proto::Task& task,
                                                                  absl::Span<const float> model,
                                                                  absl::Time close_by) = 0;
  // The upstream run is over (RoundScheduler::FinishExternal).
  virtual void Finish(int64_t version, const std::vector<float>* final_model) = 0;
};

// Called with each regional round that produced an update: its figures and the model it trained
// from (fl-server appends them to the aggregator's metrics.jsonl).
using RegionalRoundFn =
    std::function<void(const proto::RoundRecord& stats, const std::vector<float>& model)>;
// The region of a scheduler and its registry (both must outlive it).
std::unique_ptr<Region> NewSchedulerRegion(RoundScheduler* scheduler, ClientRegistry* registry,
                                           RegionalRoundFn on_round = nullptr);

// Not thread-safe except Shutdown and the observers: Run on one thread.
class UpstreamLink {
 public:
  struct Options {
    std::string upstream;  // the upstream's address, for messages
    uint64_t seed = 0;     // seeds the retry jitter
    // Delays between retries of a refused or failed call (Join, CheckIn, Report).
    client::Backoff::Options backoff = {absl::Seconds(1), absl::Seconds(60), 2.0, 0.3};
    // A regional round closes `margin` before the upstream task's deadline (at most half the time
    // left when the task arrives), which leaves the upload that long.
    absl::Duration margin = absl::Seconds(10);
    // A CheckIn's deadline is the upstream's long poll, 15 s and the upstream model's dense size
    // at this rate (client::CheckInTimeout, as for a device): the model downloads inside the
    // call that polls for it, so a slow link between aggregator and root must not cut it off.
    double min_download_bytes_per_second = client::kDefaultMinDownloadBytesPerSecond;
    // Sent upstream on Join and every CheckIn; num_samples is replaced by the region's.
    proto::DeviceProfile profile;
    // Where the uplink's error-feedback residual is kept ("" = memory only).
    std::string ef_state_file;
  };

  // `coordinator` is owned; `region` and `clock` must outlive the link. INVALID_ARGUMENT for
  // missing parts, a margin <= 0 or a download rate < 1 byte/s.
  static absl::StatusOr<std::unique_ptr<UpstreamLink>> Create(
      Options options, std::unique_ptr<client::Coordinator> coordinator, Region* region,
      const Clock* clock);

  // Runs until the upstream says its run is over (OK, after Region::Finish) or Shutdown
  // (CANCELLED). Never gives up on a refused or unreachable upstream: every failure is logged
  // with its reason and retried after a backoff.
  absl::Status Run();
  // Makes Run return CANCELLED soon (after the current long poll, which the upstream holds at
  // most its checkin_poll_seconds).
  void Shutdown();

  // ---- observers (thread-safe)
  int joins_refused() const;    // failed Join calls so far
  int rounds_reported() const;  // regional updates the upstream accepted
  int rounds_declined() const;  // upstream tasks declined (the region had nothing to send)

 private:
  UpstreamLink(Options options, std::unique_ptr<client::Coordinator> coordinator, Region* region,
               const Clock* clock);
  bool stopping() const;
  // Waits `d` (through Clock::SleepFor, in slices of at most 200 ms) unless Shutdown comes
  // first (then returns false).
  bool Pause(absl::Duration d);
  proto::DeviceProfile CurrentProfile() const;
  absl::Status JoinWithRetry();
  // After a failed CheckIn or Report: logs, forgets the session's client id when the upstream no
  // longer knows it, and waits the next backoff. False when shutting down.
  bool Failed(const absl::Status& s, const char* what);
  void RunTask(client::Coordinator::CheckInResult result);
  void Decline(const proto::Task& task, const std::string& reason);

  const Options options_;
  std::unique_ptr<client::Coordinator> rpc_;
  Region* const region_;
  const Clock* const clock_;
  client::Backoff backoff_;
  client::UpdatePipeline uplink_;
  std::string client_id_;
  absl::Time renew_at_ = absl::InfiniteFuture();
  std::vector<float> model_;  // the upstream model of have_version_ (downlink delta base)
  int64_t have_version_ = -1;
  absl::Duration checkin_timeout_;  // from the last JoinResponse (client::CheckInTimeout)
  proto::CheckInRequest pending_decline_;
  // The last task run in this session (reset by every Join): round, attempt.
  std::optional<std::pair<int64_t, int64_t>> last_task_;

  mutable absl::Mutex mu_;
  bool shutdown_ ABSL_GUARDED_BY(mu_) = false;
  int joins_refused_ ABSL_GUARDED_BY(mu_) = 0;
  int rounds_reported_ ABSL_GUARDED_BY(mu_) = 0;
  int rounds_declined_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace edgefl::server

#endif  // EDGEFL_SERVER_UPSTREAM_LINK_H_
