#include "compression/chain.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace edgefl::compression {
namespace {

absl::Status StageError(absl::string_view stage, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat("codec chain stage '", stage, "': ", why));
}

bool AllDigits(absl::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
  }
  return true;
}

// Parses a decimal in (0, 1]. Only [0-9.eE+-] are accepted (no "nan", "inf", hex, spaces).
bool ParseFraction(absl::string_view s, double* out) {
  if (s.empty() || s.size() > 40) return false;
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || c == '.' || c == 'e' || c == 'E' || c == '+' || c == '-')) {
      return false;
    }
  }
  double v = 0;
  if (!absl::SimpleAtod(s, &v)) return false;
  if (!std::isfinite(v) || !(v > 0.0) || v > 1.0) return false;
  *out = v;
  return true;
}

// Shortest decimal that parses back to exactly `v`.
std::string FormatDouble(double v) {
  char buf[40];
  for (int precision = 1; precision <= 17; ++precision) {
    std::snprintf(buf, sizeof(buf), "%.*g", precision, v);
    if (std::strtod(buf, nullptr) == v) break;
  }
  return buf;
}

const char* QuantizerName(Quantizer q) {
  switch (q) {
    case Quantizer::kFp32:
      return "fp32";
    case Quantizer::kFp16:
      return "fp16";
    case Quantizer::kInt8:
      return "int8";
    case Quantizer::kQ4:
      return "q4";
  }
  return "?";
}

