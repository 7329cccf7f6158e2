#include "server/config.h"

#include "server/strategy_registry.h"

#include "compression/chain.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/message.h"
#include "google/protobuf/util/json_util.h"

namespace edgefl::server {
namespace {

namespace pb = ::google::protobuf;

// Documented defaults (protos/config.proto).
constexpr int32_t kDefaultRounds = 10;
constexpr char kDefaultModel[] = "fedavg_cnn";
constexpr uint64_t kDefaultSeed = 0;
constexpr double kDefaultFraction = 1.0;
constexpr int32_t kDefaultMinClients = 2;
constexpr double kDefaultOverSelection = 0;
constexpr double kDefaultWaitForClientsSeconds = 600;
constexpr int32_t kDefaultEpochs = 1;
constexpr int32_t kDefaultBatchSize = 32;
constexpr double kDefaultLr = 0.05;
constexpr double kDefaultMomentum = 0;
constexpr double kDefaultWeightDecay = 0;
constexpr int32_t kDefaultMaxSamples = 0;
constexpr char kDefaultCodec[] = "dense";
constexpr int32_t kDefaultEfMaxStaleness = 5;
constexpr double kDefaultNtdTau = 3;  // FedNTD's temperature (Lee et al. 2022)
constexpr double kDefaultDeadlineSeconds = 300;
constexpr double kDefaultQuorum = 0.5;
constexpr int32_t kDefaultMaxRoundAttempts = 3;
constexpr int32_t kDefaultEvalEvery = 1;
constexpr int32_t kDefaultEvalMaxSamples = 0;
constexpr int32_t kDefaultEvalBatchSize = 500;
constexpr int32_t kDefaultEvalThreads = 1;
constexpr char kDefaultDataDir[] = "/usr/share/datasets/fashion-mnist";
constexpr char kDefaultOnViolation[] = "reject";

void FillClientDefaults(proto::ClientTraining* c) {
  if (!c->has_epochs()) c->set_epochs(kDefaultEpochs);
  if (!c->has_batch_size()) c->set_batch_size(kDefaultBatchSize);
  if (!c->has_lr()) c->set_lr(kDefaultLr);
  if (!c->has_momentum()) c->set_momentum(kDefaultMomentum);
  if (!c->has_weight_decay()) c->set_weight_decay(kDefaultWeightDecay);
  if (!c->has_max_samples()) c->set_max_samples(kDefaultMaxSamples);
  if (!c->has_uplink()) c->set_uplink(kDefaultCodec);
  if (!c->has_downlink()) c->set_downlink(kDefaultCodec);
  if (!c->has_ef_max_staleness()) c->set_ef_max_staleness(kDefaultEfMaxStaleness);
  if (!c->has_ntd_tau()) c->set_ntd_tau(kDefaultNtdTau);
}

// ---------------------------------------------------------------------------------------------
// JSON parsing

// protobuf 3.21 reports an unknown key as "key: Cannot find field." at the top level and as
// "(parent.path) key: Cannot find field." below it. Returns the dotted path of the key, or "".
std::string UnknownKeyPath(absl::string_view message) {
  constexpr absl::string_view kSuffix = ": Cannot find field.";
  if (!absl::ConsumeSuffix(&message, kSuffix)) return "";
  std::string parent;
  if (absl::ConsumePrefix(&message, "(")) {
    size_t close = message.find(") ");
    if (close == absl::string_view::npos) return "";
    parent = std::string(message.substr(0, close));
    message.remove_prefix(close + 2);
  }
  if (message.empty()) return "";
  return parent.empty() ? std::string(message) : absl::StrCat(parent, ".", message);
}

// protobuf reports JSON syntax errors on three lines: the message, an excerpt of the input, and a
// caret under the offending position. Folds them into one line ("... near: {"a": 1 >>"b"...").
std::string OneLine(const std::string& detail) {
  std::vector<std::string> lines = absl::StrSplit(detail, '\n');
  if (lines.size() == 3) {
    if (absl::StripAsciiWhitespace(lines[1]).empty()) return lines[0];
    const size_t caret = lines[2].find('^');
    if (caret != std::string::npos && caret <= lines[1].size()) {
      return absl::StrCat(lines[0], " near: ", lines[1].substr(0, caret), ">>",
                          lines[1].substr(caret));
    }
  }
  return absl::StrJoin(lines, " ");
}

absl::Status ParseJsonInto(const std::string& json, pb::Message* message) {
  pb::util::JsonParseOptions options;
  options.ignore_unknown_fields = false;
  // protobuf 3.21 has its own util::Status type; only its message is used.
  const auto status = pb::util::JsonStringToMessage(json, message, options);
  if (status.ok()) return absl::OkStatus();
  const std::string detail =
      OneLine(std::string(absl::StripTrailingAsciiWhitespace(std::string(status.message()))));
  std::string unknown = UnknownKeyPath(detail);
  if (!unknown.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "unknown key \"", unknown, "\" in ", message->GetDescriptor()->name(), " (", detail, ")"));
  }
  return absl::InvalidArgumentError(
      absl::StrCat("invalid ", message->GetDescriptor()->name(), " JSON: ", detail));
}

