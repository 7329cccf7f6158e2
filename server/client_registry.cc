#include "server/client_registry.h"

#include <algorithm>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/log.h"
#include "common/crypto.h"
#include "common/sha256.h"

namespace edgefl::server {

ClientRegistry::ClientRegistry(const Options& options, const Clock* clock)
    : options_(options), clock_(clock) {
  next_ = options.id_seed;
}

std::string ClientRegistry::Ineligibility(const proto::Eligibility& c,
                                          const proto::DeviceProfile& p) {
  if (c.has_min_ram_mb() && p.ram_bytes() < (c.min_ram_mb() << 20)) {
    return absl::StrCat("ram ", p.ram_bytes() >> 20, " MiB < min_ram_mb ", c.min_ram_mb());
  }
  if (c.architectures_size() > 0 &&
      std::find(c.architectures().begin(), c.architectures().end(), p.arch()) ==
          c.architectures().end()) {
    return absl::StrCat("arch '", absl::CHexEscape(p.arch()), "' not in [",
                        absl::StrJoin(c.architectures(), ", "), "]");
  }
  if (c.has_min_samples() && p.num_samples() < c.min_samples()) {
    return absl::StrCat(p.num_samples(), " samples < min_samples ", c.min_samples());
  }
  if (c.has_accelerator() && p.accelerator() != c.accelerator()) {
    return absl::StrCat("accelerator '", absl::CHexEscape(p.accelerator()), "' is not '",
                        c.accelerator(), "'");
  }
  return "";
}

absl::StatusOr<std::string> ClientRegistry::Join(const proto::DeviceProfile& profile) {
  absl::MutexLock lock(&mu_);
  DropExpiredLocked();
  if (static_cast<int64_t>(clients_.size()) >= options_.max_clients) {
    return absl::ResourceExhaustedError(
        absl::StrCat("registry full: ", clients_.size(), " clients joined"));
  }
  std::string id;
  do {
    absl::StatusOr<std::string> random =
        options_.id_seed == 0 ? RandomBytes(8) : absl::StatusOr<std::string>(std::string());
    if (!random.ok()) return random.status();
    if (options_.id_seed == 0) {
      id = absl::StrCat("c-", ToHex(*random));
    } else {
      // Reproducible ids for tests: a splitmix64 sequence from the seed.
      uint64_t z = (next_ += 0x9e3779b97f4a7c15ULL);
      z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
      z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
      id = absl::StrFormat("c-%016x", z ^ (z >> 31));
    }
  } while (clients_.contains(id));
  clients_[id] = Entry{profile, clock_->Now() + options_.lease};
  if (std::string why = Ineligibility(options_.eligibility, profile); !why.empty()) {
    EDGEFL_LOG_INFO("client ", id, " is not eligible for selection: ", why);
  }
  return id;
}

absl::Status ClientRegistry::JoinAs(const std::string& id, const proto::DeviceProfile& profile) {
  absl::MutexLock lock(&mu_);
  DropExpiredLocked();
  if (!clients_.contains(id) && static_cast<int64_t>(clients_.size()) >= options_.max_clients) {
    return absl::ResourceExhaustedError(
        absl::StrCat("registry full: ", clients_.size(), " clients joined"));
  }
  clients_[id] = Entry{profile, clock_->Now() + options_.lease};
  if (std::string why = Ineligibility(options_.eligibility, profile); !why.empty()) {
    EDGEFL_LOG_INFO("client ", id, " is not eligible for selection: ", why);
  }
  return absl::OkStatus();
}

absl::Status ClientRegistry::UpdateProfile(const std::string& client_id,
                                           const proto::DeviceProfile& profile) {
  absl::MutexLock lock(&mu_);
  auto it = clients_.find(client_id);
  if (it == clients_.end()) {
    return absl::NotFoundError(absl::StrCat(
        "unknown client id '", absl::CHexEscape(client_id.substr(0, 64)), "'; Join again"));
  }
  const std::string before = Ineligibility(options_.eligibility, it->second.profile);
  const std::string after = Ineligibility(options_.eligibility, profile);
  if (before != after) {
    if (after.empty()) {
      EDGEFL_LOG_INFO("client ", client_id, " is eligible for selection again");
    } else {
      EDGEFL_LOG_INFO("client ", client_id, " is not eligible for selection: ", after);
    }
  }
  it->second.profile = profile;
  return absl::OkStatus();
}

absl::Status ClientRegistry::Touch(const std::string& client_id) {
  absl::MutexLock lock(&mu_);
  auto it = clients_.find(client_id);
  if (it == clients_.end() || it->second.expires < clock_->Now()) {
    if (it != clients_.end()) clients_.erase(it);
    return absl::NotFoundError(absl::StrCat(
        "unknown client id '", absl::CHexEscape(client_id.substr(0, 64)), "'; Join again"));
  }
  it->second.expires = clock_->Now() + options_.lease;
  return absl::OkStatus();
}

bool ClientRegistry::IsKnown(const std::string& client_id) const {
  absl::MutexLock lock(&mu_);
  auto it = clients_.find(client_id);
  return it != clients_.end() && it->second.expires >= clock_->Now();
}

std::vector<std::string> ClientRegistry::Eligible() const {
  absl::MutexLock lock(&mu_);
  std::vector<std::string> out;
  const absl::Time now = clock_->Now();
  for (const auto& [id, entry] : clients_) {
    if (entry.expires >= now && Ineligibility(options_.eligibility, entry.profile).empty()) {
      out.push_back(id);
    }
  }
  return out;
}

uint64_t ClientRegistry::EligibleSamples() const {
  absl::MutexLock lock(&mu_);
  uint64_t total = 0;
  const absl::Time now = clock_->Now();
  for (const auto& [id, entry] : clients_) {
    if (entry.expires >= now && Ineligibility(options_.eligibility, entry.profile).empty()) {
      total += entry.profile.num_samples();
    }
  }
  return total;
}

int64_t ClientRegistry::size() const {
  absl::MutexLock lock(&mu_);
  return clients_.size();
}

void ClientRegistry::DropExpiredLocked() {
  const absl::Time now = clock_->Now();
  absl::erase_if(clients_, [now](const auto& kv) { return kv.second.expires < now; });
}

}  // namespace edgefl::server
