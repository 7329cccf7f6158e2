// FedDyn's device side (Acar et al. 2021, "Federated Learning Based on Dynamic Regularization"):
// the device's linear term g, an estimate of its own loss gradient at the optimum, which local
// training subtracts from every gradient (models::TrainOptions::linear_term) so that the device's
// local optimum moves towards the global one instead of drifting to its own labels.
//
// g starts at 0. After a round the device sets g -= alpha (w_trained - w_global); the change is
// kept only once the server accepted the round's update (Commit), because the server's matching
// correction h moves only with the updates it folds in. Saved atomically in the state directory
// (so a restarted device keeps it):
//
//   offset  size     field
//   0       8        magic "EFLDYN01"
//   8       8        dim (little-endian uint64)
//   16      4 dim    g, float32 little-endian
//   16+4dim 32       SHA-256 of every byte before it
#ifndef EDGEFL_CLIENT_FEDDYN_TERM_H_
#define EDGEFL_CLIENT_FEDDYN_TERM_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"

namespace edgefl::client {

// Not thread-safe; one per client process.
class FedDynTerm {
 public:
  // `state_file` keeps g across restarts ("" = memory only).
  explicit FedDynTerm(std::string state_file) : state_file_(std::move(state_file)) {}

  // Loads g saved by an earlier run. A missing file is fine (g = 0); a corrupt one is discarded
  // (g = 0) and reported as DATA_LOSS so the caller can warn.
  absl::Status Load();

  // The committed g for a model of `dim` values: all zeros when none is held or it was kept for
  // a model of another size (then it is reset to zeros of `dim`).
  absl::Span<const float> For(size_t dim);

  // After training: the pending g = committed g - alpha delta (delta = trained - global, the size
  // For was called with). A pending value not committed is replaced by the next Update.
  // INVALID_ARGUMENT for alpha not finite > 0, a delta of another size, or a non-finite result
  // (nothing pending then).
  absl::Status Update(double alpha, absl::Span<const float> delta);
  // The server accepted the round's update: the pending g becomes g and is saved atomically.
  // OK without a pending value. An error only means the save failed (g is kept in memory).
  absl::Status Commit();
  // The update was not accepted: drop the pending value.
  void Rollback() { pending_.reset(); }

  const std::vector<float>& committed() const { return g_; }
  bool pending() const { return pending_.has_value(); }

 private:
  std::string state_file_;
  std::vector<float> g_;
  std::optional<std::vector<float>> pending_;
};

}  // namespace edgefl::client

#endif  // EDGEFL_CLIENT_FEDDYN_TERM_H_