// ---------------------------------------------------------------------------------------------
// Overrides

const pb::FieldDescriptor* FindField(const pb::Descriptor* type, const std::string& name) {
  for (int i = 0; i < type->field_count(); ++i) {
    const pb::FieldDescriptor* f = type->field(i);
    if (f->name() == name || f->json_name() == name) return f;
  }
  return nullptr;
}

std::string FieldNames(const pb::Descriptor* type) {
  std::vector<std::string> names;
  for (int i = 0; i < type->field_count(); ++i) names.push_back(type->field(i)->name());
  return absl::StrJoin(names, ", ");
}

bool HasOuterSpace(const std::string& s) {
  return !s.empty() && (absl::ascii_isspace(static_cast<unsigned char>(s.front())) ||
                        absl::ascii_isspace(static_cast<unsigned char>(s.back())));
}

// Sets the scalar `field` of `msg` from `text`. Returns a description of the expected value on
// failure, or "" on success.
std::string SetScalar(pb::Message* msg, const pb::FieldDescriptor* field, const std::string& text) {
  const pb::Reflection* r = msg->GetReflection();
  switch (field->cpp_type()) {
    case pb::FieldDescriptor::CPPTYPE_INT32: {
      int32_t v;
      if (HasOuterSpace(text) || !absl::SimpleAtoi(text, &v)) return "a 32-bit integer";
      r->SetInt32(msg, field, v);
      return "";
    }
    case pb::FieldDescriptor::CPPTYPE_INT64: {
      int64_t v;
      if (HasOuterSpace(text) || !absl::SimpleAtoi(text, &v)) return "a 64-bit integer";
      r->SetInt64(msg, field, v);
      return "";
    }
    case pb::FieldDescriptor::CPPTYPE_UINT32: {
      uint32_t v;
      if (text.empty() || text[0] == '-' || HasOuterSpace(text) || !absl::SimpleAtoi(text, &v)) {
        return "a non-negative 32-bit integer";
      }
      r->SetUInt32(msg, field, v);
      return "";
    }
    case pb::FieldDescriptor::CPPTYPE_UINT64: {
      uint64_t v;
      if (text.empty() || text[0] == '-' || HasOuterSpace(text) || !absl::SimpleAtoi(text, &v)) {
        return "a non-negative integer";
      }
      r->SetUInt64(msg, field, v);
      return "";
    }
    case pb::FieldDescriptor::CPPTYPE_DOUBLE: {
      double v;
      if (HasOuterSpace(text) || !absl::SimpleAtod(text, &v)) return "a number";
      r->SetDouble(msg, field, v);
      return "";
    }
    case pb::FieldDescriptor::CPPTYPE_FLOAT: {
      float v;
      if (HasOuterSpace(text) || !absl::SimpleAtof(text, &v)) return "a number";
      r->SetFloat(msg, field, v);
      return "";
    }
    case pb::FieldDescriptor::CPPTYPE_BOOL: {
      if (text == "true" || text == "1") {
        r->SetBool(msg, field, true);
      } else if (text == "false" || text == "0") {
        r->SetBool(msg, field, false);
      } else {
        return "true or false";
      }
      return "";
    }
    case pb::FieldDescriptor::CPPTYPE_STRING:
      r->SetString(msg, field, text);
      return "";
    case pb::FieldDescriptor::CPPTYPE_ENUM: {
      const pb::EnumDescriptor* type = field->enum_type();
      const pb::EnumValueDescriptor* value = type->FindValueByName(text);
      int number;
      if (value == nullptr && absl::SimpleAtoi(text, &number)) {
        value = type->FindValueByNumber(number);
      }
      if (value == nullptr) {
        std::vector<std::string> names;
        for (int i = 0; i < type->value_count(); ++i) names.push_back(type->value(i)->name());
        return absl::StrCat("one of ", absl::StrJoin(names, ", "));
      }
      r->SetEnum(msg, field, value);
      return "";
    }
    case pb::FieldDescriptor::CPPTYPE_MESSAGE:
      break;
  }
  return "a scalar value";
}

