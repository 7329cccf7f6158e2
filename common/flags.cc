#include "common/flags.h"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <string_view>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"

namespace edgefl {
namespace {

absl::Status BadValue(const std::string& name, const std::string& value, const char* expected) {
  return absl::InvalidArgumentError(
      absl::StrCat("invalid value '", value, "' for --", name, ": expected ", expected));
}

// absl::SimpleAtoi accepts surrounding whitespace; a flag value should not have any.
bool HasSpace(const std::string& s) {
  return !s.empty() && (std::isspace(static_cast<unsigned char>(s.front())) ||
                        std::isspace(static_cast<unsigned char>(s.back())));
}

template <typename T>
std::function<absl::Status(const std::string&)> IntParser(const std::string& name, T* value,
                                                          const char* expected) {
  return [name, value, expected](const std::string& text) -> absl::Status {
    T parsed;
    if (HasSpace(text) || !absl::SimpleAtoi(text, &parsed)) return BadValue(name, text, expected);
    *value = parsed;
    return absl::OkStatus();
  };
}

std::string Quote(const std::string& s) { return absl::StrCat("\"", s, "\""); }

}  // namespace

FlagSet::FlagSet(std::string program, std::string description)
    : program_(std::move(program)), description_(std::move(description)) {}

void FlagSet::Add(Flag flag) {
  // Registering a name twice is a programming error; the later registration wins so the tool
  // still behaves predictably.
  if (Flag* existing = Find(flag.name)) {
    *existing = std::move(flag);
    return;
  }
  flags_.push_back(std::move(flag));
}

FlagSet::Flag* FlagSet::Find(const std::string& name) {
  for (Flag& f : flags_) {
    if (f.name == name) return &f;
  }
  return nullptr;
}

const FlagSet::Flag* FlagSet::Find(const std::string& name) const {
  for (const Flag& f : flags_) {
    if (f.name == name) return &f;
  }
  return nullptr;
}

void FlagSet::String(const std::string& name, std::string* value, const std::string& help) {
  Flag f;
  f.name = name;
  f.help = help;
  f.default_text = Quote(*value);
  f.parse = [value](const std::string& text) {
    *value = text;
    return absl::OkStatus();
  };
  Add(std::move(f));
}

void FlagSet::Int(const std::string& name, int* value, const std::string& help) {
  Flag f;
  f.name = name;
  f.help = help;
  f.default_text = absl::StrCat(*value);
  f.parse = IntParser<int>(name, value, "an integer");
  Add(std::move(f));
}

void FlagSet::Int64(const std::string& name, int64_t* value, const std::string& help) {
  Flag f;
  f.name = name;
  f.help = help;
  f.default_text = absl::StrCat(*value);
  f.parse = IntParser<int64_t>(name, value, "an integer");
  Add(std::move(f));
}

void FlagSet::Uint64(const std::string& name, uint64_t* value, const std::string& help) {
  Flag f;
  f.name = name;
  f.help = help;
  f.default_text = absl::StrCat(*value);
  f.parse = [name, value](const std::string& text) -> absl::Status {
    uint64_t parsed;
    // SimpleAtoi would wrap "-1"; reject any sign explicitly.
    if (text.empty() || text[0] == '-' || text[0] == '+' || HasSpace(text) ||
        !absl::SimpleAtoi(text, &parsed)) {
      return BadValue(name, text, "a non-negative integer");
    }
    *value = parsed;
    return absl::OkStatus();
  };
  Add(std::move(f));
}

void FlagSet::Double(const std::string& name, double* value, const std::string& help) {
  Flag f;
  f.name = name;
  f.help = help;
  f.default_text = absl::StrFormat("%g", *value);
  f.parse = [name, value](const std::string& text) -> absl::Status {
    double parsed;
    if (HasSpace(text) || !absl::SimpleAtod(text, &parsed)) {
      return BadValue(name, text, "a number");
    }
    *value = parsed;
    return absl::OkStatus();
  };
  Add(std::move(f));
}

void FlagSet::Bool(const std::string& name, bool* value, const std::string& help) {
  Flag f;
  f.name = name;
  f.help = help;
  f.is_bool = true;
  f.default_text = *value ? "true" : "false";
  f.parse = [name, value](const std::string& text) -> absl::Status {
    if (text == "true" || text == "1" || text == "yes") {
      *value = true;
    } else if (text == "false" || text == "0" || text == "no") {
      *value = false;
    } else {
      return BadValue(name, text, "true or false");
    }
    return absl::OkStatus();
  };
  Add(std::move(f));
}

void FlagSet::Repeated(const std::string& name, std::vector<std::string>* values,
                       const std::string& help) {
  Flag f;
  f.name = name;
  f.help = absl::StrCat(help, " (repeatable)");
  if (values->empty()) {
    f.default_text = "none";
  } else {
    std::vector<std::string> quoted;
    for (const std::string& v : *values) quoted.push_back(Quote(v));
    f.default_text = absl::StrJoin(quoted, ", ");
  }
  f.parse = [values](const std::string& text) {
    values->push_back(text);
    return absl::OkStatus();
  };
  Add(std::move(f));
}

absl::Status FlagSet::Parse(int argc, char** argv) {
  help_requested_ = false;
  bool flags_done = false;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i] == nullptr ? "" : argv[i];
    if (flags_done || arg.size() < 2 || arg[0] != '-' || arg == "-") {
      positional_.push_back(arg);
      continue;
    }
    if (arg == "--") {
      flags_done = true;
      continue;
    }
    if (arg == "-h" || arg == "--help" || arg == "-help") {
      help_requested_ = true;
      continue;
    }
    if (arg[1] != '-') {
      return absl::InvalidArgumentError(
          absl::StrCat("unknown flag ", arg, " (flags are written --name)"));
    }
    std::string body = arg.substr(2);
    std::string name = body;
    std::string value;
    bool has_value = false;
    if (size_t eq = body.find('='); eq != std::string::npos) {
      name = body.substr(0, eq);
      value = body.substr(eq + 1);
      has_value = true;
    }
    if (name.empty()) return absl::InvalidArgumentError(absl::StrCat("malformed flag ", arg));
    // --client-index and --client_index are the same flag.
    const std::string shown = name;
    std::replace(name.begin(), name.end(), '-', '_');
    Flag* flag = Find(name);
    if (flag == nullptr && !has_value && name.size() > 2 && name.compare(0, 2, "no") == 0) {
      Flag* negated = Find(name.substr(2));
      if (negated != nullptr && negated->is_bool) {
        RETURN_IF_ERROR(negated->parse("false"));
        negated->set = true;
        continue;
      }
    }
    if (flag == nullptr) return absl::InvalidArgumentError(absl::StrCat("unknown flag --", shown));
    if (!has_value) {
      if (flag->is_bool) {
        value = "true";
      } else if (i + 1 < argc && argv[i + 1] != nullptr &&
                 std::string_view(argv[i + 1]).substr(0, 2) != "--") {
        value = argv[++i];
      } else {
        return absl::InvalidArgumentError(absl::StrCat("missing value for --", name));
      }
    }
    RETURN_IF_ERROR(flag->parse(value));
    flag->set = true;
  }
  return absl::OkStatus();
}

