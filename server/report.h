// runs/R/report.html: a self-contained page (no scripts, no external files) with inline-SVG plots
// of a run's metrics.jsonl — accuracy and loss, bytes up/down, round and evaluation time, clients
// per round, rejected updates by reason, and dp_epsilon / student_local_accuracy when the lines
// carry them — and the resolved config.json. Torch-free.
#ifndef EDGEFL_SERVER_REPORT_H_
#define EDGEFL_SERVER_REPORT_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace edgefl::server {

inline constexpr char kReportFile[] = "report.html";

// The page for the run in `run_dir` (finished or running: the lines written so far).
// NOT_FOUND when run_dir has no metrics.jsonl; lines that do not parse are skipped and counted on
// the page.
absl::StatusOr<std::string> RenderReport(const std::string& run_dir);

// Writes run_dir/report.html atomically. Errors of RenderReport or of writing.
absl::Status WriteReport(const std::string& run_dir);

// `fl-server report RUN_DIR`: writes the report and prints its path; exit 0, or 2 with one line.
int RunReportCommand(int argc, char** argv);

}  // namespace edgefl::server

#endif  // EDGEFL_SERVER_REPORT_H_