// Parses `json_value` as the JSON value of `field` and replaces that field of `msg` with it.
absl::Status SetFromJson(pb::Message* msg, const pb::FieldDescriptor* field,
                         const std::string& json_value) {
  // Wrap the value as {"field": value} and parse it into a fresh message of the parent's type, so
  // protobuf's JSON parser handles every field kind (messages, repeated scalars, maps, ...).
  std::unique_ptr<pb::Message> scratch(msg->New());
  RETURN_IF_ERROR(
      ParseJsonInto(absl::StrCat("{\"", field->name(), "\": ", json_value, "}"), scratch.get()));
  const pb::Reflection* r = msg->GetReflection();
  r->ClearField(msg, field);
  r->SwapFields(msg, scratch.get(), {field});
  return absl::OkStatus();
}

absl::Status ApplyOverrideTo(const std::string& path, const std::string& value, pb::Message* root) {
  auto error = [](const std::string& what) { return absl::InvalidArgumentError(what); };
  pb::Message* msg = root;
  std::vector<std::string> parts = absl::StrSplit(path, '.');
  for (size_t i = 0; i < parts.size(); ++i) {
    std::string part = parts[i];
    const bool last = i + 1 == parts.size();
    // Optional index into a repeated message field: "schedule[0].client.lr".
    int index = -1;
    if (size_t open = part.find('['); open != std::string::npos) {
      if (part.back() != ']' ||
          !absl::SimpleAtoi(part.substr(open + 1, part.size() - open - 2), &index) || index < 0) {
        return error(absl::StrCat("malformed index in \"", part, "\""));
      }
      part.resize(open);
    }
    if (part.empty()) return error("empty path component");
    const pb::Descriptor* type = msg->GetDescriptor();
    const pb::FieldDescriptor* field = FindField(type, part);
    if (field == nullptr) {
      return error(absl::StrCat("unknown field \"", part, "\" in ", type->name(),
                                " (fields: ", FieldNames(type), ")"));
    }
    const pb::Reflection* r = msg->GetReflection();
    if (index >= 0) {
      if (!field->is_repeated() || field->cpp_type() != pb::FieldDescriptor::CPPTYPE_MESSAGE ||
          field->is_map()) {
        return error(absl::StrCat("\"", part, "\" is not a list of messages and takes no index"));
      }
      const int size = r->FieldSize(*msg, field);
      if (index >= size) {
        return error(
            absl::StrCat("index ", index, " out of range: ", part, " has ", size, " entries"));
      }
      if (last) {
        // Replace one element with a JSON object.
        pb::Message* element = r->MutableRepeatedMessage(msg, field, index);
        std::unique_ptr<pb::Message> parsed(element->New());
        absl::Status status = ParseJsonInto(value, parsed.get());
        if (!status.ok()) return error(std::string(status.message()));
        element->CopyFrom(*parsed);
        return absl::OkStatus();
      }
      msg = r->MutableRepeatedMessage(msg, field, index);
      continue;
    }
    if (last) {
      if (field->is_repeated() || field->cpp_type() == pb::FieldDescriptor::CPPTYPE_MESSAGE) {
        absl::Status status = SetFromJson(msg, field, value);
        if (!status.ok()) return error(std::string(status.message()));
        return absl::OkStatus();
      }
      std::string expected = SetScalar(msg, field, value);
      if (!expected.empty()) {
        return error(absl::StrCat("invalid value '", value, "': expected ", expected));
      }
      return absl::OkStatus();
    }
    if (field->is_repeated()) {
      return error(absl::StrCat("\"", part, "\" is a list; index it (", part,
                                "[0].field) or set it whole as JSON (", part, "=[...])"));
    }
    if (field->cpp_type() != pb::FieldDescriptor::CPPTYPE_MESSAGE) {
      return error(absl::StrCat("\"", part, "\" is a scalar and has no subfields"));
    }
    msg = r->MutableMessage(msg, field);
  }
  return error("empty path");
}

}  // namespace

