#include "server/run_store.h"

#include <cmath>

#include <google/protobuf/util/json_util.h>

#include <algorithm>
#include <map>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "server/config.h"
#include "common/file_util.h"
#include "common/sha256.h"
#include "common/status_macros.h"
#include "server/round_scheduler.h"  // FloatsToBytes

namespace edgefl::server {

absl::StatusOr<RunStore> RunStore::Open(const std::string& dir) {
  if (dir.empty()) return absl::InvalidArgumentError("empty output directory");
  RETURN_IF_ERROR(MakeDirs(dir));
  return RunStore(dir);
}

absl::Status RunStore::WriteConfig(const proto::ExperimentConfig& config) {
  return WriteFileAtomically(Path(kConfigFile), ConfigToJson(config));
}

proto::Checkpoint MakeCheckpoint(int64_t round, const proto::ModelSpec& spec,
                                 absl::Span<const float> weights,
                                 const proto::ExperimentConfig& config, double elapsed_seconds) {
  proto::Checkpoint ckpt;
  ckpt.set_round(round);
  *ckpt.mutable_spec() = spec;
  ckpt.set_weights(FloatsToBytes(weights));
  ckpt.set_sha256(Sha256::Of(ckpt.weights()));
  *ckpt.mutable_config() = config;
  ckpt.set_elapsed_seconds(elapsed_seconds);
  return ckpt;
}

absl::Status RunStore::WriteCheckpoint(const proto::Checkpoint& checkpoint) {
  std::string bytes;
  if (!checkpoint.SerializeToString(&bytes)) {
    return absl::InternalError("could not serialize the checkpoint");
  }
  return WriteFileAtomically(Path(kCheckpointFile), bytes);
}

absl::StatusOr<proto::Checkpoint> RunStore::ReadCheckpoint() const {
  ASSIGN_OR_RETURN(std::string bytes, ReadFile(Path(kCheckpointFile)));
  proto::Checkpoint ckpt;
  if (!ckpt.ParseFromString(bytes)) {
    return absl::DataLossError(absl::StrCat(Path(kCheckpointFile), " does not parse"));
  }
  if (Sha256::Of(ckpt.weights()) != ckpt.sha256()) {
    return absl::DataLossError(absl::StrCat(Path(kCheckpointFile), ": weights digest mismatch"));
  }
  return ckpt;
}

std::string RunStore::MetricsToJson(const RoundMetrics& m) {
  const proto::RoundRecord& s = m.stats;
  std::vector<std::string> fields = {
      absl::StrFormat("\"round\":%d", s.round()),
  };
  if (m.test_accuracy) fields.push_back(absl::StrFormat("\"test_accuracy\":%.6f", *m.test_accuracy));
  if (m.test_loss) fields.push_back(absl::StrFormat("\"test_loss\":%.6f", *m.test_loss));
  if (m.global_test_accuracy) {
    fields.push_back(
        absl::StrFormat("\"global_test_accuracy\":%.6f", *m.global_test_accuracy));
  }
  if (m.global_test_loss) {
    fields.push_back(absl::StrFormat("\"global_test_loss\":%.6f", *m.global_test_loss));
  }
  fields.push_back(absl::StrFormat("\"clients_selected\":%d", s.clients_selected()));
  fields.push_back(absl::StrFormat("\"clients_reported\":%d", s.clients_reported()));
  fields.push_back(absl::StrFormat("\"clients_failed\":%d", s.clients_failed()));
  fields.push_back(absl::StrFormat("\"updates_clipped\":%d", s.updates_clipped()));
  fields.push_back(absl::StrFormat("\"attempts\":%d", s.attempts()));
  fields.push_back(absl::StrFormat("\"bytes_down\":%d", s.bytes_down()));
  fields.push_back(absl::StrFormat("\"bytes_up\":%d", s.bytes_up()));
  fields.push_back(absl::StrFormat("\"round_seconds\":%.3f", s.round_seconds()));
  fields.push_back(absl::StrFormat("\"aggregation_seconds\":%.4f", s.aggregation_seconds()));
  fields.push_back(absl::StrFormat("\"eval_seconds\":%.3f", m.eval_seconds));
  fields.push_back(absl::StrFormat("\"unix_time\":%.3f", s.unix_time()));
  std::vector<std::string> rejected;
  // In reason order (a proto map iterates in no fixed order).
  const std::map<std::string, int64_t> by_reason(s.rejected().begin(), s.rejected().end());
  for (const auto& [reason, count] : by_reason) {
    rejected.push_back(absl::StrFormat("\"%s\":%d", reason, count));
  }
  fields.push_back(absl::StrCat("\"rejected\":{", absl::StrJoin(rejected, ","), "}"));
  fields.push_back(absl::StrFormat("\"rejected_total\":%d", s.rejected_total()));
  if (s.updates_dp_clipped() > 0) {
    fields.push_back(absl::StrFormat("\"updates_dp_clipped\":%d", s.updates_dp_clipped()));
  }
  if (s.server_lr() > 0) fields.push_back(absl::StrFormat("\"server_lr\":%.9g", s.server_lr()));
  if (s.has_dp_clip_norm()) {
    fields.push_back(absl::StrFormat("\"dp_clip_norm\":%.9g", s.dp_clip_norm()));
  }
  if (s.has_dp_epsilon()) {
    // JSON has no infinity: noise multiplier 0 (no privacy) is written as null.
    fields.push_back(std::isfinite(s.dp_epsilon())
                         ? absl::StrFormat("\"dp_epsilon\":%.9g", s.dp_epsilon())
                         : std::string("\"dp_epsilon\":null"));
  }
  // Selected devices that declined the task (battery, temperature, budgets), by reason.
  std::vector<std::string> declined;
  const std::map<std::string, int64_t> declined_by(s.declined().begin(), s.declined().end());
  for (const auto& [reason, count] : declined_by) {
    declined.push_back(absl::StrFormat("\"%s\":%d", reason, count));
  }
  fields.push_back(absl::StrCat("\"declined\":{", absl::StrJoin(declined, ","), "}"));
  fields.push_back(absl::StrFormat("\"clients_declined\":%d", s.clients_declined()));
  fields.push_back(absl::StrFormat("\"clients_refused\":%d", s.clients_refused()));
  fields.push_back(absl::StrFormat("\"reports_repeated\":%d", s.reports_repeated()));
  if (s.updates_stale() > 0) {  // aggregation.mode "buffered"
    fields.push_back(absl::StrFormat("\"updates_stale\":%d,\"staleness_max\":%d",
                                     s.updates_stale(), s.staleness_max()));
  }
  if (s.student_reports() > 0) {
    fields.push_back(absl::StrFormat("\"student_local_accuracy\":%.6f",
                                     s.student_accuracy_sum() / s.student_reports()));
  }
  return absl::StrCat("{", absl::StrJoin(fields, ","), "}");
}

absl::Status RunStore::AppendMetrics(const RoundMetrics& metrics) {
  return AppendLine(Path(kMetricsFile), MetricsToJson(metrics));
}

absl::StatusOr<int64_t> RunStore::TruncateMetricsAfter(int64_t round) {
  absl::StatusOr<std::string> text = ReadFile(Path(kMetricsFile));
  if (absl::IsNotFound(text.status())) return 0;
  if (!text.ok()) return text.status();
  std::string kept;
  int64_t last = 0;
  for (absl::string_view line : absl::StrSplit(*text, '\n', absl::SkipEmpty())) {
    // Lines start with {"round":N, as written by MetricsToJson.
    int64_t r = -1;
    const absl::string_view prefix = "{\"round\":";
    if (absl::StartsWith(line, prefix)) {
      absl::string_view rest = line.substr(prefix.size());
      rest = rest.substr(0, rest.find(','));
      if (!absl::SimpleAtoi(rest, &r)) r = -1;
    }
    // A line cut short by a crash during its append (no closing brace) is dropped; its round's
    // figures are still in the checkpoint's pending rounds.
    if (r >= 0 && r <= round && absl::EndsWith(line, "}")) {
      absl::StrAppend(&kept, line, "\n");
      last = std::max(last, r);
    }
  }
  RETURN_IF_ERROR(WriteFileAtomically(Path(kMetricsFile), kept));
  return last;
}

absl::StatusOr<int> RunStore::RestoreMetrics(const proto::Checkpoint& checkpoint,
                                             const std::function<void(RoundMetrics*)>& evaluate) {
  ASSIGN_OR_RETURN(const int64_t last, TruncateMetricsAfter(checkpoint.round()));
  std::map<int64_t, proto::RoundRecord> missing;
  for (const proto::RoundRecord& record : checkpoint.pending_rounds()) {
    if (record.round() > last && record.round() <= checkpoint.round()) {
      missing[record.round()] = record;
    }
  }
  for (const auto& [round, stats] : missing) {
    RoundMetrics m;
    m.stats = stats;
    if (round == checkpoint.round() && evaluate) evaluate(&m);
    RETURN_IF_ERROR(AppendMetrics(m));
  }
  return static_cast<int>(missing.size());
}

absl::Status RunStore::WriteFinalModel(const proto::ModelSpec& spec,
                                       absl::Span<const float> weights) {
  RETURN_IF_ERROR(WriteFileAtomically(Path(kFinalModelFile), FloatsToBytes(weights)));
  std::string json;
  google::protobuf::util::JsonPrintOptions opts;
  opts.add_whitespace = true;
  opts.preserve_proto_field_names = true;
  if (!google::protobuf::util::MessageToJsonString(spec, &json, opts).ok()) {
    return absl::InternalError("could not print the model spec");
  }
  return WriteFileAtomically(Path(kSpecFile), json);
}

}  // namespace edgefl::server
