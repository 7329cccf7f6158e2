// The committed seed corpora of the server fuzzers still reach the deep paths: report seeds pass
// header validation, reassembly and decoding; token seeds verify. (If a format changes, rerun
// server_fuzz_corpus_gen.)
#include <dirent.h>

#include <string>
#include <vector>

#include "common/chunking.h"
#include "common/file_util.h"
#include "common/model_layout.h"
#include "gtest/gtest.h"
#include "models/model_spec.h"
#include "server/fuzz/fuzz_common.h"
#include "server/request_validation.h"
#include "server/tokens.h"

namespace edgefl::server {
namespace {

std::vector<std::string> Seeds(const std::string& target) {  // NOLINT
  const std::string dir = std::string(EDGEFL_SERVER_SOURCE_DIR) + "/fuzz/corpus/" + target;
  std::vector<std::string> out;
  if (DIR* d = opendir(dir.c_str())) {
    while (dirent* e = readdir(d)) {
      if (e->d_name[0] != '.') out.push_back(dir + "/" + e->d_name);
    }
    closedir(d);
  }
  return out;
}

TEST(ServerFuzzCorpus, ReportSeedsDecode) {
  const std::vector<std::string> uplinks = {"dense",  "int8",      "topk:0.1|int8",          "fp16",
                                            "q4:b32", "randk:0.5", "topk_global:40|int8:b16"};
  ReportLimits limits;
  limits.spec = fuzz::FuzzSpec();
  limits.layout = LayoutOf(limits.spec);
  limits.dense_bytes = models::NumParameters(limits.spec) * 4;
  const std::vector<std::string> seeds = Seeds("report");
  ASSERT_EQ(seeds.size(), uplinks.size());
  for (const std::string& path : seeds) {
    const std::string bytes = *ReadFile(path);
    fuzz::Records in(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
    const std::string control(in.Next());
    ASSERT_FALSE(control.empty()) << path;
    proto::ReportRequest head;
    ASSERT_TRUE(head.ParseFromString(std::string(in.Next()))) << path;
    auto plan = ValidateReportHeader(head.header(), limits, uplinks[control[0] % uplinks.size()]);
    ASSERT_TRUE(plan.ok()) << path << ": " << plan.status();
    ChunkAssembler assembler(plan->max_bytes);
    ASSERT_TRUE(assembler.Start(head.header().total_bytes(), head.header().sha256()).ok());
    while (!in.done()) {
      proto::ReportRequest c;
      ASSERT_TRUE(c.ParseFromString(std::string(in.Next())));
      ASSERT_TRUE(assembler.Add(c.chunk().offset(), c.chunk().data()).ok()) << path;
    }
    std::string payload;
    ASSERT_TRUE(assembler.Finish(&payload).ok()) << path;
    EXPECT_TRUE(UpdateL2Norm(*plan, payload, limits.layout).ok()) << path;
  }
}

TEST(ServerFuzzCorpus, TokenSeedsVerify) {
  const TokenAuthority tokens = *TokenAuthority::Create(fuzz::kFuzzSecret);
  int verified = 0;
  for (const char* target : {"join", "checkin"}) {
    for (const std::string& path : Seeds(target)) {
      const std::string bytes = *ReadFile(path);
      fuzz::Records in(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
      in.Next();
      auto bearer = ParseBearer(in.Next());
      ASSERT_TRUE(bearer.ok()) << path;
      if (tokens.VerifyEnrollment(*bearer, fuzz::FuzzNow()).ok() ||
          tokens.VerifySession(*bearer, fuzz::FuzzNow()).ok()) {
        ++verified;
      }
    }
  }
  EXPECT_GE(verified, 5);
}

}  // namespace
}  // namespace edgefl::server