absl::StatusOr<proto::ExperimentConfig> ParseConfigJson(const std::string& json) {
  proto::ExperimentConfig config;
  RETURN_IF_ERROR(ParseJsonInto(json, &config));
  return config;
}

absl::StatusOr<proto::ExperimentConfig> LoadConfigFile(const std::string& path) {
  absl::StatusOr<std::string> text = ReadFile(path);
  if (!text.ok()) return text.status();  // carries the path
  absl::StatusOr<proto::ExperimentConfig> config = ParseConfigJson(*text);
  if (!config.ok()) {
    return absl::Status(config.status().code(),
                        absl::StrCat(path, ": ", config.status().message()));
  }
  return config;
}

std::string ConfigToJson(const proto::ExperimentConfig& config) {
  pb::util::JsonPrintOptions options;
  options.add_whitespace = true;
  options.preserve_proto_field_names = true;
  options.always_print_primitive_fields = true;
  std::string out;
  const auto status = pb::util::MessageToJsonString(config, &out, options);
  if (!status.ok()) {
    // Only possible for malformed Any/well-known types, which ExperimentConfig does not use.
    return absl::StrCat("{\"error\": \"", absl::CEscape(std::string(status.message())), "\"}\n");
  }
  return out;
}

absl::Status ApplyOverride(const std::string& assignment, proto::ExperimentConfig* config) {
  const size_t eq = assignment.find('=');
  if (eq == std::string::npos || eq == 0) {
    return absl::InvalidArgumentError(absl::StrCat("malformed override \"", assignment,
                                                   "\": expected path=value, e.g. client.lr=0.01"));
  }
  const std::string path = std::string(absl::StripAsciiWhitespace(assignment.substr(0, eq)));
  const std::string value = assignment.substr(eq + 1);
  auto error = [&](const std::string& what) {
    return absl::InvalidArgumentError(absl::StrCat("override ", path, ": ", what));
  };

  // Work on a copy so that a failed override leaves `config` exactly as it was (walking the path
  // creates intermediate messages).
  proto::ExperimentConfig updated = *config;
  absl::Status status = ApplyOverrideTo(path, value, &updated);
  if (!status.ok()) return error(std::string(status.message()));
  config->Swap(&updated);
  return absl::OkStatus();
}

