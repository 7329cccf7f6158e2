// A small declarative command-line parser with the behaviour edgefl's tools promise: `--help`
// lists every flag with its default; any error is one line on stderr and exit code 2.
// (absl::ParseCommandLine exits with code 1 and cannot be told otherwise, hence this.)
#ifndef EDGEFL_COMMON_FLAGS_H_
#define EDGEFL_COMMON_FLAGS_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace edgefl {

// Usage:
//   FlagSet flags("fl-server", "Coordinates federated rounds.");
//   int rounds = 10; flags.Int("rounds", &rounds, "number of rounds");
//   flags.ParseOrExit(argc, argv);
// Flags are written `--name=value` or `--name value`; booleans also as `--name` / `--noname`.
// A flag registered with Repeated() may appear many times; each value is appended.
// Positional arguments (not starting with "--") are collected in positional().
// Not thread-safe; pointers must outlive the FlagSet.
class FlagSet {
 public:
  FlagSet(std::string program, std::string description);

  void String(const std::string& name, std::string* value, const std::string& help);
  void Int(const std::string& name, int* value, const std::string& help);
  void Int64(const std::string& name, int64_t* value, const std::string& help);
  void Uint64(const std::string& name, uint64_t* value, const std::string& help);
  void Double(const std::string& name, double* value, const std::string& help);
  void Bool(const std::string& name, bool* value, const std::string& help);
  void Repeated(const std::string& name, std::vector<std::string>* values, const std::string& help);

  // Parses argv[1..]. INVALID_ARGUMENT names the offending flag or value. Sets help_requested()
  // on --help / -h (without error).
  absl::Status Parse(int argc, char** argv);
  // Parse, then: on --help print Usage() to stdout and exit(0); on error print
  // "<program>: <message>" and "Try --help." to stderr and exit(2).
  void ParseOrExit(int argc, char** argv);

  // Whether the flag appeared on the command line.
  bool IsSet(const std::string& name) const;
  bool help_requested() const { return help_requested_; }
  const std::vector<std::string>& positional() const { return positional_; }
  std::string Usage() const;

 private:
  struct Flag {
    std::string name, help, default_text;
    bool is_bool = false;
    bool set = false;
    std::function<absl::Status(const std::string&)> parse;
  };
  Flag* Find(const std::string& name);
  const Flag* Find(const std::string& name) const;
  void Add(Flag flag);

  std::string program_, description_;
  std::vector<Flag> flags_;
  std::vector<std::string> positional_;
  bool help_requested_ = false;
};

// Prints "<program>: <message>" to stderr and exits with code 2. For usage and input errors.
[[noreturn]] void ExitUsageError(const std::string& program, const std::string& message);

}  // namespace edgefl

#endif  // EDGEFL_COMMON_FLAGS_H_
