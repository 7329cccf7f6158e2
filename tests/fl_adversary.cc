// fl-adversary: a Byzantine device for tests and benchmarks only (never a flag of fl-client). It
// is fl-client in every respect — flags, Join, long-poll CheckIn, download, local training, the
// round's uplink codec chain, Report — except that the update it uploads is poisoned:
//   sign_flip  delta -> -scale * delta (scale 4: "sign flip x4")
//   scale      delta -> scale * delta
//   gaussian   delta -> N(0, stddev^2) per coordinate (the training result is discarded)
//   none       the honest update (with --slow_extra_seconds: a slow but honest device)
// --slow_extra_seconds S makes every training S seconds longer by sleeping after it: a device
// that is slower without taking CPU from the others on a shared benchmark machine (bench/fedbuff).
// The poison is applied to the trained weights inside a ModelRunner wrapper, so everything after
// training (delta, error feedback, compression, upload) is the production code path.
#include <cmath>
#include <cstdio>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "client/client_flags.h"
#include "client/device_runtime.h"
#include "common/flags.h"
#include "models/model_runner.h"

namespace edgefl::client {
namespace {

constexpr char kProgram[] = "fl-adversary";
constexpr char kDescription[] =
    "A Byzantine edgefl device for tests and benchmarks: fl-client with a poisoned update.\n"
    "  fl-adversary --attack sign_flip --attack_scale 4 <fl-client flags>\n"
    "  fl-adversary --attack gaussian --attack_stddev 1 <fl-client flags>";

struct Attack {
  std::string kind = "sign_flip";
  double scale = 4.0;
  double stddev = 1.0;
  uint64_t seed = 0;
  double slow_extra_seconds = 0;
};

class PoisonedRunner : public models::ModelRunner {
 public:
  PoisonedRunner(std::unique_ptr<models::ModelRunner> inner, const Attack& attack)
      : inner_(std::move(inner)), attack_(attack), rng_(attack.seed) {}

  const proto::ModelSpec& spec() const override { return inner_->spec(); }
  int64_t num_parameters() const override { return inner_->num_parameters(); }
  absl::Status SetWeights(absl::Span<const float> weights) override {
    return inner_->SetWeights(weights);
  }
  void GetWeights(std::vector<float>* out) const override { inner_->GetWeights(out); }

  absl::StatusOr<models::TrainResult> Train(const data::ImageDataset& data,
                                            const models::TrainOptions& options,
                                            const models::ProgressFn& progress) override {
    std::vector<float> global;
    inner_->GetWeights(&global);
    absl::StatusOr<models::TrainResult> result = inner_->Train(data, options, progress);
    if (!result.ok()) return result;
    if (attack_.slow_extra_seconds > 0) {
      std::fprintf(stderr, "fl-adversary: slow device, %.1f s more\n", attack_.slow_extra_seconds);
      absl::SleepFor(absl::Seconds(attack_.slow_extra_seconds));
      result->seconds += attack_.slow_extra_seconds;
    }
    if (attack_.kind == "none") return result;
    std::vector<float> w;
    inner_->GetWeights(&w);
    std::normal_distribution<double> normal(0.0, attack_.stddev);
    for (size_t i = 0; i < w.size(); ++i) {
      const double delta = static_cast<double>(w[i]) - global[i];
      double poisoned = delta;
      if (attack_.kind == "sign_flip") poisoned = -attack_.scale * delta;
      if (attack_.kind == "scale") poisoned = attack_.scale * delta;
      if (attack_.kind == "gaussian") poisoned = normal(rng_);
      w[i] = static_cast<float>(global[i] + poisoned);
    }
    absl::Status s = inner_->SetWeights(w);
    if (!s.ok()) return s;
    std::fprintf(stderr, "fl-adversary: poisoned the update (%s)\n", attack_.kind.c_str());
    return result;
  }

  absl::StatusOr<models::EvalResult> Evaluate(const data::ImageDataset& data,
                                              int batch_size) override {
    return inner_->Evaluate(data, batch_size);
  }

 private:
  std::unique_ptr<models::ModelRunner> inner_;
  Attack attack_;
  std::mt19937_64 rng_;
};

int Main(int argc, char** argv) {
  ClientFlags f;
  Attack attack;
  FlagSet flags(kProgram, kDescription);
  RegisterClientFlags(flags, &f);
  flags.String("attack", &attack.kind, "sign_flip, scale, gaussian or none");
  flags.Double("slow_extra_seconds", &attack.slow_extra_seconds,
               "sleep this long after each training (a slow device that takes no CPU)");
  flags.Double("attack_scale", &attack.scale, "factor of sign_flip and scale");
  flags.Double("attack_stddev", &attack.stddev, "standard deviation of the gaussian update");
  flags.ParseOrExit(argc, argv);
  if (attack.kind != "sign_flip" && attack.kind != "scale" && attack.kind != "gaussian" &&
      attack.kind != "none") {
    std::fprintf(stderr, "%s: --attack must be sign_flip, scale, gaussian or none, got '%s'\n",
                 kProgram, attack.kind.c_str());
    return 2;
  }
  if (!(attack.slow_extra_seconds >= 0 && attack.slow_extra_seconds <= 3600)) {
    std::fprintf(stderr, "%s: --slow_extra_seconds must be in [0, 3600]\n", kProgram);
    return 2;
  }
  attack.seed = static_cast<uint64_t>(f.shard.seed) * 7919 + 17;
  RunnerFactory runners = [attack](const std::string& model, int threads)
      -> absl::StatusOr<std::unique_ptr<models::ModelRunner>> {
    absl::StatusOr<std::unique_ptr<models::ModelRunner>> inner =
        models::ModelRunner::Create(model, threads);
    if (!inner.ok()) return inner.status();
    return std::unique_ptr<models::ModelRunner>(
        std::make_unique<PoisonedRunner>(std::move(*inner), attack));
  };
  absl::StatusOr<std::unique_ptr<DeviceRuntime>> runtime = DeviceRuntimeFromFlags(f, runners);
  if (!runtime.ok()) {
    std::fprintf(stderr, "%s: %s\n", kProgram, std::string(runtime.status().message()).c_str());
    return 2;
  }
  const absl::Status s = (*runtime)->Run();
  if (!s.ok()) {
    std::fprintf(stderr, "%s: %s\n", kProgram, std::string(s.message()).c_str());
    return 1;
  }
  return 0;
}

}  // namespace
}  // namespace edgefl::client

int main(int argc, char** argv) { return edgefl::client::Main(argc, argv); }
