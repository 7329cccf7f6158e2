#include "server/enrollment_ledger.h"

#include <sys/stat.h>

#include <algorithm>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/file_util.h"
#include "common/log.h"
#include "server/tokens.h"

namespace edgefl::server {
namespace {

bool IsTokenId(absl::string_view s) {
  if (s.size() != 16) return false;
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

}  // namespace

absl::flat_hash_set<std::string> ParseRevocationList(absl::string_view text) {
  absl::flat_hash_set<std::string> ids;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (size_t hash = line.find('#'); hash != absl::string_view::npos) line = line.substr(0, hash);
    line = absl::StripAsciiWhitespace(line);
    if (line.empty()) continue;
    absl::string_view id = line.substr(0, std::min(line.find_first_of(" \t"), line.size()));
    if (IsTokenId(id)) ids.insert(std::string(id));
  }
  return ids;
}

absl::Status AppendRevocations(const std::string& path, const std::vector<std::string>& ids,
                               absl::string_view note) {
  for (const std::string& id : ids) {
    if (!IsTokenId(id)) {
      return absl::InvalidArgumentError(
          absl::StrCat("'", id.substr(0, 64),
                       "' is not a token id (16 hex chars, the second field of a token)"));
    }
  }
  std::string text;
  if (FileExists(path)) {
    absl::StatusOr<std::string> old = ReadFile(path);
    if (!old.ok()) return old.status();
    text = std::move(*old);
    if (!text.empty() && text.back() != '\n') text.push_back('\n');
  } else {
    text = "# edgefl revoked enrollment tokens: one token id per line (fl-server token revoke)\n";
  }
  const absl::flat_hash_set<std::string> have = ParseRevocationList(text);
  for (const std::string& id : ids) {
    if (have.contains(id)) continue;
    absl::StrAppend(&text, id, note.empty() ? "" : "  # ", note, "\n");
  }
  return WriteFileAtomically(path, text, 0644);
}

absl::StatusOr<std::unique_ptr<EnrollmentLedger>> EnrollmentLedger::Open(const Options& options) {
  if (options.uses_path.empty()) return absl::InvalidArgumentError("no token uses file given");
  std::unique_ptr<EnrollmentLedger> ledger(new EnrollmentLedger(options));
  absl::MutexLock lock(&ledger->mu_);
  if (FileExists(options.uses_path)) {
    absl::StatusOr<std::string> text = ReadFile(options.uses_path);
    if (!text.ok()) return text.status();
    int line_no = 0;
    for (absl::string_view line : absl::StrSplit(*text, '\n', absl::SkipWhitespace())) {
      ++line_no;
      std::vector<absl::string_view> f = absl::StrSplit(line, ' ', absl::SkipEmpty());
      int64_t n = 0;
      if (f.size() != 2 || !IsTokenId(f[0]) || !absl::SimpleAtoi(f[1], &n) || n < 0) {
        return absl::InvalidArgumentError(absl::StrCat("token uses file ", options.uses_path,
                                                       " line ", line_no, " is malformed"));
      }
      ledger->uses_[std::string(f[0])] = n;
    }
  }
  if (absl::Status s = ledger->ReloadRevocationsLocked(); !s.ok()) return s;
  return ledger;
}

absl::Status EnrollmentLedger::ReloadRevocationsLocked() {
  if (options_.revocation_path.empty()) return absl::OkStatus();
  FileStamp stamp;
  struct stat st;
  if (::stat(options_.revocation_path.c_str(), &st) == 0) {
    stamp.exists = true;
    stamp.ino = st.st_ino;
    stamp.size = st.st_size;
    stamp.mtime_ns = static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
  }
  if (revocation_loaded_ && stamp == revocation_stamp_) return absl::OkStatus();
  if (!stamp.exists) {
    revoked_.clear();
  } else {
    absl::StatusOr<std::string> text = ReadFile(options_.revocation_path);
    if (!text.ok()) return text.status();
    revoked_ = ParseRevocationList(*text);
  }
  if (revocation_loaded_) {
    EDGEFL_LOG_INFO("revocation list ", options_.revocation_path, " reloaded: ", revoked_.size(),
                    " revoked token(s)");
  }
  revocation_stamp_ = stamp;
  revocation_loaded_ = true;
  return absl::OkStatus();
}

bool EnrollmentLedger::IsRevoked(const std::string& token_id) {
  absl::MutexLock lock(&mu_);
  if (absl::Status s = ReloadRevocationsLocked(); !s.ok()) {
    // Keep the last list that could be read; fail closed would lock out every client over a
    // transient read error, fail open would un-revoke. The previous list is the safe middle.
    EDGEFL_LOG_WARN("cannot re-read the revocation list: ", s.ToString());
  }
  return revoked_.contains(token_id);
}

int64_t EnrollmentLedger::uses(const std::string& token_id) const {
  absl::MutexLock lock(&mu_);
  auto it = uses_.find(token_id);
  return it == uses_.end() ? 0 : it->second;
}

absl::Status EnrollmentLedger::PersistLocked() {
  std::vector<std::pair<std::string, int64_t>> rows(uses_.begin(), uses_.end());
  std::sort(rows.begin(), rows.end());
  std::string text;
  for (const auto& [id, n] : rows) absl::StrAppend(&text, id, " ", n, "\n");
  return WriteFileAtomically(options_.uses_path, text, 0600);
}

absl::Status EnrollmentLedger::ConsumeUse(const std::string& token_id, int64_t max_uses) {
  absl::MutexLock lock(&mu_);
  if (absl::Status s = ReloadRevocationsLocked(); !s.ok()) {
    EDGEFL_LOG_WARN("cannot re-read the revocation list: ", s.ToString());
  }
  if (revoked_.contains(token_id)) {
    return TokenStatus(TokenError::kRevoked,
                       absl::StrCat("enrollment token ", token_id, " has been revoked"));
  }
  int64_t& used = uses_[token_id];
  if (used >= max_uses) {
    return TokenStatus(TokenError::kUsedUp,
                       absl::StrCat("enrollment token ", token_id, " is used up (", used, " of ",
                                    max_uses, " uses)"));
  }
  ++used;
  if (absl::Status s = PersistLocked(); !s.ok()) {
    --used;
    EDGEFL_LOG_ERROR("cannot persist token use counts: ", s.ToString());
    return absl::UnavailableError("the server cannot record token uses right now; retry later");
  }
  return absl::OkStatus();
}

void EnrollmentLedger::RefundUse(const std::string& token_id) {
  absl::MutexLock lock(&mu_);
  auto it = uses_.find(token_id);
  if (it == uses_.end() || it->second == 0) return;
  --it->second;
  if (absl::Status s = PersistLocked(); !s.ok()) {
    EDGEFL_LOG_WARN("cannot persist a refunded token use: ", s.ToString());
  }
}

}  // namespace edgefl::server
