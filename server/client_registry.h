// Registered clients and their leases.
#ifndef EDGEFL_SERVER_CLIENT_REGISTRY_H_
#define EDGEFL_SERVER_CLIENT_REGISTRY_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "protos/config.pb.h"
#include "protos/edgefl.pb.h"

namespace edgefl::server {

// Thread-safe. A client is eligible for selection while its lease is live (every CheckIn or Report
// renews it) and its latest profile (from Join, refreshed by every CheckIn that carries one) meets
// the experiment's eligibility criteria (minimum RAM and samples, architectures, accelerator).
class ClientRegistry {
 public:
  struct Options {
    absl::Duration lease = absl::Seconds(300);  // how long a client stays eligible unseen
    int64_t max_clients = 100000;               // RESOURCE_EXHAUSTED past this
    uint64_t id_seed = 0;                       // 0 = ids from the CSPRNG; tests fix it
    proto::Eligibility eligibility;             // ExperimentConfig.eligibility; empty = anyone
  };
  // Why `profile` does not meet `criteria` ("" = it does), e.g. "arch x86_64 not in [aarch64]".
  static std::string Ineligibility(const proto::Eligibility& criteria,
                                   const proto::DeviceProfile& profile);
  ClientRegistry(const Options& options, const Clock* clock);

  // Registers a client and returns its new id ("c-" + 16 hex chars). RESOURCE_EXHAUSTED when full.
  absl::StatusOr<std::string> Join(const proto::DeviceProfile& profile);
  // Registers (or re-registers, renewing the lease and replacing the profile) the client with the
  // given id, which the caller has authenticated (a certificate name, a session token).
  // RESOURCE_EXHAUSTED when full and `id` is not registered yet.
  absl::Status JoinAs(const std::string& id, const proto::DeviceProfile& profile);
  // Renews the lease. NOT_FOUND (with a hint to Join again) for an unknown or expired id.
  absl::Status Touch(const std::string& client_id);
  // Replaces a registered client's profile (the state it reported with a CheckIn). NOT_FOUND
  // for an unknown id. Logs when the client's eligibility changes.
  absl::Status UpdateProfile(const std::string& client_id, const proto::DeviceProfile& profile);
  bool IsKnown(const std::string& client_id) const;
  // Ids with a live lease whose profile meets the eligibility criteria, in no particular order.
  std::vector<std::string> Eligible() const;
  // The sum of DeviceProfile.num_samples over Eligible() (a regional aggregator's weight as seen
  // upstream, server/upstream_link.h).
  uint64_t EligibleSamples() const;
  int64_t size() const;
  absl::Duration lease() const { return options_.lease; }

 private:
  struct Entry {
    proto::DeviceProfile profile;
    absl::Time expires;
  };
  void DropExpiredLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const Options options_;
  const Clock* const clock_;
  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, Entry> clients_ ABSL_GUARDED_BY(mu_);
  uint64_t next_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace edgefl::server

#endif  // EDGEFL_SERVER_CLIENT_REGISTRY_H_
