#include "data/partition.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <random>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "common/status_macros.h"
#include "data/seeded_random.h"

namespace edgefl::data {
namespace {

// Whole Dirichlet draws retried until every client holds a row.
constexpr int kDirichletAttempts = 1000;
// Redraws of one proportion vector whose gamma variates all underflowed to 0 (tiny alpha).
constexpr int kGammaRedraws = 100;

absl::Status CheckClients(int num_clients, int64_t n) {
  if (num_clients < 1) {
    return absl::InvalidArgumentError(absl::StrCat("num_clients must be >= 1, got ", num_clients));
  }
  if (n < num_clients) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot split ", n, " rows across ", num_clients, " clients"));
  }
  return absl::OkStatus();
}

// Row indices of every label value 0..255, in file order (empty for absent labels).
std::vector<std::vector<int64_t>> RowsByLabel(const std::vector<uint8_t>& labels) {
  std::vector<std::vector<int64_t>> by_label(256);
  for (size_t i = 0; i < labels.size(); ++i) by_label[labels[i]].push_back(i);
  return by_label;
}

void SortAll(Partition& p) {
  for (auto& rows : p) std::sort(rows.begin(), rows.end());
}

// Proportions ~ Dir(alpha) over k clients.
std::vector<double> DrawDirichlet(int k, double alpha, std::mt19937_64& rng) {
  std::gamma_distribution<double> gamma(alpha, 1.0);
  std::vector<double> p(k);
  for (int redraw = 0; redraw < kGammaRedraws; ++redraw) {
    double sum = 0;
    for (double& x : p) sum += (x = gamma(rng));
    if (sum > 0 && std::isfinite(sum)) {
      for (double& x : p) x /= sum;
      return p;
    }
  }
  // Every draw underflowed: the limit alpha -> 0 puts all mass on one client.
  std::fill(p.begin(), p.end(), 0.0);
  p[UniformBelow(k, rng)] = 1.0;
  return p;
}

}  // namespace

absl::StatusOr<Partition> PartitionIid(int64_t n, int num_clients, uint64_t seed) {
  RETURN_IF_ERROR(CheckClients(num_clients, n));
  std::mt19937_64 rng(seed);
  const std::vector<int64_t> perm = SeededPermutation(n, rng);
  Partition out(num_clients);
  const int64_t base = n / num_clients;
  const int64_t extra = n % num_clients;  // the first `extra` clients get one more
  int64_t pos = 0;
  for (int c = 0; c < num_clients; ++c) {
    const int64_t size = base + (c < extra ? 1 : 0);
    out[c].assign(perm.begin() + pos, perm.begin() + pos + size);
    pos += size;
  }
  SortAll(out);
  return out;
}

absl::StatusOr<Partition> PartitionDirichlet(const std::vector<uint8_t>& labels, int num_clients,
                                             double alpha, uint64_t seed) {
  RETURN_IF_ERROR(CheckClients(num_clients, static_cast<int64_t>(labels.size())));
  if (!(alpha > 0) || !std::isfinite(alpha)) {
    return absl::InvalidArgumentError(
        absl::StrCat("dirichlet alpha must be positive and finite, got ", alpha));
  }
  std::mt19937_64 rng(seed);
  std::vector<std::vector<int64_t>> by_label = RowsByLabel(labels);
  for (auto& rows : by_label) SeededShuffle(rows, rng);

  for (int attempt = 0; attempt < kDirichletAttempts; ++attempt) {
    Partition out(num_clients);
    for (const auto& rows : by_label) {
      if (rows.empty()) continue;
      const std::vector<double> p = DrawDirichlet(num_clients, alpha, rng);
      const int64_t m = static_cast<int64_t>(rows.size());
      double cumulative = 0;
      int64_t begin = 0;
      for (int c = 0; c < num_clients; ++c) {
        cumulative += p[c];
        int64_t end = c + 1 == num_clients
                          ? m
                          : std::clamp<int64_t>(static_cast<int64_t>(cumulative * m), begin, m);
        out[c].insert(out[c].end(), rows.begin() + begin, rows.begin() + end);
        begin = end;
      }
    }
    const bool all_nonempty =
        std::none_of(out.begin(), out.end(), [](const auto& rows) { return rows.empty(); });
    if (all_nonempty) {
      SortAll(out);
      return out;
    }
  }
  return absl::InvalidArgumentError(absl::StrCat("dirichlet:", alpha, " left some of ", num_clients,
                                                 " clients without data in ", kDirichletAttempts,
                                                 " attempts; use a larger alpha or fewer clients"));
}

