// fl-client: the edgefl device runtime. Wiring only: flags -> options -> DeviceRuntime::Run.
#include <cstdio>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "client/client_flags.h"
#include "client/device_runtime.h"
#include "common/flags.h"
#include "common/memory.h"

namespace edgefl::client {
namespace {

constexpr char kProgram[] = "fl-client";

// The one place a status becomes an exit code: 0, or `code` after "fl-client: <message>".
int ExitCode(const absl::Status& s, int code) {
  if (s.ok()) return 0;
  std::fprintf(stderr, "%s: %s\n", kProgram, std::string(s.message()).c_str());
  return code;
}

int Main(int argc, char** argv) {
  ClientFlags f;
  FlagSet flags(kProgram, kClientDescription);
  RegisterClientFlags(flags, &f);
  flags.ParseOrExit(argc, argv);  // --help: exit 0; a bad flag: one line, exit 2
  if (!flags.positional().empty()) {
    return ExitCode(absl::InvalidArgumentError(
                        absl::StrCat("unexpected argument '", flags.positional()[0], "'")),
                    2);
  }
  absl::StatusOr<std::unique_ptr<DeviceRuntime>> runtime = DeviceRuntimeFromFlags(f);
  if (!runtime.ok()) return ExitCode(runtime.status(), 2);
  // And the pages loading the shard and setting up the channel touched, before the first download.
  ReleaseIdleLibraryPages();
  const absl::Status s = (*runtime)->Run();
  if ((*runtime)->finished()) {
    std::printf("fl-client: the federation is finished; took part in %d rounds.\n",
                (*runtime)->rounds_done());
  }
  return ExitCode(s, 1);
}

}  // namespace
}  // namespace edgefl::client

int main(int argc, char** argv) { return edgefl::client::Main(argc, argv); }