void FillDefaults(proto::ExperimentConfig* config) {
  if (!config->has_rounds()) config->set_rounds(kDefaultRounds);
  if (!config->has_model()) config->set_model(kDefaultModel);
  if (!config->has_seed()) config->set_seed(kDefaultSeed);
  proto::Sampling* s = config->mutable_sampling();
  if (!s->has_fraction()) s->set_fraction(kDefaultFraction);
  if (!s->has_min_clients()) s->set_min_clients(kDefaultMinClients);
  if (!s->has_over_selection()) s->set_over_selection(kDefaultOverSelection);
  if (!s->has_wait_for_clients_seconds()) {
    s->set_wait_for_clients_seconds(kDefaultWaitForClientsSeconds);
  }
  FillClientDefaults(config->mutable_client());
  if (!config->has_deadline_seconds()) config->set_deadline_seconds(kDefaultDeadlineSeconds);
  if (!config->has_quorum()) config->set_quorum(kDefaultQuorum);
  if (!config->has_max_round_attempts()) config->set_max_round_attempts(kDefaultMaxRoundAttempts);
  proto::Evaluation* e = config->mutable_evaluation();
  if (!e->has_every()) e->set_every(kDefaultEvalEvery);
  if (!e->has_max_samples()) e->set_max_samples(kDefaultEvalMaxSamples);
  if (!e->has_batch_size()) e->set_batch_size(kDefaultEvalBatchSize);
  if (!e->has_threads()) e->set_threads(kDefaultEvalThreads);
  if (!config->has_data_dir()) config->set_data_dir(kDefaultDataDir);
  proto::UpdateBounds* b = config->mutable_update_bounds();
  if (!b->has_on_violation()) b->set_on_violation(kDefaultOnViolation);
  // update_bounds.max_l2_norm stays unset: no bound unless one is configured.
  FillAggregationDefaults(config);
  // init_weights stays unset: its "default" is the absence of a file (seeded init).
  // Schedule entries are deliberately left sparse: their set fields are the overrides.
}

namespace {

// Range checks. Written as !(ok) so that NaN fails every check.
absl::Status CheckInt(const std::string& name, int64_t v, int64_t min) {
  if (!(v >= min)) {
    return absl::InvalidArgumentError(absl::StrCat(name, " must be >= ", min, ", got ", v));
  }
  return absl::OkStatus();
}

absl::Status CheckPositive(const std::string& name, double v) {
  if (!(v > 0) || std::isinf(v)) {
    return absl::InvalidArgumentError(absl::StrCat(name, " must be > 0, got ", v));
  }
  return absl::OkStatus();
}

absl::Status CheckNonNegative(const std::string& name, double v) {
  if (!(v >= 0) || std::isinf(v)) {
    return absl::InvalidArgumentError(absl::StrCat(name, " must be >= 0, got ", v));
  }
  return absl::OkStatus();
}

// `v` in the interval from `lo` to `hi`, each end closed or open as the bracket says.
enum class End { kOpen, kClosed };
absl::Status CheckInterval(const std::string& name, double v, End lo_end, double lo, double hi,
                           End hi_end) {
  const bool above = lo_end == End::kClosed ? v >= lo : v > lo;
  const bool below = hi_end == End::kClosed ? v <= hi : v < hi;
  if (!(above && below)) {
    return absl::InvalidArgumentError(absl::StrCat(name, " must be in ",
                                                   lo_end == End::kClosed ? "[" : "(", lo, ", ", hi,
                                                   hi_end == End::kClosed ? "]" : ")", ", got ", v));
  }
  return absl::OkStatus();
}

absl::Status CheckUnitInterval(const std::string& name, double v) {
  return CheckInterval(name, v, End::kOpen, 0, 1, End::kClosed);
}

// Validates the fields of `c` that are present (all of them for the filled-in base settings).
absl::Status ValidateClient(const std::string& prefix, const proto::ClientTraining& c) {
  if (c.has_epochs()) RETURN_IF_ERROR(CheckInt(prefix + ".epochs", c.epochs(), 1));
  if (c.has_batch_size()) RETURN_IF_ERROR(CheckInt(prefix + ".batch_size", c.batch_size(), 1));
  if (c.has_lr()) RETURN_IF_ERROR(CheckPositive(prefix + ".lr", c.lr()));
  if (c.has_momentum()) {
    RETURN_IF_ERROR(CheckInterval(prefix + ".momentum", c.momentum(), End::kClosed, 0, 1, End::kOpen));
  }
  if (c.has_weight_decay()) {
    RETURN_IF_ERROR(CheckNonNegative(prefix + ".weight_decay", c.weight_decay()));
  }
  if (c.has_max_samples()) RETURN_IF_ERROR(CheckInt(prefix + ".max_samples", c.max_samples(), 0));
  if (c.has_uplink()) {
    absl::StatusOr<compression::ChainSpec> chain = compression::ParseChain(c.uplink());
    if (!chain.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(prefix, ".uplink: ", chain.status().message()));
    }
  }
  if (c.has_downlink()) {
    absl::StatusOr<compression::ChainSpec> chain = compression::ParseChain(c.downlink());
    if (!chain.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat(prefix, ".downlink: ", chain.status().message()));
    }
    if (chain->error_feedback) {
      return absl::InvalidArgumentError(absl::StrCat(
          prefix, ".downlink: drop \"ef\" (the server always keeps the downlink residual)"));
    }
  }
  if (c.has_ef_max_staleness()) {
    RETURN_IF_ERROR(CheckInt(prefix + ".ef_max_staleness", c.ef_max_staleness(), 0));
  }
  if (c.has_proximal_mu()) RETURN_IF_ERROR(CheckNonNegative(prefix + ".proximal_mu", c.proximal_mu()));
  if (c.has_restricted_softmax_alpha()) {
    RETURN_IF_ERROR(CheckInterval(prefix + ".restricted_softmax_alpha",
                                  c.restricted_softmax_alpha(), End::kClosed, 0, 1, End::kClosed));
  }
  if (c.has_ntd_beta()) RETURN_IF_ERROR(CheckNonNegative(prefix + ".ntd_beta", c.ntd_beta()));
  if (c.has_ntd_tau()) RETURN_IF_ERROR(CheckPositive(prefix + ".ntd_tau", c.ntd_tau()));
  if (c.has_min_battery_percent() && !(c.min_battery_percent() >= 0 && c.min_battery_percent() <= 100)) {
    return absl::InvalidArgumentError(absl::StrCat(prefix, ".min_battery_percent must be in 0..100, got ",
                                                   c.min_battery_percent()));
  }
  if (c.has_max_temperature_c()) {
    RETURN_IF_ERROR(CheckNonNegative(prefix + ".max_temperature_c", c.max_temperature_c()));
  }
  if (c.has_max_load_per_core()) {
    RETURN_IF_ERROR(CheckNonNegative(prefix + ".max_load_per_core", c.max_load_per_core()));
  }
  return absl::OkStatus();
}