absl::Status ParseQuantizer(absl::string_view stage, Quantizer q,
                            const std::vector<absl::string_view>& options, ChainSpec* spec) {
  spec->quantizer = q;
  bool saw_block = false;
  for (absl::string_view opt : options) {
    if (opt == "sr") {
      if (q == Quantizer::kFp32) return StageError(stage, "fp32 takes no options");
      if (spec->stochastic) return StageError(stage, "option 'sr' given twice");
      spec->stochastic = true;
    } else if (!opt.empty() && opt[0] == 'b') {
      if (q != Quantizer::kInt8 && q != Quantizer::kQ4) {
        return StageError(stage, "only int8 and q4 take a block size");
      }
      if (saw_block) return StageError(stage, "block size given twice");
      absl::string_view digits = opt.substr(1);
      uint64_t b = 0;
      if (!AllDigits(digits) || digits.size() > 9 || !absl::SimpleAtoi(digits, &b) || b < 1 ||
          b > kMaxBlockSize) {
        return StageError(stage, absl::StrCat("block size must be b<1..", kMaxBlockSize, ">"));
      }
      spec->block_size = static_cast<uint32_t>(b);
      saw_block = true;
    } else {
      return StageError(stage, absl::StrCat("unknown option '", opt, "'"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

uint64_t KeptCount(double fraction, uint64_t n) {
  if (n == 0) return 0;
  if (!(fraction > 0.0)) return 1;
  if (fraction >= 1.0) return n;
  double k = std::round(fraction * static_cast<double>(n));
  if (k < 1.0) return 1;
  if (k >= static_cast<double>(n)) return n;
  return static_cast<uint64_t>(k);
}

uint64_t GlobalKeptCount(const ChainSpec& spec, uint64_t total) {
  if (spec.sparsifier != Sparsifier::kTopKGlobal) return 0;
  if (spec.global_k != 0) return spec.global_k < total ? spec.global_k : total;
  return KeptCount(spec.fraction, total);
}

int QuantizerBits(Quantizer q) {
  switch (q) {
    case Quantizer::kFp32:
      return 32;
    case Quantizer::kFp16:
      return 16;
    case Quantizer::kInt8:
      return 8;
    case Quantizer::kQ4:
      return 4;
  }
  return 0;
}

std::string ChainSpec::ToString() const {
  std::vector<std::string> stages;
  switch (sparsifier) {
    case Sparsifier::kNone:
      break;
    case Sparsifier::kTopK:
      stages.push_back(absl::StrCat("topk:", FormatDouble(fraction)));
      break;
    case Sparsifier::kRandK:
      stages.push_back(absl::StrCat("randk:", FormatDouble(fraction)));
      break;
    case Sparsifier::kTopKGlobal:
      if (global_k != 0) {
        stages.push_back(absl::StrCat("topk_global:", global_k));
      } else {
        std::string f = FormatDouble(fraction);
        // Keep a fraction distinguishable from an integer k ("1" would mean k = 1).
        if (f.find_first_of(".eE") == std::string::npos) f += ".0";
        stages.push_back(absl::StrCat("topk_global:", f));
      }
      break;
  }
  if (quantizer != Quantizer::kFp32) {
    std::string q = QuantizerName(quantizer);
    if (block_size != 0) absl::StrAppend(&q, ":b", block_size);
    if (stochastic) absl::StrAppend(&q, ":sr");
    stages.push_back(std::move(q));
  }
  if (error_feedback) stages.push_back("ef");
  if (stages.empty()) return "dense";
  return absl::StrJoin(stages, "|");
}

absl::StatusOr<ChainSpec> ParseChain(absl::string_view text) {
  ChainSpec spec;
  absl::string_view whole = absl::StripAsciiWhitespace(text);
  if (whole.empty()) return absl::InvalidArgumentError("codec chain is empty");
  if (whole.size() > 256) return absl::InvalidArgumentError("codec chain longer than 256 bytes");
  if (whole == "dense") return spec;

  bool saw_sparsifier = false, saw_quantizer = false, saw_ef = false;
  for (absl::string_view raw : absl::StrSplit(whole, '|')) {
    absl::string_view stage = absl::StripAsciiWhitespace(raw);
    if (stage.empty()) return StageError(raw, "empty stage");
    std::vector<absl::string_view> parts = absl::StrSplit(stage, ':');
    absl::string_view head = parts[0];
    std::vector<absl::string_view> options(parts.begin() + 1, parts.end());

    if (head == "topk" || head == "randk" || head == "topk_global") {
      if (saw_sparsifier) return StageError(stage, "more than one sparsifier");
      saw_sparsifier = true;
      if (options.size() != 1) {
        return StageError(stage, absl::StrCat(head, " takes exactly one argument"));
      }
      absl::string_view arg = options[0];
      if (head == "topk_global") {
        spec.sparsifier = Sparsifier::kTopKGlobal;
        if (AllDigits(arg)) {
          uint64_t k = 0;
          if (arg.size() > 19 || !absl::SimpleAtoi(arg, &k) || k == 0) {
            return StageError(stage, "k must be an integer >= 1");
          }
          spec.global_k = k;
          continue;
        }
      } else {
        spec.sparsifier = head == "topk" ? Sparsifier::kTopK : Sparsifier::kRandK;
      }
      if (!ParseFraction(arg, &spec.fraction)) {
        return StageError(stage, "fraction must be a decimal in (0, 1]");
      }
    } else if (head == "fp32" || head == "fp16" || head == "int8" || head == "q4") {
      if (saw_quantizer) return StageError(stage, "more than one quantizer");
      saw_quantizer = true;
      Quantizer q = head == "fp32"   ? Quantizer::kFp32
                    : head == "fp16" ? Quantizer::kFp16
                    : head == "int8" ? Quantizer::kInt8
                                     : Quantizer::kQ4;
      absl::Status s = ParseQuantizer(stage, q, options, &spec);
      if (!s.ok()) return s;
    } else if (head == "ef") {
      if (!options.empty()) return StageError(stage, "ef takes no options");
      if (saw_ef) return StageError(stage, "ef given twice");
      saw_ef = true;
      spec.error_feedback = true;
    } else if (head == "dense") {
      return StageError(stage, "'dense' must stand alone");
    } else {
      return StageError(stage, "unknown stage");
    }
  }
  return spec;
}

absl::Status ValidateChain(const ChainSpec& spec) {
  const std::string name = spec.ToString();
  switch (spec.sparsifier) {
    case Sparsifier::kNone:
      if (spec.fraction != 0.0 || spec.global_k != 0) {
        return StageError(name, "fraction/k set without a sparsifier");
      }
      break;
    case Sparsifier::kTopK:
    case Sparsifier::kRandK:
      if (spec.global_k != 0) return StageError(name, "k is for topk_global only");
      [[fallthrough]];
    case Sparsifier::kTopKGlobal:
      if (spec.global_k == 0 &&
          !(std::isfinite(spec.fraction) && spec.fraction > 0.0 && spec.fraction <= 1.0)) {
        return StageError(name, "fraction must be in (0, 1]");
      }
      if (spec.global_k != 0 && spec.fraction != 0.0) {
        return StageError(name, "set either k or fraction, not both");
      }
      break;
    default:
      return StageError(name, "unknown sparsifier");
  }
  switch (spec.quantizer) {
    case Quantizer::kFp32:
      if (spec.stochastic) return StageError(name, "fp32 has no stochastic rounding");
      [[fallthrough]];
    case Quantizer::kFp16:
      if (spec.block_size != 0) return StageError(name, "only int8 and q4 take a block size");
      break;
    case Quantizer::kInt8:
    case Quantizer::kQ4:
      if (spec.block_size > kMaxBlockSize) return StageError(name, "block size too large");
      break;
    default:
      return StageError(name, "unknown quantizer");
  }
  return absl::OkStatus();
}

}  // namespace edgefl::compression
