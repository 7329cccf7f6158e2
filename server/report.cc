#include "server/report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "common/file_util.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "server/config.h"
#include "server/run_store.h"

namespace edgefl::server {
namespace {

struct Series {
  std::string name;
  std::string color;
  std::vector<std::pair<double, double>> points;  // (round, value)
};

std::string Escape(const std::string& s) {
  return absl::StrReplaceAll(s, {{"&", "&amp;"}, {"<", "&lt;"}, {">", "&gt;"}, {"\"", "&quot;"}});
}

// A compact tick label: 0.8123 -> "0.8123", 1305188 -> "1.31M"; more digits when the axis spans
// a narrow range of large values (66.51M..66.54M stay apart).
std::string Label(double v, double span = 0) {
  const double a = std::fabs(v);
  int digits = 4;
  if (span > 0 && a > 0) {
    digits = std::clamp(static_cast<int>(std::ceil(std::log10(a / span))) + 2, 4, 7);
  }
  if (a >= 1e9) return absl::StrFormat("%.*gG", digits, v / 1e9);
  if (a >= 1e6) return absl::StrFormat("%.*gM", digits, v / 1e6);
  if (a >= 1e4) return absl::StrFormat("%.*gk", digits, v / 1e3);
  return absl::StrFormat("%.*g", digits, v);
}

// One line plot: axes with the data's own round and value ranges as labels.
std::string Plot(const std::string& title, const std::string& y_unit, const std::vector<Series>& series) {
  constexpr double kW = 480, kH = 240, kLeft = 84, kRight = 12, kTop = 28, kBottom = 40;
  double x0 = 1e300, x1 = -1e300, y0 = 1e300, y1 = -1e300;
  for (const Series& s : series) {
    for (const auto& [x, y] : s.points) {
      x0 = std::min(x0, x), x1 = std::max(x1, x), y0 = std::min(y0, y), y1 = std::max(y1, y);
    }
  }
  std::string svg = absl::StrFormat(
      "<svg class=\"plot\" xmlns=\"http://www.w3.org/2000/svg\" width=\"%g\" height=\"%g\" "
      "viewBox=\"0 0 %g %g\"><rect width=\"100%%\" height=\"100%%\" fill=\"#fff\"/>"
      "<text x=\"%g\" y=\"18\" font-size=\"14\" font-weight=\"bold\">%s</text>",
      kW, kH, kW, kH, kLeft, Escape(title));
  if (x0 > x1) return svg + "<text x=\"64\" y=\"120\" font-size=\"12\">no data yet</text></svg>";
  if (y1 - y0 < 1e-12) y0 -= 0.5, y1 += 0.5;
  if (x1 - x0 < 1e-12) x0 -= 0.5, x1 += 0.5;
  const double pw = kW - kLeft - kRight, ph = kH - kTop - kBottom;
  auto X = [&](double x) { return kLeft + (x - x0) / (x1 - x0) * pw; };
  auto Y = [&](double y) { return kTop + ph - (y - y0) / (y1 - y0) * ph; };
  // Plot area, grid and tick labels (5 on y, the rounds on x).
  absl::StrAppendFormat(&svg,
                        "<rect class=\"area\" x=\"%g\" y=\"%g\" width=\"%g\" height=\"%g\" "
                        "fill=\"#f6f8fa\" stroke=\"#888\"/>",
                        kLeft, kTop, pw, ph);
  for (int i = 0; i <= 4; ++i) {
    const double v = y0 + (y1 - y0) * i / 4;
    absl::StrAppendFormat(&svg,
                          "<line x1=\"%g\" x2=\"%g\" y1=\"%g\" y2=\"%g\" stroke=\"#ddd\"/>"
                          "<text class=\"ytick\" x=\"%g\" y=\"%g\" font-size=\"11\" "
                          "text-anchor=\"end\">%s</text>",
                          kLeft, kLeft + pw, Y(v), Y(v), kLeft - 4, Y(v) + 4, Label(v, (y1 - y0) / 4));
  }
  const int rounds = static_cast<int>(std::lround(x1 - x0)) + 1;
  const int step = std::max(1, rounds / 8);
  for (double r = x0; r <= x1 + 1e-9; r += step) {
    absl::StrAppendFormat(&svg,
                          "<text class=\"xtick\" x=\"%g\" y=\"%g\" font-size=\"11\" "
                          "text-anchor=\"middle\">%s</text>",
                          X(r), kTop + ph + 14, Label(r));
  }
  absl::StrAppendFormat(&svg,
                        "<text x=\"%g\" y=\"%g\" font-size=\"11\" text-anchor=\"middle\">round</text>"
                        "<text x=\"12\" y=\"%g\" font-size=\"11\" transform=\"rotate(-90 12 %g)\" "
                        "text-anchor=\"middle\">%s</text>",
                        kLeft + pw / 2, kH - 6, kTop + ph / 2, kTop + ph / 2, Escape(y_unit));
  double legend_x = kLeft + 16 + 8.5 * static_cast<double>(title.size());
  for (const Series& s : series) {
    std::string pts;
    for (const auto& [x, y] : s.points) absl::StrAppendFormat(&pts, "%.2f,%.2f ", X(x), Y(y));
    absl::StrAppendFormat(&svg,
                          "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"3\" points=\"%s\"/>",
                          s.color, pts);
    for (const auto& [x, y] : s.points) {
      absl::StrAppendFormat(&svg, "<circle cx=\"%.2f\" cy=\"%.2f\" r=\"4\" fill=\"%s\"/>", X(x), Y(y), s.color);
    }
    absl::StrAppendFormat(&svg,
                          "<rect x=\"%g\" y=\"9\" width=\"10\" height=\"10\" fill=\"%s\"/>"
                          "<text x=\"%g\" y=\"18\" font-size=\"11\">%s</text>",
                          legend_x, s.color, legend_x + 13, Escape(s.name));
    legend_x += 16 + 7 * static_cast<double>(s.name.size()) + 10;
  }
  return svg + "</svg>";
}

const char* const kColors[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"};

}  // namespace

absl::StatusOr<std::string> RenderReport(const std::string& run_dir) {
  const std::string metrics_path = run_dir + "/" + RunStore::kMetricsFile;
  absl::StatusOr<std::string> text = ReadFile(metrics_path);
  if (!text.ok()) {
    return absl::NotFoundError(absl::StrCat("no ", RunStore::kMetricsFile, " in ", run_dir));
  }
  std::vector<google::protobuf::Struct> lines;
  int bad = 0;
  for (absl::string_view line : absl::StrSplit(*text, '\n', absl::SkipEmpty())) {
    google::protobuf::Struct s;
    if (google::protobuf::util::JsonStringToMessage(std::string(line), &s).ok() &&
        s.fields().count("round")) {
      lines.push_back(std::move(s));
    } else {
      ++bad;
    }
  }
  auto series = [&](const std::string& field, const std::string& name, int color) {
    Series s{name, kColors[color % 6], {}};
    for (const auto& l : lines) {
      auto it = l.fields().find(field);
      if (it != l.fields().end() && it->second.has_number_value()) {
        s.points.emplace_back(l.fields().at("round").number_value(), it->second.number_value());
      }
    }
    return s;
  };
  std::map<std::string, Series> rejected;
  for (const auto& l : lines) {
    auto it = l.fields().find("rejected");
    if (it == l.fields().end() || !it->second.has_struct_value()) continue;
    for (const auto& [reason, v] : it->second.struct_value().fields()) {
      if (!rejected.count(reason)) {
        rejected[reason] = Series{reason, kColors[rejected.size() % 6], {}};
      }
    }
  }
  for (auto& [reason, s] : rejected) {
    for (const auto& l : lines) {
      const auto& r = l.fields().at("rejected").struct_value().fields();
      auto it = r.find(reason);
      s.points.emplace_back(l.fields().at("round").number_value(),
                            it == r.end() ? 0 : it->second.number_value());
    }
  }
  std::vector<Series> rejected_series;
  for (auto& [reason, s] : rejected) rejected_series.push_back(std::move(s));
  if (rejected_series.empty()) rejected_series.push_back(series("rejected_total", "rejected", 1));

  const std::string config = ReadFile(run_dir + "/" + RunStore::kConfigFile).value_or("(no config.json)");
  // With aggregation.averaging, test_accuracy / test_loss are the run's result: the global model's
  // figures before from_round, the average's from there; the global model's are drawn beside.
  Series global_accuracy = series("global_test_accuracy", "global model", 2);
  Series global_loss = series("global_test_loss", "global model", 2);
  const bool averaged = !global_accuracy.points.empty();
  std::string result_name;  // of test_accuracy / test_loss with averaging
  if (averaged) {
    // The resolved config's from_round; else the first round that carries the global figures.
    double from = global_accuracy.points.front().first;
    absl::StatusOr<proto::ExperimentConfig> parsed = ParseConfigJson(config);
    if (parsed.ok() && parsed->aggregation().averaging().has_from_round()) {
      from = parsed->aggregation().averaging().from_round();
    }
    result_name = absl::StrFormat("result (averaged from round %g)", from);
  }
  std::vector<Series> accuracy_series = {series("test_accuracy", averaged ? result_name : "accuracy", 0)};
  std::vector<Series> loss_series = {series("test_loss", averaged ? result_name : "loss", 1)};
  if (averaged) {
    accuracy_series.push_back(std::move(global_accuracy));
    loss_series.push_back(std::move(global_loss));
  }
  std::vector<std::string> plots = {
      Plot("Test accuracy", "accuracy", accuracy_series),
      Plot("Test loss", "cross-entropy", loss_series),
      Plot("Traffic per round", "bytes",
           {series("bytes_up", "up", 0), series("bytes_down", "down", 3)}),
      Plot("Time per round", "seconds",
           {series("round_seconds", "round", 0), series("eval_seconds", "evaluation", 2)}),
      Plot("Clients per round", "clients",
           {series("clients_selected", "selected", 0), series("clients_reported", "reported", 2),
            series("clients_failed", "failed", 1)}),
      Plot("Rejected updates by reason", "updates", rejected_series),
  };
  Series eps = series("dp_epsilon", "epsilon", 4);
  if (!eps.points.empty()) plots.push_back(Plot("Privacy budget spent", "epsilon", {eps}));
  Series student = series("student_local_accuracy", "student", 5);
  if (!student.points.empty()) plots.push_back(Plot("Student accuracy (clients' local)", "accuracy", {student}));

  std::string html = absl::StrCat(
      "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>edgefl run ", Escape(run_dir),
      "</title><style>body{font-family:sans-serif;margin:16px;background:#fff;color:#111}"
      ".grid{display:flex;flex-wrap:wrap;gap:12px}pre{background:#f6f8fa;padding:8px;"
      "font-size:12px;overflow:auto}</style></head><body>\n<h1>edgefl run ", Escape(run_dir),
      "</h1>\n<p>", lines.size(), " round(s) in ", RunStore::kMetricsFile,
      bad > 0 ? absl::StrCat(" (", bad, " line(s) unreadable)") : "", "</p>\n<div class=\"grid\">\n");
  for (const std::string& p : plots) absl::StrAppend(&html, p, "\n");
  absl::StrAppend(&html, "</div>\n<h2>Resolved config</h2>\n<pre>", Escape(config), "</pre>\n</body></html>\n");
  return html;
}

absl::Status WriteReport(const std::string& run_dir) {
  absl::StatusOr<std::string> html = RenderReport(run_dir);
  if (!html.ok()) return html.status();
  return WriteFileAtomically(run_dir + "/" + kReportFile, *html, 0644);
}

int RunReportCommand(int argc, char** argv) {
  if (argc != 2 || std::string(argv[1]).rfind("--", 0) == 0) {
    std::fprintf(stderr, "usage: fl-server report RUN_DIR   (writes RUN_DIR/%s)\n", kReportFile);
    return 2;
  }
  if (absl::Status s = WriteReport(argv[1]); !s.ok()) {
    std::fprintf(stderr, "fl-server report: %s\n", std::string(s.message()).c_str());
    return 2;
  }
  std::printf("%s/%s\n", argv[1], kReportFile);
  return 0;
}

}  // namespace edgefl::server
