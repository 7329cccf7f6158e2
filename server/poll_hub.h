// The CheckIn long polls that wait for a task, held without a thread each. A poll is an id, a
// client, a deadline and a callback; one hub thread answers them: when the scheduler says its
// state changed (an attempt opened, the run finished, shutdown) it asks the scheduler again for
// every pending poll, and it answers each poll whose deadline passed with kIdle. With gRPC's
// callback API (server/coordinator_service.cc) this is what lets 1,000 devices wait in CheckIn
// on a handful of threads. gRPC-free and torch-free.
#ifndef EDGEFL_SERVER_POLL_HUB_H_
#define EDGEFL_SERVER_POLL_HUB_H_

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "server/round_scheduler.h"

namespace edgefl::server {

class PollHub {
 public:
  // The scheduler's non-blocking answer for a client (RoundScheduler::TryTask).
  using TryFn = std::function<PollOutcome(const std::string& client_id, TaskGrant* grant)>;
  // Receives a poll's one answer: kTask or kFinished with its grant, or kIdle (deadline, newer
  // poll of the same client, or Stop). Runs on the hub's thread (or Add's caller, see Add) with no
  // hub lock held; must not block.
  using DeliverFn = std::function<void(PollOutcome outcome, TaskGrant grant)>;

  // `try_task` and `clock` must outlive the hub. Starts the hub thread.
  PollHub(TryFn try_task, const Clock* clock);
  // Stop().
  ~PollHub();
  PollHub(const PollHub&) = delete;
  PollHub& operator=(const PollHub&) = delete;

  // Registers a poll and returns its id (> 0). A pending poll of the same client is answered
  // kIdle at once (a client holds one poll; counted in superseded()). The hub asks `try_task` for
  // the new poll soon, so a change between the caller's own check and Add is not missed. After
  // Stop it registers nothing and returns 0: the caller answers the poll itself.
  uint64_t Add(std::string client_id, absl::Time deadline, DeliverFn deliver);
  // Removes a pending poll without answering it. False when it is no longer pending: its answer
  // has been or is being delivered.
  bool Cancel(uint64_t id);
  // The scheduler's state may have changed: ask again for every pending poll. Cheap, non-blocking.
  void Notify();
  // Answers every pending poll kIdle and joins the hub thread. Idempotent.
  void Stop();

  size_t pending() const;
  int64_t superseded() const;

 private:
  struct Poll {
    std::string client_id;
    absl::Time deadline;
    DeliverFn deliver;
  };
  void Loop();
  // Removes a pending poll and returns its callback (the lock's holder then delivers).
  DeliverFn TakeLocked(uint64_t id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const TryFn try_task_;
  const Clock* const clock_;

  mutable absl::Mutex mu_;
  uint64_t next_id_ ABSL_GUARDED_BY(mu_) = 1;
  absl::flat_hash_map<uint64_t, Poll> polls_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, uint64_t> by_client_ ABSL_GUARDED_BY(mu_);
  std::multimap<absl::Time, uint64_t> deadlines_ ABSL_GUARDED_BY(mu_);
  std::vector<uint64_t> fresh_ ABSL_GUARDED_BY(mu_);  // added since the last scan
  bool rescan_all_ ABSL_GUARDED_BY(mu_) = false;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  int64_t superseded_ ABSL_GUARDED_BY(mu_) = 0;
  std::thread thread_;
};

}  // namespace edgefl::server

#endif  // EDGEFL_SERVER_POLL_HUB_H_
