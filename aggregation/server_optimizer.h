// Server optimizers: the combined client delta is a pseudo-gradient (Reddi et al. 2021, "Adaptive
// Federated Optimization", Algorithm 2) and the server takes one optimizer step on the global model
// with it. Everything is computed in double and each new parameter is rounded to float once.
//
// Sign convention: `delta` is the combined update (client model - global model), i.e. the
// *negative* of a gradient, so every rule below moves the model along +delta.
//
// Formulas (per coordinate, d = delta, x = the model value):
//   sgd (FedAvgM, Hsu et al. 2019):  u = momentum u + d;  x += lr u
//       lr = 1, momentum = 0 is FedAvg bit for bit: x = float(double(x) + d).
//   adam, yogi, adagrad share  m = beta1 m + (1 - beta1) d  and  x += lr m / (sqrt(v) + tau), with
//     adam:     v = beta2 v + (1 - beta2) d^2
//     yogi:     v = v - (1 - beta2) d^2 sign(v - d^2)
//     adagrad:  v = v + d^2
// m starts at 0 and v at tau^2 (Reddi et al.: v_{-1} >= tau^2; Flower starts v at 0 instead).
// No bias correction (as Algorithm 2; Flower's FedAdam adds one). sign(0) = 0.
//   feddyn (Acar et al. 2021, "Federated Learning Based on Dynamic Regularization", Alg. 1):
//       h = h - alpha d;  x += d - h / alpha      (h starts at 0)
//     the paper's  theta = mean(theta_k) - h / alpha. There is no server lr: SetLearningRate
//     refuses anything but 1, as the config does at start-up (server/strategy_registry.cc), since
//     with a step of 0.5 the devices' terms over-correct (a labels:2 run diverged at round 13).
//     The paper updates h with
//     (1/m) sum over the participants (m = all devices); here d is the participants' mean, i.e.
//     the paper's rule when every device takes part in every round (a smaller share of devices
//     per round makes h move faster than the paper's). The devices' side (their linear term) is
//     TaskConfig.feddyn_alpha.
#ifndef EDGEFL_AGGREGATION_SERVER_OPTIMIZER_H_
#define EDGEFL_AGGREGATION_SERVER_OPTIMIZER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace edgefl::aggregation {

// Not thread-safe: the caller serializes all calls.
class ServerOptimizer {
 public:
  virtual ~ServerOptimizer() = default;

  // "sgd", "adam", "yogi", "adagrad" or "feddyn".
  virtual std::string name() const = 0;
  // Number of model parameters the optimizer was created for.
  virtual size_t dim() const = 0;

  // One step: updates the optimizer state and `global` (both of size dim()) from `delta`.
  // INVALID_ARGUMENT on a size mismatch, a non-finite delta, or a step that would make a model
  // value or a state value non-finite; `global` and the state are then unchanged.
  virtual absl::Status Apply(absl::Span<const double> delta, absl::Span<float> global) = 0;

  // Overrides the server learning rate from the next Apply on (e.g. a per-round schedule); it
  // stays until changed again and is part of the saved state. INVALID_ARGUMENT unless finite > 0
  // (FedDyn: unless 1, its only step).
  virtual absl::Status SetLearningRate(double learning_rate);
  double learning_rate() const { return learning_rate_; }
  // Steps taken so far.
  int64_t steps() const { return steps_; }

  // Serializes the state (kind, dim, learning rate, step count, moments) in the format of
  // state_format.h. Hyperparameters (momentum, betas, tau) are configuration, not state. The kinds
  // are server_optimizer.{sgd, sgd_momentum, adam, yogi, adagrad, feddyn}: SGD with momentum > 0 keeps a
  // velocity buffer and does not load a momentum-free SGD state, nor the reverse.
  virtual std::string SaveState() const = 0;
  // Restores a SaveState() blob. INVALID_ARGUMENT (state unchanged) if the blob is corrupt or
  // truncated, or was saved by an optimizer of another kind or dim.
  virtual absl::Status LoadState(absl::string_view state) = 0;

 protected:
  explicit ServerOptimizer(double learning_rate) : learning_rate_(learning_rate) {}
  double learning_rate_;
  int64_t steps_ = 0;
};

// FedAvgM: server SGD with heavy-ball momentum.
struct SgdOptions {
  // Number of model parameters; must be > 0.
  size_t dim = 0;
  // Server learning rate; finite > 0. Default 1 (FedAvg / FedAvgM as in Hsu et al.).
  double learning_rate = 1.0;
  // Momentum in [0, 1). Default 0 (plain FedAvg). Hsu et al. use 0.9 (with lr 1).
  double momentum = 0.0;
};
absl::StatusOr<std::unique_ptr<ServerOptimizer>> CreateServerSgd(const SgdOptions& options);

// Adaptive rules. Defaults are Flower's (flwr.server.strategy FedAdam / FedYogi / FedAdagrad).
struct AdamOptions {
  size_t dim = 0;              // number of model parameters; > 0
  double learning_rate = 0.1;  // eta; finite > 0. Flower FedAdam: 1e-1
  double beta1 = 0.9;          // first-moment decay in [0, 1). Flower: 0.9
  double beta2 = 0.99;         // second-moment decay in [0, 1). Flower: 0.99
  double tau = 1e-9;           // adaptivity / epsilon; finite > 0. Flower FedAdam: 1e-9
};
struct YogiOptions {
  size_t dim = 0;               // number of model parameters; > 0
  double learning_rate = 0.01;  // eta; finite > 0. Flower FedYogi: 1e-2
  double beta1 = 0.9;           // in [0, 1). Flower: 0.9
  double beta2 = 0.99;          // in [0, 1). Flower: 0.99
  double tau = 1e-3;            // finite > 0. Flower FedYogi: 1e-3
};
struct AdagradOptions {
  size_t dim = 0;              // number of model parameters; > 0
  double learning_rate = 0.1;  // eta; finite > 0. Flower FedAdagrad: 1e-1
  double beta1 = 0.0;          // momentum in [0, 1). Flower FedAdagrad: 0 (Reddi et al. allow > 0)
  double tau = 1e-9;           // finite > 0. Flower FedAdagrad: 1e-9
};
// FedDyn's server side (formula above). Its step is the paper's, learning rate 1: the devices'
// terms assume the model moves by the whole mean update (a damped step diverged on the labels:2
// split), so SetLearningRate refuses anything else.
struct FedDynOptions {
  size_t dim = 0;       // number of model parameters; > 0
  double alpha = 0.01;  // finite > 0; must equal the devices' TaskConfig.feddyn_alpha
};
absl::StatusOr<std::unique_ptr<ServerOptimizer>> CreateServerFedDyn(const FedDynOptions& options);
absl::StatusOr<std::unique_ptr<ServerOptimizer>> CreateServerAdam(const AdamOptions& options);
absl::StatusOr<std::unique_ptr<ServerOptimizer>> CreateServerYogi(const YogiOptions& options);
absl::StatusOr<std::unique_ptr<ServerOptimizer>> CreateServerAdagrad(const AdagradOptions& options);

}  // namespace edgefl::aggregation

#endif  // EDGEFL_AGGREGATION_SERVER_OPTIMIZER_H_
