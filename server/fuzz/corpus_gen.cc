// Writes the seed corpora of the server fuzzers (server/fuzz/corpus/<target>/): real Join,
// CheckIn and Report streams as fl-client sends them (with tokens minted under the fuzzers'
// key, valid at FuzzNow()), and real experiment configs. Deterministic.
// Usage: server_fuzz_corpus_gen SOURCE_ROOT   (writes SOURCE_ROOT/server/fuzz/corpus/...)
#include <sys/stat.h>

#include <cstdio>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/model_layout.h"
#include "common/sha256.h"
#include "compression/chain.h"
#include "compression/update_codec.h"
#include "fuzz_common.h"
#include "models/model_spec.h"
#include "server/tokens.h"

using namespace edgefl;
using namespace edgefl::server;

namespace {

std::string root;
int failures = 0;

void Write(const std::string& target, const std::string& name, const std::string& bytes) {
  const std::string dir = root + "/server/fuzz/corpus/" + target;
  if (!MakeDirs(dir).ok() || !WriteFileAtomically(dir + "/" + name, bytes).ok()) {
    std::fprintf(stderr, "cannot write %s/%s\n", dir.c_str(), name.c_str());
    ++failures;
    return;
  }
  std::printf("%s/%s %zu bytes\n", target.c_str(), name.c_str(), bytes.size());
}

proto::JoinRequest Join() {
  proto::JoinRequest r;
  auto* p = r.mutable_profile();
  p->set_arch("aarch64");
  p->set_cores(4);
  p->set_ram_bytes(4ULL << 30);
  p->set_free_disk_bytes(20ULL << 30);
  p->set_accelerator("jetson-gpu");
  p->set_hostname("jetson-07");
  p->set_num_samples(3000);
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s SOURCE_ROOT\n", argv[0]);
    return 2;
  }
  root = argv[1];
  const TokenAuthority tokens = *TokenAuthority::Create(fuzz::kFuzzSecret);
  const absl::Time now = fuzz::FuzzNow();
  const std::string enroll = tokens.MintEnrollment({"0123456789abcdef", now + absl::Hours(24), 5});
  const std::string expired = tokens.MintEnrollment({"fedcba9876543210", now - absl::Hours(1), 1});
  const std::string session =
      tokens.MintSession({"c-0011223344556677", "0123456789abcdef", now + absl::Hours(12)});
  const std::string cert_session = tokens.MintSession({"client-3", "", now + absl::Hours(12)});
  const std::string join = Join().SerializeAsString();

  // ---- join: request, authorization, certificate identity, peer
  Write("join", "enrollment", fuzz::Frame({join, "Bearer " + enroll, "", "ipv4:10.0.0.7:40000"}));
  Write("join", "renewal", fuzz::Frame({join, "Bearer " + session, "", "ipv6:[fd00::7]:40000"}));
  Write("join", "mtls", fuzz::Frame({join, "", "client-3", "ipv4:127.0.0.1:40000"}));
  Write("join", "mtls_session",
        fuzz::Frame({join, "Bearer " + cert_session, "client-3", "ipv4:127.0.0.1:1"}));
  Write("join", "expired", fuzz::Frame({join, "Bearer " + expired, "", "ipv4:10.0.0.8:1"}));
  Write("join", "open", fuzz::Frame({proto::JoinRequest().SerializeAsString(), "", "", ""}));

  // ---- checkin: request, authorization, certificate identity
  proto::CheckInRequest checkin;
  checkin.set_client_id("c-0011223344556677");
  checkin.set_have_model_version(3);
  Write("checkin", "session", fuzz::Frame({checkin.SerializeAsString(), "Bearer " + session, ""}));
  checkin.set_client_id("client-3");
  checkin.set_have_model_version(-1);
  Write("checkin", "mtls",
        fuzz::Frame({checkin.SerializeAsString(), "Bearer " + cert_session, "client-3"}));
  checkin.set_client_id("c-ffffffffffffffff");
  Write("checkin", "other_client",
        fuzz::Frame({checkin.SerializeAsString(), "Bearer " + session, ""}));