// Whether `s` is well-formed UTF-8 (no overlongs, surrogates or code points past U+10FFFF).
bool IsValidUtf8(absl::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    int extra;
    uint32_t cp;
    if (c < 0x80) {
      ++i;
      continue;
    } else if (c >= 0xc2 && c <= 0xdf) {
      extra = 1;
      cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
      extra = 2;
      cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
      extra = 3;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + extra >= s.size()) return false;  // truncated sequence
    for (int k = 1; k <= extra; ++k) {
      const unsigned char cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3f);
    }
    if ((extra == 2 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
        (extra == 3 && (cp < 0x10000 || cp > 0x10ffff))) {
      return false;
    }
    i += extra + 1;
  }
  return true;
}

// The dotted path of the first string field under `msg` that is not valid UTF-8, or "".
// (protobuf's JSON parser lets such strings through, and they would not survive config.json.)
std::string FindInvalidUtf8(const pb::Message& msg, const std::string& prefix) {
  const pb::Reflection* r = msg.GetReflection();
  std::vector<const pb::FieldDescriptor*> fields;
  r->ListFields(msg, &fields);
  for (const pb::FieldDescriptor* f : fields) {
    const std::string name = prefix.empty() ? f->name() : absl::StrCat(prefix, ".", f->name());
    if (f->cpp_type() == pb::FieldDescriptor::CPPTYPE_STRING) {
      if (f->is_repeated()) {
        for (int i = 0; i < r->FieldSize(msg, f); ++i) {
          if (!IsValidUtf8(r->GetRepeatedString(msg, f, i))) return absl::StrCat(name, "[", i, "]");
        }
      } else if (!IsValidUtf8(r->GetString(msg, f))) {
        return name;
      }
    } else if (f->cpp_type() == pb::FieldDescriptor::CPPTYPE_MESSAGE) {
      if (f->is_repeated()) {
        for (int i = 0; i < r->FieldSize(msg, f); ++i) {
          std::string bad =
              FindInvalidUtf8(r->GetRepeatedMessage(msg, f, i), absl::StrCat(name, "[", i, "]"));
          if (!bad.empty()) return bad;
        }
      } else {
        std::string bad = FindInvalidUtf8(r->GetMessage(msg, f), name);
        if (!bad.empty()) return bad;
      }
    }
  }
  return "";
}

}  // namespace

