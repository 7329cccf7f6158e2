// fl-loadgen: N simulated devices in one process, each a real client of fl-server over the real
// protocol — its own connection, identity and session token, Join, long-poll CheckIn, the model
// download (full or as the downlink delta against the version it holds), a simulated training
// time, and an upload of a synthetic update of the model's real shape through the round's real
// codec chain — with injectable faults. It keeps no model per device (downloads are verified and
// dropped), so N is bounded by threads and sockets, not by model size.
//
// Exactness: with `reference` on, the loadgen folds every update the server accepted (decoded
// exactly as the server decodes it) into a per-round sample-weighted sum and replays FedAvg on
// the initial model it downloaded: reference_model() is what the server's global model must be,
// up to summation order (a last-bit difference per value at most).
#ifndef EDGEFL_BENCH_LOADGEN_LOADGEN_H_
#define EDGEFL_BENCH_LOADGEN_LOADGEN_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "client/coordinator_client.h"

namespace edgefl::loadgen {

struct Options {
  client::CoordinatorClient::Options rpc;  // target and transport (own_connection is forced)
  std::string enrollment_token;            // "" = none
  int devices = 10;
  uint64_t seed = 0;
  // Simulated training time per task: lognormal with this median and log-space sigma (0 = the
  // median exactly), capped at max; never past the task's deadline.
  double train_median_seconds = 1.0;
  double train_sigma = 0.5;
  double train_max_seconds = 120;
  // A slow tail: the last slow_fraction of the devices take slow_factor times as long (after the
  // cap), e.g. 0.1 and 10 for "10% of the fleet is ten times slower".
  double slow_fraction = 0;
  double slow_factor = 1;
  uint64_t samples_per_device = 100;  // the update's weight (num_samples)
  double update_scale = 1e-3;         // synthetic delta values are uniform in [-scale, scale]
  // Faults, as fractions of the devices (disjoint: never_report first, then disconnect, then
  // reconnect). never_report: takes its tasks and never reports. disconnect: its uploads are cut
  // off mid-stream (the call is cancelled after the first chunks). reconnect: opens a new
  // connection (same session) before each upload.
  double never_report = 0;
  double disconnect = 0;
  double reconnect = 0;
  absl::Duration poll = absl::Seconds(30);    // CheckIn long poll
  absl::Duration max_run = absl::Hours(2);    // every device gives up after this
  bool reference = false;                     // keep the exact FedAvg reference (O(model) per round)
};

struct Result {
  int devices = 0;
  int64_t joins = 0;
  int64_t tasks = 0;
  int64_t reports_accepted = 0;
  int64_t reports_refused = 0;
  int64_t uploads_cut = 0;         // disconnect fault
  int64_t tasks_dropped = 0;       // never_report fault
  int64_t reconnects = 0;
  int64_t rpc_errors = 0;          // failed calls that were retried
  int64_t uploads_deferred = 0;    // uploads refused RESOURCE_EXHAUSTED (admission) and retried
  int devices_finished = 0;        // heard that the federation is over
  uint64_t bytes_down = 0;
  uint64_t bytes_up = 0;
  int64_t last_round = 0;
  bool rounds_retried = false;     // some round had accepted reports in more than one attempt
  // Durations of CheckIn calls that returned a task (long-poll wait + download), seconds.
  double task_checkin_p50 = 0, task_checkin_p99 = 0;
  double seconds = 0;
  // With Options::reference: the initial model (version 0 as downloaded) with every round's
  // accepted updates applied as the server's FedAvg does; empty if version 0 was never
  // downloaded in full.
  std::vector<float> reference_model;
};

absl::StatusOr<Result> Run(const Options& options);

// One line of JSON with the Result's figures (no reference model).
std::string ResultToJson(const Result& result);

}  // namespace edgefl::loadgen

#endif  // EDGEFL_BENCH_LOADGEN_LOADGEN_H_