  // ---- report: control, header, chunks (256-byte chunks, as the real client cuts 1 MiB ones)
  const proto::ModelSpec spec = fuzz::FuzzSpec();
  const auto layout = LayoutOf(spec);
  const size_t n = static_cast<size_t>(models::NumParameters(spec));
  std::mt19937_64 gen(7);
  std::normal_distribution<float> dist(0.0f, 0.05f);
  std::vector<float> delta(n);
  for (float& v : delta) v = dist(gen);
  const std::vector<std::string> uplinks = {"dense",  "int8",      "topk:0.1|int8",          "fp16",
                                            "q4:b32", "randk:0.5", "topk_global:40|int8:b16"};
  for (size_t u = 0; u < uplinks.size(); ++u) {
    std::string payload;
    if (uplinks[u] == "dense") {
      payload.assign(reinterpret_cast<const char*>(delta.data()), n * sizeof(float));
    } else {
      auto chain = compression::ParseChain(uplinks[u]);
      auto enc = compression::EncodeUpdate(*chain, ViewsOf(layout, delta), nullptr, u);
      if (!enc.ok()) {
        std::fprintf(stderr, "%s\n", enc.status().ToString().c_str());
        return 1;
      }
      payload = *enc;
    }
    proto::ReportRequest head;
    proto::ReportHeader* h = head.mutable_header();
    h->set_client_id("c-0011223344556677");
    h->set_round(4);
    h->set_attempt(1);
    h->set_model_version(3);
    h->set_num_samples(1200);
    *h->mutable_spec() = spec;
    h->set_codec(uplinks[u]);
    h->set_total_bytes(payload.size());
    h->set_sha256(Sha256::Of(payload));
    h->mutable_metrics()->set_train_loss(0.61);
    h->mutable_metrics()->set_train_accuracy(0.78);
    h->mutable_metrics()->set_train_seconds(12.5);
    h->mutable_metrics()->set_num_samples(1200);
    std::vector<std::string> records = {std::string{static_cast<char>(u), '\0'},
                                        head.SerializeAsString()};
    for (size_t off = 0; off < payload.size(); off += 256) {
      proto::ReportRequest c;
      c.mutable_chunk()->set_offset(off);
      c.mutable_chunk()->set_data(payload.substr(off, 256));
      records.push_back(c.SerializeAsString());
    }
    std::string name = uplinks[u];
    for (char& ch : name) {
      if (ch == '|') ch = '_';
      if (ch == ':') ch = '-';
    }
    Write("report", absl::StrCat("seed_", u, "_", name), fuzz::Frame(records));
  }

  // ---- config: the shipped examples plus configs that use every section
  for (const char* example : {"fmnist_fedavg.json", "quickstart_lr_schedule.json"}) {
    absl::StatusOr<std::string> text = ReadFile(root + "/examples/" + example);
    if (!text.ok()) {
      std::fprintf(stderr, "%s\n", text.status().ToString().c_str());
      return 1;
    }
    Write("config", example, *text);
  }
  Write(
      "config", "bounds_clip.json",
      R"({"rounds": 3, "model": "small_cnn", "update_bounds": {"max_l2_norm": 5.0, )"
      R"("on_violation": "clip"}, "client": {"uplink": "topk:0.01|int8|ef", "downlink": "int8"}})");
  Write("config", "schedule_override",
        R"({"schedule": [{"from_round": 2, "client": {"lr": 0.02}, "deadline_seconds": 60}]})"
        "\nsampling.min_clients=5");
  Write("config", "override_json",
        "{}\nschedule=[{\"from_round\":10,\"client\":{\"lr\":0.02,\"epochs\":2}}]");
  return failures == 0 ? 0 : 1;
}