absl::StatusOr<Partition> PartitionByLabels(const std::vector<uint8_t>& labels, int num_clients,
                                            int labels_per_client, uint64_t seed) {
  RETURN_IF_ERROR(CheckClients(num_clients, static_cast<int64_t>(labels.size())));
  std::vector<std::vector<int64_t>> by_label = RowsByLabel(labels);
  std::vector<int> classes;
  for (int c = 0; c < static_cast<int>(by_label.size()); ++c) {
    if (!by_label[c].empty()) classes.push_back(c);
  }
  const int num_classes = static_cast<int>(classes.size());
  if (labels_per_client < 1 || labels_per_client > num_classes) {
    return absl::InvalidArgumentError(absl::StrCat("labels per client must be in 1..", num_classes,
                                                   " (classes present), got ", labels_per_client));
  }
  if (static_cast<int64_t>(num_clients) * labels_per_client < num_classes) {
    return absl::InvalidArgumentError(absl::StrCat(num_clients, " clients x ", labels_per_client,
                                                   " labels cannot cover all ", num_classes,
                                                   " classes"));
  }
  std::mt19937_64 rng(seed);
  SeededShuffle(classes, rng);
  std::vector<std::vector<int>> holders(by_label.size());
  for (int k = 0; k < num_clients; ++k) {
    for (int j = 0; j < labels_per_client; ++j) {
      const int cls = classes[(static_cast<int64_t>(k) * labels_per_client + j) % num_classes];
      holders[cls].push_back(k);
    }
  }
  Partition out(num_clients);
  for (int cls : classes) {
    std::vector<int64_t>& rows = by_label[cls];
    SeededShuffle(rows, rng);
    const int64_t m = static_cast<int64_t>(rows.size());
    const int64_t h = static_cast<int64_t>(holders[cls].size());
    int64_t pos = 0;
    for (int64_t i = 0; i < h; ++i) {
      const int64_t size = m / h + (i < m % h ? 1 : 0);
      auto& dst = out[holders[cls][i]];
      dst.insert(dst.end(), rows.begin() + pos, rows.begin() + pos + size);
      pos += size;
    }
  }
  SortAll(out);
  return out;
}

absl::StatusOr<Partition> PartitionFromSpec(const std::string& spec,
                                            const std::vector<uint8_t>& labels, int num_clients,
                                            uint64_t seed) {
  const absl::string_view s = absl::StripAsciiWhitespace(spec);
  if (s == "iid") return PartitionIid(static_cast<int64_t>(labels.size()), num_clients, seed);
  absl::string_view arg = s;
  if (absl::ConsumePrefix(&arg, "dirichlet:")) {
    double alpha = 0;
    if (!absl::SimpleAtod(arg, &alpha) || !(alpha > 0) || !std::isfinite(alpha)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "partition spec \"", spec, "\": alpha must be a positive number, e.g. dirichlet:0.5"));
    }
    return PartitionDirichlet(labels, num_clients, alpha, seed);
  }
  if (absl::ConsumePrefix(&arg, "labels:")) {
    int n = 0;
    if (!absl::SimpleAtoi(arg, &n) || n < 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("partition spec \"", spec,
                       "\": labels per client must be a positive integer, e.g. "
                       "labels:2"));
    }
    return PartitionByLabels(labels, num_clients, n, seed);
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown partition spec \"", spec, "\"; expected iid, dirichlet:<alpha> or labels:<n>"));
}

absl::StatusOr<Partition> ReadPartitionFile(const std::string& path, int64_t num_rows) {
  if (num_rows < 1) {
    return absl::InvalidArgumentError(absl::StrCat("num_rows must be >= 1, got ", num_rows));
  }
  std::ifstream in(path);
  if (!in) {
    const int err = errno;
    const std::string msg =
        absl::StrCat("cannot open partition file ", path, ": ", std::strerror(err));
    return err == ENOENT ? absl::NotFoundError(msg) : absl::UnavailableError(msg);
  }
  Partition out;
  std::vector<bool> have_client;
  std::vector<int32_t> owner_line(num_rows, 0);  // 0 = not yet seen
  std::string line;
  int32_t line_no = 0;
  auto error = [&](const auto&... parts) {
    return absl::InvalidArgumentError(absl::StrCat(path, ":", line_no, ": ", parts...));
  };
  while (std::getline(in, line)) {
    ++line_no;
    const absl::string_view text = absl::StripAsciiWhitespace(line);
    if (text.empty() || text[0] == '#') continue;
    const std::vector<absl::string_view> fields =
        absl::StrSplit(text, absl::ByAnyChar(" \t\r"), absl::SkipEmpty());
    int client = -1;
    int64_t declared = -1;
    if (fields.size() < 2 || !absl::SimpleAtoi(fields[0], &client) ||
        !absl::SimpleAtoi(fields[1], &declared) || client < 0 || declared < 0) {
      return error("expected \"<client_id> <num_samples> <idx...>\"");
    }
    if (client >= 1 << 20) return error("client id ", client, " is implausibly large");
    if (declared != static_cast<int64_t>(fields.size()) - 2) {
      return error("client ", client, " declares ", declared, " samples but lists ",
                   fields.size() - 2);
    }
    if (static_cast<size_t>(client) >= out.size()) {
      out.resize(client + 1);
      have_client.resize(client + 1, false);
    }
    if (have_client[client]) return error("client id ", client, " appears twice");
    have_client[client] = true;
    std::vector<int64_t>& rows = out[client];
    rows.reserve(declared);
    for (size_t i = 2; i < fields.size(); ++i) {
      int64_t idx = -1;
      if (!absl::SimpleAtoi(fields[i], &idx)) {
        return error("bad index \"", fields[i], "\"");
      }
      if (idx < 0 || idx >= num_rows) {
        return error("index ", idx, " out of range 0..", num_rows - 1);
      }
      if (owner_line[idx] != 0) {
        return error("index ", idx, " repeats (first on line ", owner_line[idx], ")");
      }
      owner_line[idx] = line_no;
      rows.push_back(idx);
    }
  }
  if (in.bad()) return absl::UnavailableError(absl::StrCat("error reading ", path));
  if (out.empty()) return absl::InvalidArgumentError(absl::StrCat(path, ": no client lines"));
  for (size_t c = 0; c < have_client.size(); ++c) {
    if (!have_client[c]) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": client ids must be 0..",
                                                     out.size() - 1, " but ", c, " is missing"));
    }
  }
  SortAll(out);
  return out;
}

}  // namespace edgefl::data
