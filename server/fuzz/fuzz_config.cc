// libFuzzer target: experiment-config parsing and validation (what fl-server does with --config
// and --set before a run starts).
//
// Input: JSON text of an ExperimentConfig; if it contains a line break, the text after the first
// one is also applied as a `--set path=value` override to a default config.
// Runs ParseConfigJson, FillDefaults, ValidateConfig, the per-round resolution
// (ResolveTaskConfig / ResolveDownlink / ResolveDeadlineSeconds), ConfigToJson, ApplyOverride.
//
// Properties (a violation aborts):
//  - no crash, leak or UB (and no unbounded recursion) on any input;
//  - errors are INVALID_ARGUMENT with a message;
//  - a config that validates prints to JSON that parses back to the same message, and resolves
//    to task settings that are themselves in range (lr > 0, epochs >= 1, ...);
//  - a failed override leaves the config exactly as it was.
#include <cmath>
#include <string>

#include "server/config.h"
#include "compression/chain.h"
#include "fuzz_common.h"

using namespace edgefl;
using namespace edgefl::server;

namespace {

void CheckRefusal(const absl::Status& s) {
  FUZZ_CHECK(!s.ok());
  FUZZ_CHECK(s.code() == absl::StatusCode::kInvalidArgument);
  FUZZ_CHECK(!s.message().empty());
}

void CheckValidConfig(const proto::ExperimentConfig& config) {
  const std::string json = ConfigToJson(config);
  absl::StatusOr<proto::ExperimentConfig> again = ParseConfigJson(json);
  FUZZ_CHECK(again.ok());
  FUZZ_CHECK(again->SerializeAsString() == config.SerializeAsString());
  for (int64_t round : {int64_t{1}, int64_t{config.rounds()}, int64_t{config.rounds()} + 1}) {
    const proto::TaskConfig t = ResolveTaskConfig(config, round);
    FUZZ_CHECK(t.epochs() >= 1);
    FUZZ_CHECK(t.batch_size() >= 1);
    FUZZ_CHECK(t.lr() > 0 && std::isfinite(t.lr()));
    FUZZ_CHECK(compression::ParseChain(t.uplink()).ok());
    FUZZ_CHECK(compression::ParseChain(ResolveDownlink(config, round)).ok());
    const double deadline = ResolveDeadlineSeconds(config, round);
    FUZZ_CHECK(deadline > 0 && std::isfinite(deadline));
  }
  if (config.update_bounds().has_max_l2_norm()) {
    FUZZ_CHECK(config.update_bounds().max_l2_norm() > 0);
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  fuzz::SilenceProtobufLogs();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 64 * 1024) return 0;
  const std::string text(reinterpret_cast<const char*>(data), size);
  const size_t nl = text.find('\n');
  const std::string json = text.substr(0, nl);

  absl::StatusOr<proto::ExperimentConfig> parsed = ParseConfigJson(json);
  if (!parsed.ok()) {
    CheckRefusal(parsed.status());
  } else {
    FillDefaults(&*parsed);
    if (absl::Status v = ValidateConfig(*parsed); v.ok()) {
      CheckValidConfig(*parsed);
    } else {
      CheckRefusal(v);
    }
  }

  if (nl != std::string::npos) {
    proto::ExperimentConfig config;
    FillDefaults(&config);
    const std::string before = config.SerializeAsString();
    absl::Status s = ApplyOverride(text.substr(nl + 1), &config);
    if (!s.ok()) {
      CheckRefusal(s);
      FUZZ_CHECK(config.SerializeAsString() == before);
    } else if (ValidateConfig(config).ok()) {
      CheckValidConfig(config);
    }
  }
  return 0;
}