void FlagSet::ParseOrExit(int argc, char** argv) {
  absl::Status status = Parse(argc, argv);
  if (!status.ok()) {
    std::fprintf(stderr, "%s: %s\nTry --help.\n", program_.c_str(),
                 std::string(status.message()).c_str());
    std::fflush(stderr);
    std::exit(2);
  }
  if (help_requested_) {
    std::fputs(Usage().c_str(), stdout);
    std::fflush(stdout);
    std::exit(0);
  }
}

bool FlagSet::IsSet(const std::string& name) const {
  const Flag* f = Find(name);
  return f != nullptr && f->set;
}

std::string FlagSet::Usage() const {
  std::string out = absl::StrCat("Usage: ", program_, " [flags]\n");
  if (!description_.empty()) absl::StrAppend(&out, description_, "\n");
  absl::StrAppend(&out,
                  "\nFlags (--name=value or --name value; '-' and '_' in names are the same):\n");
  std::vector<std::string> lefts;
  size_t width = 0;
  for (const Flag& f : flags_) {
    std::string left =
        f.is_bool ? absl::StrCat("  --[no]", f.name) : absl::StrCat("  --", f.name, "=VALUE");
    width = std::max(width, left.size());
    lefts.push_back(std::move(left));
  }
  constexpr char kHelpLeft[] = "  --help";
  width = std::max(width, sizeof(kHelpLeft) - 1);
  for (size_t i = 0; i < flags_.size(); ++i) {
    absl::StrAppend(&out, absl::StrFormat("%-*s  %s (default: %s)\n", static_cast<int>(width),
                                          lefts[i], flags_[i].help, flags_[i].default_text));
  }
  absl::StrAppend(&out, absl::StrFormat("%-*s  %s\n", static_cast<int>(width), kHelpLeft,
                                        "print this help and exit"));
  return out;
}

void ExitUsageError(const std::string& program, const std::string& message) {
  std::fprintf(stderr, "%s: %s\n", program.c_str(), message.c_str());
  std::fflush(stderr);
  std::exit(2);
}

}  // namespace edgefl