absl::Status ValidateConfig(const proto::ExperimentConfig& config) {
  if (std::string bad = FindInvalidUtf8(config, ""); !bad.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(bad, " is not valid UTF-8"));
  }
  RETURN_IF_ERROR(CheckInt("rounds", config.rounds(), 1));
  if (config.model().empty()) return absl::InvalidArgumentError("model must not be empty");
  const proto::Sampling& s = config.sampling();
  RETURN_IF_ERROR(CheckUnitInterval("sampling.fraction", s.fraction()));
  RETURN_IF_ERROR(CheckInt("sampling.min_clients", s.min_clients(), 1));
  RETURN_IF_ERROR(CheckNonNegative("sampling.over_selection", s.over_selection()));
  RETURN_IF_ERROR(CheckPositive("sampling.wait_for_clients_seconds", s.wait_for_clients_seconds()));
  proto::ClientTraining client = config.client();
  FillClientDefaults(&client);  // so that unset fields are checked at their effective value
  RETURN_IF_ERROR(ValidateClient("client", client));
  RETURN_IF_ERROR(CheckPositive("deadline_seconds", config.deadline_seconds()));
  RETURN_IF_ERROR(CheckUnitInterval("quorum", config.quorum()));
  RETURN_IF_ERROR(CheckInt("max_round_attempts", config.max_round_attempts(), 1));
  const proto::Evaluation& e = config.evaluation();
  RETURN_IF_ERROR(CheckInt("evaluation.every", e.every(), 1));
  RETURN_IF_ERROR(CheckInt("evaluation.max_samples", e.max_samples(), 0));
  RETURN_IF_ERROR(CheckInt("evaluation.batch_size", e.batch_size(), 1));
  RETURN_IF_ERROR(CheckInt("evaluation.threads", e.threads(), 1));
  if (config.data_dir().empty()) return absl::InvalidArgumentError("data_dir must not be empty");
  for (const std::string& arch : config.eligibility().architectures()) {
    if (arch.empty() || arch.size() > 64) {
      return absl::InvalidArgumentError(
          "eligibility.architectures entries must be 1..64 characters (e.g. \"aarch64\")");
    }
  }
  if (config.eligibility().accelerator().size() > 64) {
    return absl::InvalidArgumentError("eligibility.accelerator must be at most 64 characters");
  }
  const proto::UpdateBounds& bounds = config.update_bounds();
  if (bounds.has_max_l2_norm()) {
    RETURN_IF_ERROR(CheckPositive("update_bounds.max_l2_norm", bounds.max_l2_norm()));
  }
  if (bounds.has_on_violation() && bounds.on_violation() != "reject" &&
      bounds.on_violation() != "clip") {
    return absl::InvalidArgumentError(
        absl::StrCat("update_bounds.on_violation must be \"reject\" or \"clip\", got \"",
                     absl::CEscape(bounds.on_violation().substr(0, 64)), "\""));
  }
  for (int i = 0; i < config.schedule_size(); ++i) {
    const proto::ScheduleEntry& entry = config.schedule(i);
    const std::string prefix = absl::StrCat("schedule[", i, "]");
    RETURN_IF_ERROR(CheckInt(prefix + ".from_round", entry.from_round(), 1));
    RETURN_IF_ERROR(ValidateClient(prefix + ".client", entry.client()));
    if (entry.has_deadline_seconds()) {
      RETURN_IF_ERROR(CheckPositive(prefix + ".deadline_seconds", entry.deadline_seconds()));
    }
  }
  return ValidateAggregation(config);
}

