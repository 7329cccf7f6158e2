// What the server remembers about enrollment tokens between restarts: how often each token has
// been used (a text file rewritten atomically before a use is granted) and which tokens are
// revoked (a text file the operator edits with `fl-server token revoke`, re-read whenever it
// changes).
//
// Files:
//   uses file     one "<token id> <uses>" per line; written by the server only
//   revocation    one token id per line; blank lines and '#' comments ignored; anything after the
//                 id on a line is ignored (room for a note)
#ifndef EDGEFL_SERVER_ENROLLMENT_LEDGER_H_
#define EDGEFL_SERVER_ENROLLMENT_LEDGER_H_

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"

namespace edgefl::server {

// Thread-safe.
class EnrollmentLedger {
 public:
  struct Options {
    std::string uses_path;        // required; created on the first use
    std::string revocation_path;  // "" = nothing is revoked; a missing file = nothing yet
  };

  // Loads both files. INVALID_ARGUMENT naming the file and line for a malformed uses file (the
  // server must not guess counts); errors reading an existing file carry its path.
  static absl::StatusOr<std::unique_ptr<EnrollmentLedger>> Open(const Options& options);

  // Checks that `token_id` is not revoked and has been used fewer than `max_uses` times, then
  // records one more use and persists the counts (atomic rewrite, fsync) before returning OK.
  // UNAUTHENTICATED (TokenStatus: kRevoked / kUsedUp) with a message naming the token id;
  // UNAVAILABLE when the counts cannot be persisted (the use is then not granted).
  absl::Status ConsumeUse(const std::string& token_id, int64_t max_uses);
  // Gives back a use recorded by ConsumeUse (when the Join failed afterwards). Best effort.
  void RefundUse(const std::string& token_id);

  // Whether `token_id` is in the revocation list (re-read first if the file changed).
  bool IsRevoked(const std::string& token_id);
  int64_t uses(const std::string& token_id) const;

 private:
  explicit EnrollmentLedger(const Options& options) : options_(options) {}
  absl::Status ReloadRevocationsLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status PersistLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const Options options_;
  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, int64_t> uses_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_set<std::string> revoked_ ABSL_GUARDED_BY(mu_);
  // Identity of the revocation file last read (inode, size, mtime); reread when it differs.
  struct FileStamp {
    bool exists = false;
    ino_t ino = 0;
    off_t size = 0;
    int64_t mtime_ns = 0;
    bool operator==(const FileStamp& o) const {
      return exists == o.exists && ino == o.ino && size == o.size && mtime_ns == o.mtime_ns;
    }
  };
  FileStamp revocation_stamp_ ABSL_GUARDED_BY(mu_);
  bool revocation_loaded_ ABSL_GUARDED_BY(mu_) = false;
};

// Parses a revocation list (see the file comment). Token ids that are not 16 hex chars are
// ignored. Pure.
absl::flat_hash_set<std::string> ParseRevocationList(absl::string_view text);

// Adds `ids` to the revocation list at `path` (created if missing; atomic rewrite keeping the
// existing lines). INVALID_ARGUMENT for an id that is not 16 lowercase hex chars.
absl::Status AppendRevocations(const std::string& path, const std::vector<std::string>& ids,
                               absl::string_view note);

}  // namespace edgefl::server

#endif  // EDGEFL_SERVER_ENROLLMENT_LEDGER_H_
