// libFuzzer target: the Report handler's stream parsing and validation, without gRPC.
//
// Records (server/fuzz/fuzz_common.h):
//   [0] control: byte 0 picks the round's uplink chain (see kUplinks), byte 1 bit 0 set = the
//       fuzzer rewrites the header's digest to match the chunks it sends (so that mutated
//       payloads reach the decoder instead of stopping at the SHA-256 check)
//   [1] a serialized ReportRequest (must hold the header)
//   [2..] serialized ReportRequests (chunks), up to 64
// Runs what CoordinatorService::Report runs on a stream after authentication and the
// scheduler's round check: ValidateReportHeader, ChunkAssembler (Start / Add / Finish),
// UpdateL2Norm (a cross-check of the payload's finiteness; the server itself applies norm bounds
// in the strategy's filters, aggregation/pipeline.h), and then folds the update into a FedAvg
// strategy.
//
// Properties (a violation aborts):
//  - no crash, leak or UB on any input;
//  - refusals are INVALID_ARGUMENT or DATA_LOSS with a message;
//  - a payload that UpdateL2Norm accepts has a finite norm and is accepted by the strategy
//    (validation and aggregation agree), and the aggregated model stays finite;
//  - the assembled payload never exceeds the plan's max_bytes.
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "aggregation/strategy.h"
#include "common/chunking.h"
#include "common/model_layout.h"
#include "common/sha256.h"
#include "fuzz_common.h"
#include "models/model_spec.h"
#include "server/request_validation.h"

using namespace edgefl;
using namespace edgefl::server;

namespace {

const char* const kUplinks[] = {"dense",  "int8",      "topk:0.1|int8",          "fp16",
                                "q4:b32", "randk:0.5", "topk_global:40|int8:b16"};

void CheckRefusal(const absl::Status& s) {
  FUZZ_CHECK(!s.ok());
  FUZZ_CHECK(s.code() == absl::StatusCode::kInvalidArgument ||
             s.code() == absl::StatusCode::kDataLoss);
  FUZZ_CHECK(!s.message().empty());
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  fuzz::SilenceProtobufLogs();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const ReportLimits* limits = [] {
    auto* l = new ReportLimits;
    l->spec = fuzz::FuzzSpec();
    l->layout = LayoutOf(l->spec);
    l->dense_bytes = static_cast<uint64_t>(models::NumParameters(l->spec)) * sizeof(float);
    return l;
  }();
  fuzz::Records in(data, size);
  const absl::string_view control = in.Next();
  const std::string uplink =
      kUplinks[control.empty()
                   ? 0
                   : static_cast<uint8_t>(control[0]) % (sizeof(kUplinks) / sizeof(kUplinks[0]))];
  const bool fix_digest = control.size() > 1 && (control[1] & 1);
  const absl::string_view first = in.Next();
  proto::ReportRequest msg;
  if (!msg.ParseFromArray(first.data(), static_cast<int>(first.size())) || !msg.has_header()) {
    return 0;
  }
  proto::ReportHeader header = msg.header();
  std::vector<proto::ReportRequest> chunks;
  while (!in.done() && chunks.size() < 64) {
    const absl::string_view r = in.Next();
    proto::ReportRequest c;
    if (!c.ParseFromArray(r.data(), static_cast<int>(r.size()))) break;
    chunks.push_back(std::move(c));
  }
  if (fix_digest) {
    Sha256 digest;
    for (const auto& c : chunks) {
      if (c.has_chunk()) digest.Update(c.chunk().data());
    }
    header.set_sha256(digest.Finish());
  }

  absl::StatusOr<ReportPlan> plan = ValidateReportHeader(header, *limits, uplink);
  if (!plan.ok()) {
    CheckRefusal(plan.status());
    return 0;
  }
  FUZZ_CHECK(header.total_bytes() <= plan->max_bytes);
  ChunkAssembler assembler(plan->max_bytes);
  if (absl::Status s = assembler.Start(header.total_bytes(), header.sha256()); !s.ok()) {
    CheckRefusal(s);
    return 0;
  }
  for (const auto& c : chunks) {
    if (!c.has_chunk()) return 0;  // "a second header in one Report stream"
    if (absl::Status s = assembler.Add(c.chunk().offset(), c.chunk().data()); !s.ok()) {
      CheckRefusal(s);
      return 0;
    }
    FUZZ_CHECK(assembler.received() <= plan->max_bytes);
  }
  std::string payload;
  if (absl::Status s = assembler.Finish(&payload); !s.ok()) {
    CheckRefusal(s);
    return 0;
  }
  FUZZ_CHECK(payload.size() == header.total_bytes());
  absl::StatusOr<double> norm = UpdateL2Norm(*plan, payload, limits->layout);
  if (!norm.ok()) {
    CheckRefusal(norm.status());
    return 0;
  }
  FUZZ_CHECK(std::isfinite(*norm) && *norm >= 0);

  const size_t n = static_cast<size_t>(models::NumParameters(limits->spec));
  std::unique_ptr<aggregation::Strategy> strategy = *aggregation::CreateFedAvg(n);
  strategy->BeginRound(1);
  absl::Status accumulated;
  if (plan->dense) {
    std::vector<float> delta(n);
    std::memcpy(delta.data(), payload.data(), payload.size());
    accumulated = strategy->Accumulate(delta, header.num_samples());
  } else {
    accumulated =
        strategy->AccumulateEncoded(payload, limits->layout, plan->chain, header.num_samples());
  }
  FUZZ_CHECK(accumulated.ok());
  std::vector<float> global(n, 0.5f);
  FUZZ_CHECK(strategy->Aggregate(absl::MakeSpan(global), 0).ok());
  // The aggregate is the update itself (one client): finite, and within float range of it.
  for (float v : global) FUZZ_CHECK(std::isfinite(v));
  return 0;
}
