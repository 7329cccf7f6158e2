// fl-loadgen: N simulated devices against a real fl-server (bench/loadgen/loadgen.h).
#include <cstdio>
#include <fstream>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "bench/loadgen/loadgen.h"
#include "common/file_util.h"
#include "common/flags.h"

namespace edgefl::loadgen {
namespace {

constexpr char kProgram[] = "fl-loadgen";
constexpr char kDescription[] =
    "Simulates N edgefl devices in one process over the real protocol: each its own connection,\n"
    "identity and session, long-poll CheckIn, model download, a lognormal training time and a\n"
    "synthetic update of the model's shape through the round's codec chain. Faults: devices\n"
    "that never report, that are cut off mid-upload, that reconnect before each upload.\n\n"
    "  fl-loadgen --server 127.0.0.1:50051 --insecure --devices 1000 --train_median 5\n"
    "  fl-loadgen --server host:50051 --ca_cert ca.pem --devices 100 --never_report 0.1\n\n"
    "Prints one JSON line of figures; --reference_out writes the FedAvg the server must reach.";

int Usage(const std::string& message) {
  std::fprintf(stderr, "%s: %s\n", kProgram, message.c_str());
  return 2;
}

int Main(int argc, char** argv) {
  Options o;
  std::string server = "localhost:50051", ca_cert, token_file, reference_out, json_out;
  bool insecure = false;
  double poll = 30, max_run = 7200;
  int samples = static_cast<int>(o.samples_per_device);
  int64_t seed = 0;
  FlagSet flags(kProgram, kDescription);
  flags.String("server", &server, "fl-server address");
  flags.Bool("insecure", &insecure, "plaintext instead of TLS");
  flags.String("ca_cert", &ca_cert, "CA certificate (PEM) of the server's TLS certificate");
  flags.String("token_file", &token_file, "enrollment token file shared by every device");
  flags.Int("devices", &o.devices, "number of simulated devices");
  flags.Int64("seed", &seed, "seeds training times and synthetic updates");
  flags.Double("train_median", &o.train_median_seconds, "median simulated training seconds");
  flags.Double("train_sigma", &o.train_sigma, "lognormal sigma of the training time (0 = fixed)");
  flags.Double("train_max", &o.train_max_seconds, "cap on one simulated training time, seconds");
  flags.Int("samples", &samples, "num_samples each device reports (its FedAvg weight)");
  flags.Double("update_scale", &o.update_scale, "synthetic update values are in [-scale, scale]");
  flags.Double("slow_fraction", &o.slow_fraction,
               "fraction of devices (the last ones) whose training takes slow_factor times longer");
  flags.Double("slow_factor", &o.slow_factor, "training-time factor of the slow devices (>= 1)");
  flags.Double("never_report", &o.never_report, "fraction of devices that never report");
  flags.Double("disconnect", &o.disconnect, "fraction of devices cut off mid-upload");
  flags.Double("reconnect", &o.reconnect, "fraction that reconnect before each upload");
  flags.Double("poll", &poll, "CheckIn long-poll floor, seconds");
  flags.Double("max_run", &max_run, "give up after this many seconds");
  flags.String("reference_out", &reference_out,
               "write the exact FedAvg of the accepted updates here (raw float32)");
  flags.String("json_out", &json_out, "also write the JSON figures here");
  flags.ParseOrExit(argc, argv);
  if (!flags.positional().empty()) return Usage("unexpected argument '" + flags.positional()[0] + "'");
  if (samples < 1) return Usage("--samples must be >= 1");
  if (!(o.slow_fraction >= 0 && o.slow_fraction <= 1)) return Usage("--slow_fraction must be in [0, 1]");
  if (!(o.slow_factor >= 1)) return Usage("--slow_factor must be >= 1");
  o.samples_per_device = static_cast<uint64_t>(samples);
  o.seed = static_cast<uint64_t>(seed);
  o.poll = absl::Seconds(poll);
  o.max_run = absl::Seconds(max_run);
  o.rpc.target = server;
  o.rpc.insecure = insecure;
  if (!insecure) {
    if (ca_cert.empty()) return Usage("TLS needs --ca_cert (or pass --insecure)");
    absl::StatusOr<std::string> pem = ReadFile(ca_cert);
    if (!pem.ok()) return Usage(absl::StrCat("--ca_cert: ", pem.status().message()));
    o.rpc.ca_cert_pem = *pem;
  }
  if (!token_file.empty()) {
    absl::StatusOr<std::string> token = ReadFile(token_file);
    if (!token.ok()) return Usage(absl::StrCat("--token_file: ", token.status().message()));
    o.enrollment_token = std::string(absl::StripAsciiWhitespace(*token));
  }
  o.reference = !reference_out.empty();
  absl::StatusOr<Result> r = Run(o);
  if (!r.ok()) return Usage(std::string(r.status().message()));
  const std::string json = ResultToJson(*r);
  std::printf("%s\n", json.c_str());
  if (!json_out.empty()) {
    absl::Status s = WriteFileAtomically(json_out, json + "\n");
    if (!s.ok()) return Usage(absl::StrCat("--json_out: ", s.message()));
  }
  if (o.reference) {
    if (r->reference_model.empty()) return Usage("no full download of version 0: no reference");
    absl::Status s = WriteFileAtomically(
        reference_out, std::string(reinterpret_cast<const char*>(r->reference_model.data()),
                                   r->reference_model.size() * sizeof(float)));
    if (!s.ok()) return Usage(absl::StrCat("--reference_out: ", s.message()));
  }
  return r->devices_finished == r->devices ? 0 : 1;
}

}  // namespace
}  // namespace edgefl::loadgen

int main(int argc, char** argv) { return edgefl::loadgen::Main(argc, argv); }
