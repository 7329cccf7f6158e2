#include "server/poll_hub.h"

namespace edgefl::server {

PollHub::PollHub(TryFn try_task, const Clock* clock)
    : try_task_(std::move(try_task)), clock_(clock) {
  thread_ = std::thread([this] { Loop(); });
}

PollHub::~PollHub() { Stop(); }

PollHub::DeliverFn PollHub::TakeLocked(uint64_t id) {
  auto it = polls_.find(id);
  if (it == polls_.end()) return nullptr;
  DeliverFn deliver = std::move(it->second.deliver);
  auto range = deadlines_.equal_range(it->second.deadline);
  for (auto d = range.first; d != range.second; ++d) {
    if (d->second == id) {
      deadlines_.erase(d);
      break;
    }
  }
  auto owner = by_client_.find(it->second.client_id);
  if (owner != by_client_.end() && owner->second == id) by_client_.erase(owner);
  polls_.erase(it);
  return deliver;
}

uint64_t PollHub::Add(std::string client_id, absl::Time deadline, DeliverFn deliver) {
  DeliverFn older;
  uint64_t id = 0;
  {
    absl::MutexLock lock(&mu_);
    if (stop_) return 0;
    id = next_id_++;
    if (auto it = by_client_.find(client_id); it != by_client_.end()) {
      older = TakeLocked(it->second);
      ++superseded_;
    }
    by_client_[client_id] = id;
    deadlines_.emplace(deadline, id);
    polls_.emplace(id, Poll{std::move(client_id), deadline, std::move(deliver)});
    fresh_.push_back(id);
  }
  if (older) older(PollOutcome::kIdle, TaskGrant());
  return id;
}

bool PollHub::Cancel(uint64_t id) {
  absl::MutexLock lock(&mu_);
  return TakeLocked(id) != nullptr;
}

void PollHub::Notify() {
  absl::MutexLock lock(&mu_);
  rescan_all_ = true;
}

void PollHub::Stop() {
  {
    absl::MutexLock lock(&mu_);
    if (stop_ && !thread_.joinable()) return;
    stop_ = true;
  }
  if (thread_.joinable()) thread_.join();
  std::vector<DeliverFn> left;
  {
    absl::MutexLock lock(&mu_);
    for (auto& [id, poll] : polls_) left.push_back(std::move(poll.deliver));
    polls_.clear();
    by_client_.clear();
    deadlines_.clear();
    fresh_.clear();
  }
  for (DeliverFn& deliver : left) deliver(PollOutcome::kIdle, TaskGrant());
}

size_t PollHub::pending() const {
  absl::MutexLock lock(&mu_);
  return polls_.size();
}

int64_t PollHub::superseded() const {
  absl::MutexLock lock(&mu_);
  return superseded_;
}

void PollHub::Loop() {
  while (true) {
    std::vector<std::pair<uint64_t, std::string>> ask;
    std::vector<DeliverFn> expired;
    {
      absl::MutexLock lock(&mu_);
      auto work = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stop_ || rescan_all_ || !fresh_.empty() ||
               (!deadlines_.empty() && deadlines_.begin()->first <= clock_->Now());
      };
      const absl::Time wake =
          deadlines_.empty() ? absl::InfiniteFuture() : deadlines_.begin()->first;
      // Re-evaluated when the state changes (absl::Condition); the deadline wakes the expiry.
      clock_->AwaitWithDeadline(&mu_, absl::Condition(&work), wake);
      if (stop_) return;
      const absl::Time now = clock_->Now();
      while (!deadlines_.empty() && deadlines_.begin()->first <= now) {
        expired.push_back(TakeLocked(deadlines_.begin()->second));
      }
      if (rescan_all_) {
        ask.reserve(polls_.size());
        for (const auto& [id, poll] : polls_) ask.emplace_back(id, poll.client_id);
      } else {
        for (uint64_t id : fresh_) {
          if (auto it = polls_.find(id); it != polls_.end()) ask.emplace_back(id, it->second.client_id);
        }
      }
      rescan_all_ = false;
      fresh_.clear();
    }
    for (DeliverFn& deliver : expired) deliver(PollOutcome::kIdle, TaskGrant());
    // Ask the scheduler without the hub's lock: a Notify meanwhile makes the next pass ask again.
    std::vector<std::pair<uint64_t, std::pair<PollOutcome, TaskGrant>>> ready;
    for (const auto& [id, client_id] : ask) {
      TaskGrant grant;
      const PollOutcome outcome = try_task_(client_id, &grant);
      if (outcome != PollOutcome::kIdle) ready.push_back({id, {outcome, std::move(grant)}});
    }
    std::vector<std::pair<DeliverFn, std::pair<PollOutcome, TaskGrant>>> answers;
    {
      absl::MutexLock lock(&mu_);
      for (auto& [id, answer] : ready) {
        // Cancelled or superseded meanwhile: nobody to answer.
        if (DeliverFn deliver = TakeLocked(id)) answers.emplace_back(std::move(deliver), std::move(answer));
      }
    }
    for (auto& [deliver, answer] : answers) deliver(answer.first, std::move(answer.second));
  }
}

}  // namespace edgefl::server
