// libFuzzer target: DecodeUpdate / ValidateUpdate / DecodeToDense over FuzzLayout(), plus
// ParseChain and ErrorFeedback::Deserialize on the same bytes.
//
// Properties checked (a violation aborts, which libFuzzer reports as a crash):
//  - no crash, leak or UB (ASan/UBSan) on any input;
//  - errors are INVALID_ARGUMENT and the sink was not called;
//  - on success every delivered value is finite, every flat index is in range and delivered at
//    most once, sparse indices are increasing, DecodeToDense agrees with the streamed entries,
//    and ValidateUpdate's counts agree;
//  - ParseChain(ToString(c)) == c; Deserialize(bytes).Serialize() == bytes.
//
// Build: compression/build_fuzzer.sh OUT (or cmake -DEDGEFL_FUZZ=ON with clang).
// Run:   OUT -max_total_time=60 compression/fuzz_corpus
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "compression/chain.h"
#include "compression/error_feedback.h"
#include "compression/fuzz_layout.h"
#include "compression/update_codec.h"

namespace {

using namespace edgefl::compression;

#define FUZZ_CHECK(cond)                                                           \
  do {                                                                             \
    if (!(cond)) {                                                                 \
      std::fprintf(stderr, "FUZZ_CHECK failed: %s at line %d\n", #cond, __LINE__); \
      std::abort();                                                                \
    }                                                                              \
  } while (0)

class CheckingSink : public UpdateSink {
 public:
  explicit CheckingSink(size_t total) : dense(total, 0.0f), seen(total, 0) {}
  void BeginTensor(size_t, uint64_t, uint64_t, uint64_t) override { ++calls; }
  void Dense(uint64_t flat_begin, absl::Span<const float> values) override {
    ++calls;
    FUZZ_CHECK(values.size() <= kDecodeBlock);
    for (size_t i = 0; i < values.size(); ++i) Put(flat_begin + i, values[i]);
  }
  void Sparse(uint64_t flat_base, absl::Span<const uint32_t> idx,
              absl::Span<const float> values) override {
    ++calls;
    FUZZ_CHECK(idx.size() == values.size() && values.size() <= kDecodeBlock);
    for (size_t i = 0; i < values.size(); ++i) {
      if (i > 0) FUZZ_CHECK(idx[i - 1] < idx[i]);
      Put(flat_base + idx[i], values[i]);
    }
  }
  void Put(uint64_t flat, float v) {
    FUZZ_CHECK(flat < dense.size());
    FUZZ_CHECK(!seen[flat]);
    FUZZ_CHECK(std::isfinite(v));
    seen[flat] = 1;
    dense[flat] = v;
    ++entries;
  }
  std::vector<float> dense;
  std::vector<char> seen;
  size_t calls = 0;
  uint64_t entries = 0;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::vector<TensorLayout>* layout = new std::vector<TensorLayout>(FuzzLayout());
  static const size_t total = [] {
    size_t n = 0;
    for (const auto& l : FuzzLayout()) n += l.numel;
    return n;
  }();
  const absl::string_view in(reinterpret_cast<const char*>(data), size);

  CheckingSink sink(total);
  const absl::Status s = DecodeUpdate(in, *layout, &sink);
  auto summary = ValidateUpdate(in, *layout);
  FUZZ_CHECK(s.ok() == summary.ok());
  if (!s.ok()) {
    FUZZ_CHECK(s.code() == absl::StatusCode::kInvalidArgument);
    FUZZ_CHECK(sink.calls == 0);
    FUZZ_CHECK(!s.message().empty());
  } else {
    FUZZ_CHECK(summary->total_nnz == sink.entries);
    FUZZ_CHECK(summary->total_numel == total);
    std::vector<float> dense;
    FUZZ_CHECK(DecodeToDense(in, *layout, &dense).ok());
    FUZZ_CHECK(dense.size() == total);
    FUZZ_CHECK(std::memcmp(dense.data(), sink.dense.data(), total * sizeof(float)) == 0);
    FUZZ_CHECK(size <= MaxEncodedSizeBytes(summary->chain, *layout));
  }

  if (size <= 512) {
    auto chain = ParseChain(in);
    if (chain.ok()) {
      const std::string text = chain->ToString();
      auto again = ParseChain(text);
      FUZZ_CHECK(again.ok());
      FUZZ_CHECK(*again == *chain);
      FUZZ_CHECK(again->ToString() == text);
      FUZZ_CHECK(ValidateChain(*chain).ok());
    } else {
      FUZZ_CHECK(chain.status().code() == absl::StatusCode::kInvalidArgument);
    }
  }

  auto ef = ErrorFeedback::Deserialize(in);
  if (ef.ok()) {
    FUZZ_CHECK(ef->Serialize() == in);
  } else {
    FUZZ_CHECK(ef.status().code() == absl::StatusCode::kInvalidArgument);
  }
  return 0;
}
