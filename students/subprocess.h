// Running a helper program (a cross-compiler, `size`, an emulator) with a bounded wait. Torch-free.
#ifndef EDGEFL_STUDENTS_SUBPROCESS_H_
#define EDGEFL_STUDENTS_SUBPROCESS_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace edgefl::students {

struct CommandResult {
  int exit_code = -1;      // the program's exit code, 128 + signal if it died of a signal
  bool timed_out = false;  // killed (SIGKILL) after the timeout; exit_code is then 128 + 9
  std::string output;      // stdout and stderr interleaved, at most 4 MiB (the rest is dropped)
};

// Runs argv[0] (looked up in PATH when it has no '/') with stdin from /dev/null, collecting its
// output, for at most `timeout_seconds`. NOT_FOUND if the program cannot be found or started;
// a program that runs and fails is an OK result with its exit code. Thread-compatible.
absl::StatusOr<CommandResult> RunCommand(const std::vector<std::string>& argv,
                                         double timeout_seconds);

// The full path of `program` found in PATH (or `program` itself if it contains '/' and is
// executable); empty when not found.
std::string FindProgram(const std::string& program);

}  // namespace edgefl::students

#endif  // EDGEFL_STUDENTS_SUBPROCESS_H_