namespace {

// Schedule entries in force for `round`, in application order (by from_round; among equal
// from_round, later entries win).
std::vector<const proto::ScheduleEntry*> EntriesInForce(const proto::ExperimentConfig& config,
                                                        int64_t round) {
  std::vector<const proto::ScheduleEntry*> entries;
  for (const proto::ScheduleEntry& entry : config.schedule()) {
    if (entry.from_round() <= round) entries.push_back(&entry);
  }
  std::stable_sort(entries.begin(), entries.end(),
                   [](const proto::ScheduleEntry* a, const proto::ScheduleEntry* b) {
                     return a->from_round() < b->from_round();
                   });
  return entries;
}

}  // namespace

namespace {
// The client settings in force for `round`: defaults, then the base settings, then the schedule.
proto::ClientTraining ResolveClient(const proto::ExperimentConfig& config, int64_t round) {
  proto::ClientTraining resolved;
  FillClientDefaults(&resolved);
  // MergeFrom copies exactly the fields that are present in the source (proto3 `optional`).
  resolved.MergeFrom(config.client());
  for (const proto::ScheduleEntry* entry : EntriesInForce(config, round)) {
    resolved.MergeFrom(entry->client());
  }
  return resolved;
}

std::string CanonicalChain(const std::string& text) {
  absl::StatusOr<compression::ChainSpec> chain = compression::ParseChain(text);
  return chain.ok() ? chain->ToString() : text;
}
}  // namespace

proto::TaskConfig ResolveTaskConfig(const proto::ExperimentConfig& config, int64_t round) {
  const proto::ClientTraining resolved = ResolveClient(config, round);
  proto::TaskConfig task;
  task.set_epochs(resolved.epochs());
  task.set_batch_size(resolved.batch_size());
  task.set_lr(resolved.lr());
  task.set_momentum(resolved.momentum());
  task.set_weight_decay(resolved.weight_decay());
  task.set_max_samples(resolved.max_samples());
  // Canonical chain text, so that clients and the server compare like with like.
  task.set_uplink(CanonicalChain(resolved.uplink()));
  task.set_ef_max_staleness(resolved.ef_max_staleness());
  task.set_proximal_mu(resolved.proximal_mu());
  if (const proto::ServerOptimizer& o = config.aggregation().server_optimizer();
      o.name() == "feddyn") {
    task.set_feddyn_alpha(o.alpha());
  }
  if (resolved.has_restricted_softmax_alpha()) {
    task.set_restricted_softmax_alpha(resolved.restricted_softmax_alpha());
  }
  task.set_freeze_head(resolved.freeze_head());
  if (resolved.ntd_beta() > 0) {
    task.set_ntd_beta(resolved.ntd_beta());
    task.set_ntd_tau(resolved.ntd_tau());
  }
  task.set_min_battery_percent(resolved.min_battery_percent());
  task.set_max_temperature_c(resolved.max_temperature_c());
  task.set_require_charging(resolved.require_charging());
  task.set_max_load_per_core(resolved.max_load_per_core());
  task.set_seed(config.has_seed() ? config.seed() : kDefaultSeed);
  return task;
}

std::string ResolveDownlink(const proto::ExperimentConfig& config, int64_t round) {
  return CanonicalChain(ResolveClient(config, round).downlink());
}

double ResolveDeadlineSeconds(const proto::ExperimentConfig& config, int64_t round) {
  double deadline =
      config.has_deadline_seconds() ? config.deadline_seconds() : kDefaultDeadlineSeconds;
  for (const proto::ScheduleEntry* entry : EntriesInForce(config, round)) {
    if (entry->has_deadline_seconds()) deadline = entry->deadline_seconds();
  }
  return deadline;
}

}  // namespace edgefl::server
