#include "compression/update_codec.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "compression/bit_io.h"
#include "compression/fuzz_layout.h"
#include "compression/quantize.h"
#include "compression/sparsify.h"
#include "gtest/gtest.h"

namespace edgefl::compression {
namespace {

// ---- helpers ----------------------------------------------------------------------------------

struct Model {
  std::vector<TensorLayout> layout;
  std::vector<std::vector<float>> values;

  std::vector<TensorView> Views() const {
    std::vector<TensorView> v;
    for (size_t t = 0; t < layout.size(); ++t) v.push_back({layout[t].name, values[t]});
    return v;
  }
  std::vector<float> Flat() const {
    std::vector<float> f;
    for (const auto& v : values) f.insert(f.end(), v.begin(), v.end());
    return f;
  }
  size_t Total() const {
    size_t n = 0;
    for (const auto& l : layout) n += l.numel;
    return n;
  }
};

Model MakeModel(const std::vector<TensorLayout>& layout, uint64_t seed, float stddev = 0.01f) {
  Model m;
  m.layout = layout;
  std::mt19937_64 gen(seed);
  std::normal_distribution<float> dist(0.0f, stddev);
  for (const auto& l : layout) {
    std::vector<float> v(l.numel);
    for (float& x : v) x = dist(gen);
    m.values.push_back(std::move(v));
  }
  return m;
}

const std::vector<TensorLayout>& SmallLayout() {
  static const auto* layout = new std::vector<TensorLayout>{
      {"conv1.weight", 800}, {"conv1.bias", 32}, {"empty", 0}, {"fc.weight", 5001}, {"fc.bias", 1}};
  return *layout;
}

ChainSpec Chain(const std::string& text) {
  auto c = ParseChain(text);
  EXPECT_TRUE(c.ok()) << text << ": " << c.status();
  return c.ok() ? *c : ChainSpec{};
}

const std::vector<std::string>& AllChains() {
  static const auto* chains = new std::vector<std::string>{
      "dense",
      "fp16",
      "fp16:sr",
      "int8",
      "int8:b256",
      "int8:sr",
      "int8:b64:sr",
      "q4",
      "q4:b32",
      "q4:sr",
      "ef",
      "int8|ef",
      "q4:b128|ef",
      "fp16|ef",
      "topk:0.01|int8|ef",
      "topk:0.01",
      "topk:0.1|fp16",
      "topk:0.5|q4:b16",
      "topk:1|int8",
      "randk:0.1",
      "randk:0.1|int8:sr",
      "randk:0.7|q4|ef",
      "topk_global:100|int8",
      "topk_global:0.02|fp16|ef",
      "topk_global:1.0|q4",
      "topk_global:0.3|int8:b32:sr|ef",
  };
  return *chains;
}

// Records everything a sink is given.
class RecordingSink : public UpdateSink {
 public:
  explicit RecordingSink(size_t total) : dense(total, 0.0f), seen(total, 0) {}
  void BeginTensor(size_t tensor_index, uint64_t flat_offset, uint64_t numel,
                   uint64_t nnz) override {
    ++begin_calls;
    offsets.push_back(flat_offset);
  }
  void Dense(uint64_t flat_begin, absl::Span<const float> values) override {
    ++calls;
    max_block = std::max(max_block, values.size());
    for (size_t i = 0; i < values.size(); ++i) Put(flat_begin + i, values[i]);
  }
  void Sparse(uint64_t flat_base, absl::Span<const uint32_t> idx,
              absl::Span<const float> values) override {
    ++calls;
    max_block = std::max(max_block, values.size());
    EXPECT_EQ(idx.size(), values.size());
    for (size_t i = 0; i < values.size(); ++i) {
      if (i > 0) {
        EXPECT_LT(idx[i - 1], idx[i]);
      }
      Put(flat_base + idx[i], values[i]);
    }
  }
  void Put(uint64_t flat, float v) {
    ASSERT_LT(flat, dense.size());
    EXPECT_EQ(seen[flat], 0) << "flat index " << flat << " delivered twice";
    EXPECT_TRUE(std::isfinite(v));
    seen[flat] = 1;
    dense[flat] = v;
    sent.push_back(static_cast<uint32_t>(flat));
  }
  // Tensor-local kept indices per tensor (for the size formula).
  std::vector<std::vector<uint32_t>> KeptPerTensor(const std::vector<TensorLayout>& layout) const {
    std::vector<std::vector<uint32_t>> kept(layout.size());
    uint64_t offset = 0;
    for (size_t t = 0; t < layout.size(); ++t) {
      for (uint64_t i = 0; i < layout[t].numel; ++i) {
        if (seen[offset + i]) kept[t].push_back(static_cast<uint32_t>(i));
      }
      offset += layout[t].numel;
    }
    return kept;
  }

  std::vector<float> dense;
  std::vector<char> seen;
  std::vector<uint32_t> sent;
  std::vector<uint64_t> offsets;
  size_t calls = 0, begin_calls = 0, max_block = 0;
};

// Hand-assembles encodings for the malformed-input tests.
class Bytes {
 public:
  Bytes& U8(uint8_t v) {
    s.push_back(static_cast<char>(v));
    return *this;
  }
  Bytes& Var(uint64_t v) {
    internal::AppendVarint(&s, v);
    return *this;
  }
  Bytes& Str(const std::string& v) {
    Var(v.size());
    s += v;
    return *this;
  }
  Bytes& F32(float v) {
    char b[4];
    std::memcpy(b, &v, 4);
    s.append(b, 4);
    return *this;
  }
  Bytes& Raw(const std::string& v) {
    s += v;
    return *this;
  }
  Bytes& Header(const std::string& chain, uint64_t count) {
    s.append("EFLU", 4);
    U8(1);
    Str(chain);
    return Var(count);
  }
  std::string s;
};

void ExpectInvalid(const std::string& encoded, const std::vector<TensorLayout>& layout,
                   const std::string& needle, const DecodeOptions& options = {}) {
  RecordingSink sink(std::max<size_t>(1, [&] {
    size_t n = 0;
    for (const auto& l : layout) n += l.numel;
    return n;
  }()));
  const absl::Status s = DecodeUpdate(encoded, layout, &sink, options);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << needle << " -> " << s;
  EXPECT_NE(std::string(s.message()).find(needle), std::string::npos)
      << "message '" << s.message() << "' lacks '" << needle << "'";
  EXPECT_EQ(sink.calls + sink.begin_calls, 0u) << "sink touched by a malformed update";
  std::vector<float> untouched = {42.0f};
  EXPECT_FALSE(DecodeToDense(encoded, layout, &untouched, options).ok());
  EXPECT_EQ(untouched, std::vector<float>{42.0f});
}

const std::vector<TensorLayout> kOne10 = {{"w", 10}};

// ---- round trips ------------------------------------------------------------------------------

TEST(UpdateCodec, RoundTripsEveryChain) {
  const Model m = MakeModel(SmallLayout(), 1);
  const std::vector<float> input = m.Flat();
  for (const std::string& text : AllChains()) {
    SCOPED_TRACE(text);
    const ChainSpec spec = Chain(text);
    ErrorFeedback ef(m.Total());
    auto enc = EncodeUpdate(spec, m.Views(), &ef, /*seed=*/5);
    ASSERT_TRUE(enc.ok()) << enc.status();

    auto summary = ValidateUpdate(*enc, m.layout, {spec});
    ASSERT_TRUE(summary.ok()) << summary.status();
    EXPECT_EQ(summary->chain, spec);
    EXPECT_EQ(summary->total_numel, m.Total());

    RecordingSink sink(m.Total());
    ASSERT_TRUE(DecodeUpdate(*enc, m.layout, &sink).ok());
    EXPECT_LE(sink.max_block, UpdateSink::kDecodeBlock);
    EXPECT_EQ(sink.begin_calls, m.layout.size());
    EXPECT_EQ(sink.sent.size(), summary->total_nnz);

    std::vector<float> dense;
    ASSERT_TRUE(DecodeToDense(*enc, m.layout, &dense).ok());
    ASSERT_EQ(dense.size(), m.Total());
    EXPECT_EQ(std::memcmp(dense.data(), sink.dense.data(), dense.size() * 4), 0);

    // How many entries each sparsifier sends.
    uint64_t expect_nnz = m.Total();
    if (spec.sparsifier == Sparsifier::kTopK || spec.sparsifier == Sparsifier::kRandK) {
      expect_nnz = 0;
      for (const auto& l : m.layout) expect_nnz += KeptCount(spec.fraction, l.numel);
    } else if (spec.sparsifier == Sparsifier::kTopKGlobal) {
      expect_nnz = GlobalKeptCount(spec, m.Total());
    }
    EXPECT_EQ(summary->total_nnz, expect_nnz);

    // Per-entry error bounds of the value codec (on the entries that were sent).
    for (size_t i = 0; i < input.size(); ++i) {
      if (!sink.seen[i]) {
        ASSERT_EQ(dense[i], 0.0f);
        continue;
      }
      const float x = input[i], d = dense[i];
      switch (spec.quantizer) {
        case Quantizer::kFp32:
          ASSERT_EQ(d, x) << i;
          break;
        case Quantizer::kFp16:
          ASSERT_LE(std::fabs(d - x),
                    std::fabs(x) * (spec.stochastic ? 0x1.0p-10f : 0x1.0p-11f) + 0x1.0p-24f)
              << i;
          break;
        default: {
          // Within one step of the largest kept magnitude / qmax of the whole update.
          const float qmax = spec.quantizer == Quantizer::kInt8 ? 127.0f : 7.0f;
          float max_abs = 0;
          for (float v : input) max_abs = std::max(max_abs, std::fabs(v));
          ASSERT_LE(std::fabs(d - x), max_abs / qmax * (spec.stochastic ? 1.0f : 0.5f) * 1.001f)
              << i;
        }
      }
    }

    // Error feedback: decoded + residual == input, bit for bit, for round-to-nearest chains.
    if (spec.error_feedback && !spec.stochastic) {
      for (size_t i = 0; i < input.size(); ++i) {
        ASSERT_EQ(dense[i] + ef.residual()[i], input[i]) << "index " << i;
      }
    }
    if (!spec.error_feedback) {
      for (float r : ef.residual()) ASSERT_EQ(r, 0.0f) << "ef state touched without 'ef'";
    }
  }
}

TEST(UpdateCodec, TopKChainSendsExactlyTheKLargestPerTensor) {
  const Model m = MakeModel(SmallLayout(), 2);
  const ChainSpec spec = Chain("topk:0.01|fp16");
  auto enc = EncodeUpdate(spec, m.Views(), nullptr, 0);
  ASSERT_TRUE(enc.ok());
  RecordingSink sink(m.Total());
  ASSERT_TRUE(DecodeUpdate(*enc, m.layout, &sink).ok());
  const auto kept = sink.KeptPerTensor(m.layout);
  for (size_t t = 0; t < m.layout.size(); ++t) {
    EXPECT_EQ(kept[t], TopKIndices(m.values[t], KeptCount(0.01, m.layout[t].numel))) << t;
  }
}

TEST(UpdateCodec, GlobalTopKChainSendsTheKLargestOverall) {
  const Model m = MakeModel(SmallLayout(), 3);
  auto enc = EncodeUpdate(Chain("topk_global:57"), m.Views(), nullptr, 0);
  ASSERT_TRUE(enc.ok());
  RecordingSink sink(m.Total());
  ASSERT_TRUE(DecodeUpdate(*enc, m.layout, &sink).ok());
  std::vector<uint32_t> sent = sink.sent;
  std::sort(sent.begin(), sent.end());
  EXPECT_EQ(sent, TopKIndices(m.Flat(), 57));
}

TEST(UpdateCodec, DeterministicForASeedAndSeedDrivesRandomness) {
  const Model m = MakeModel(SmallLayout(), 4);
  for (const std::string text : {"randk:0.1|int8", "int8:sr", "fp16:sr"}) {
    const ChainSpec spec = Chain(text);
    auto a = EncodeUpdate(spec, m.Views(), nullptr, 11);
    auto b = EncodeUpdate(spec, m.Views(), nullptr, 11);
    auto c = EncodeUpdate(spec, m.Views(), nullptr, 12);
    ASSERT_TRUE(a.ok() && b.ok() && c.ok());
    EXPECT_EQ(*a, *b) << text;
    EXPECT_NE(*a, *c) << text;
  }
  auto d1 = EncodeUpdate(Chain("topk:0.1|int8"), m.Views(), nullptr, 1);
  auto d2 = EncodeUpdate(Chain("topk:0.1|int8"), m.Views(), nullptr, 2);
  EXPECT_EQ(*d1, *d2) << "deterministic chains ignore the seed";
}

TEST(UpdateCodec, StochasticRoundingThroughTheEncoderIsUnbiased) {
  const Model m = MakeModel({{"w", 256}}, 5, 1.0f);
  const ChainSpec spec = Chain("q4:sr");
  const int kDraws = 3000;
  std::vector<double> mean(256, 0.0);
  float max_abs = 0;
  for (float v : m.values[0]) max_abs = std::max(max_abs, std::fabs(v));
  for (int s = 0; s < kDraws; ++s) {
    auto enc = EncodeUpdate(spec, m.Views(), nullptr, s);
    ASSERT_TRUE(enc.ok());
    std::vector<float> d;
    ASSERT_TRUE(DecodeToDense(*enc, m.layout, &d).ok());
    for (size_t i = 0; i < d.size(); ++i) mean[i] += (double(d[i]) - m.values[0][i]) / kDraws;
  }
  const double step = max_abs / 7.0;
  double total = 0;
  for (double e : mean) {
    EXPECT_LT(std::fabs(e), 5 * 0.5 * step / std::sqrt(double(kDraws)));
    total += e;
  }
  EXPECT_LT(std::fabs(total / 256), 0.01 * step);
}

// ---- error feedback ---------------------------------------------------------------------------

TEST(UpdateCodec, ErrorFeedbackConservesMassExactly) {
  const std::vector<TensorLayout> layout = SmallLayout();
  for (const std::string text : {"topk:0.01|int8|ef", "topk:0.05|q4:b32|ef", "randk:0.2|fp16|ef",
                                 "int8:b64|ef", "topk_global:0.01|q4|ef", "q4|ef", "ef"}) {
    SCOPED_TRACE(text);
    const ChainSpec spec = Chain(text);
    ErrorFeedback ef(Model{layout, {}}.Total());
    std::vector<double> delta_sum(ef.dim(), 0.0), sent_sum(ef.dim(), 0.0);
    for (int round = 0; round < 6; ++round) {
      const Model delta = MakeModel(layout, 100 + round);
      const std::vector<float> flat = delta.Flat();
      std::vector<float> input(flat.size());
      for (size_t i = 0; i < flat.size(); ++i) input[i] = flat[i] + ef.residual()[i];
      auto enc = EncodeUpdate(spec, delta.Views(), &ef, round);
      ASSERT_TRUE(enc.ok()) << enc.status();
      std::vector<float> sent;
      ASSERT_TRUE(DecodeToDense(*enc, layout, &sent).ok());
      for (size_t i = 0; i < flat.size(); ++i) {
        // This round: what was sent plus what is kept back is exactly delta + old residual.
        ASSERT_EQ(sent[i] + ef.residual()[i], input[i]) << "round " << round << " index " << i;
        ASSERT_EQ(double(sent[i]) + double(ef.residual()[i]), double(input[i]));
        delta_sum[i] += flat[i];
        sent_sum[i] += sent[i];
      }
    }
    // Across rounds: sent + residual == sum of deltas up to the float rounding of the
    // per-round additions delta + residual (nothing is lost by compression itself).
    for (size_t i = 0; i < delta_sum.size(); ++i) {
      ASSERT_NEAR(sent_sum[i] + ef.residual()[i], delta_sum[i],
                  6 * std::numeric_limits<float>::epsilon() * (std::fabs(delta_sum[i]) + 0.05))
          << i;
    }
  }
}

TEST(UpdateCodec, ErrorFeedbackStochasticResidualIsCorrectlyRounded) {
  const Model m = MakeModel(SmallLayout(), 8);
  const std::vector<float> input = m.Flat();
  ErrorFeedback ef(m.Total());
  auto enc = EncodeUpdate(Chain("int8:sr|ef"), m.Views(), &ef, 3);
  ASSERT_TRUE(enc.ok());
  std::vector<float> sent;
  ASSERT_TRUE(DecodeToDense(*enc, m.layout, &sent).ok());
  for (size_t i = 0; i < input.size(); ++i) {
    const double exact = double(input[i]) - double(sent[i]);
    const float r = ef.residual()[i];
    ASSERT_EQ(r, static_cast<float>(exact)) << i;
  }
}

TEST(UpdateCodec, EncoderRejectsBadInputWithoutTouchingState) {
  Model m = MakeModel(SmallLayout(), 9);
  ErrorFeedback ef(m.Total());
  ef.mutable_residual()[3] = 0.5f;
  m.values[3][17] = std::numeric_limits<float>::quiet_NaN();
  auto r = EncodeUpdate(Chain("topk:0.1|int8|ef"), m.Views(), &ef, 0);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("fc.weight"), std::string::npos) << r.status();
  EXPECT_EQ(ef.residual()[3], 0.5f);
  for (size_t i = 0; i < ef.dim(); ++i) {
    if (i != 3) {
      ASSERT_EQ(ef.residual()[i], 0.0f);
    }
  }
  m.values[3][17] = std::numeric_limits<float>::infinity();
  EXPECT_FALSE(EncodeUpdate(Chain("int8"), m.Views(), nullptr, 0).ok());

  // Finite delta + finite residual that overflows.
  Model big = MakeModel({{"w", 4}}, 1);
  big.values[0][0] = 3e38f;
  ErrorFeedback ef_big(4);
  ef_big.mutable_residual()[0] = 3e38f;
  EXPECT_FALSE(EncodeUpdate(Chain("int8|ef"), big.Views(), &ef_big, 0).ok());
  EXPECT_EQ(ef_big.residual()[0], 3e38f);

  const Model ok = MakeModel(SmallLayout(), 10);
  EXPECT_EQ(EncodeUpdate(Chain("int8|ef"), ok.Views(), nullptr, 0).status().code(),
            absl::StatusCode::kInvalidArgument);
  ErrorFeedback wrong(5);
  EXPECT_EQ(EncodeUpdate(Chain("int8|ef"), ok.Views(), &wrong, 0).status().code(),
            absl::StatusCode::kInvalidArgument);
  // Without 'ef' the state is ignored, whatever its size.
  EXPECT_TRUE(EncodeUpdate(Chain("int8"), ok.Views(), &wrong, 0).ok());

  ChainSpec bad;
  bad.sparsifier = Sparsifier::kTopK;
  bad.fraction = 7;
  EXPECT_EQ(EncodeUpdate(bad, ok.Views(), nullptr, 0).status().code(),
            absl::StatusCode::kInvalidArgument);
}

// ---- sizes -------------------------------------------------------------------------------------

TEST(UpdateCodec, EncodedSizesMatchTheFormula) {
  const Model m = MakeModel(SmallLayout(), 12);
  for (const std::string& text : AllChains()) {
    SCOPED_TRACE(text);
    const ChainSpec spec = Chain(text);
    ErrorFeedback ef(m.Total());
    auto enc = EncodeUpdate(spec, m.Views(), &ef, 1);
    ASSERT_TRUE(enc.ok());
    RecordingSink sink(m.Total());
    ASSERT_TRUE(DecodeUpdate(*enc, m.layout, &sink).ok());
    const auto kept = sink.KeptPerTensor(m.layout);
    if (spec.sparsifier == Sparsifier::kNone) {
      EXPECT_EQ(enc->size(), EncodedSizeBytes(spec, m.layout, {}));
      EXPECT_EQ(enc->size(), MaxEncodedSizeBytes(spec, m.layout));
    }
    EXPECT_EQ(enc->size(), EncodedSizeBytes(spec, m.layout, kept));
    EXPECT_LE(enc->size(), MaxEncodedSizeBytes(spec, m.layout));
  }
}

TEST(UpdateCodec, SizeFormulaClosedForm) {
  // "int8:b256" over {"a": 1000, "b": 3}:
  //   header 4 + 1 + 1 + len("int8:b256") + 1 = 16
  //   a: 1 + 1 + 2 (numel 1000) + 1 (codec) + 2 (block 256) + 1 (index enc)
  //      + 4 * ceil(1000/256) + 1000 = 8 + 16 + 1000
  //   b: 1 + 1 + 1 + 1 + 2 + 1 + 4 + 3 = 14
  const Model m = MakeModel({{"a", 1000}, {"b", 3}}, 13);
  auto enc = EncodeUpdate(Chain("int8:b256"), m.Views(), nullptr, 0);
  ASSERT_TRUE(enc.ok());
  EXPECT_EQ(enc->size(), 16u + 8 + 16 + 1000 + 14);
  // "q4": nibbles: a: 1+1+2+1+1(block 0)+1 + 4 + 500; b: 1+1+1+1+1+1 + 4 + 2.
  enc = EncodeUpdate(Chain("q4"), m.Views(), nullptr, 0);
  ASSERT_TRUE(enc.ok());
  EXPECT_EQ(enc->size(), (4u + 1 + 1 + 2 + 1) + (7 + 4 + 500) + (6 + 4 + 2));
  // "dense" is 4 bytes per value plus framing; "fp16" is 2.
  enc = EncodeUpdate(Chain("dense"), m.Views(), nullptr, 0);
  EXPECT_EQ(enc->size(), (4u + 1 + 1 + 5 + 1) + (6 + 4000) + (5 + 12));
  enc = EncodeUpdate(Chain("fp16"), m.Views(), nullptr, 0);
  EXPECT_EQ(enc->size(), (4u + 1 + 1 + 4 + 1) + (6 + 2000) + (5 + 6));
}

TEST(UpdateCodec, IndexEncodingIsTheSmallest) {
  const uint64_t numel = 10000;
  // Evenly spread, small gaps: bit-packing wins.
  std::vector<uint32_t> even;
  for (uint32_t i = 0; i < numel; i += 37) even.push_back(i);
  EXPECT_EQ(ChooseIndexEncoding(even, numel), IndexEncoding::kBitpackedDelta);
  // Clustered with one huge gap: varint wins.
  std::vector<uint32_t> clustered;
  for (uint32_t i = 0; i < 100; ++i) clustered.push_back(i * 2);
  clustered.push_back(9999);
  EXPECT_EQ(ChooseIndexEncoding(clustered, numel), IndexEncoding::kVarintDelta);
  // Half of all entries: bitmap wins.
  std::vector<uint32_t> half;
  for (uint32_t i = 0; i < numel; i += 2) half.push_back(i);
  EXPECT_EQ(ChooseIndexEncoding(half, numel), IndexEncoding::kBitmap);
  std::vector<uint32_t> all(numel);
  for (uint32_t i = 0; i < numel; ++i) all[i] = i;
  EXPECT_EQ(ChooseIndexEncoding(all, numel), IndexEncoding::kDense);
  EXPECT_EQ(IndexSectionBytes(IndexEncoding::kBitmap, half, numel), 2u + 1250);
  EXPECT_EQ(IndexSectionBytes(IndexEncoding::kVarintDelta, clustered, numel),
            1u + 1 + (1 + 99 + 2));  // varint(nnz) + varint(byte_len) + deltas
  // Each of the three sparse encodings round-trips through the decoder.
  for (const auto* idx : {&even, &clustered, &half}) {
    std::vector<float> x(numel, 0.0f);
    for (uint32_t i : *idx) x[i] = 1.0f + static_cast<float>(i);
    const std::vector<TensorLayout> layout = {{"t", numel}};
    ChainSpec spec;
    spec.sparsifier = Sparsifier::kTopKGlobal;
    spec.global_k = idx->size();
    auto enc = EncodeUpdate(spec, {{"t", x}}, nullptr, 0);
    ASSERT_TRUE(enc.ok());
    std::vector<float> back;
    ASSERT_TRUE(DecodeToDense(*enc, layout, &back).ok());
    EXPECT_EQ(back, x);
    auto summary = ValidateUpdate(*enc, layout);
    ASSERT_TRUE(summary.ok());
    EXPECT_EQ(summary->index_encoding_per_tensor[0], ChooseIndexEncoding(*idx, numel));
  }
}

// ---- streaming sinks ---------------------------------------------------------------------------

TEST(UpdateCodec, WeightedAddSinkAccumulatesWithoutADenseCopy) {
  const Model a = MakeModel(SmallLayout(), 20), b = MakeModel(SmallLayout(), 21);
  const ChainSpec spec = Chain("topk:0.1|int8");
  auto ea = EncodeUpdate(spec, a.Views(), nullptr, 0);
  auto eb = EncodeUpdate(spec, b.Views(), nullptr, 0);
  ASSERT_TRUE(ea.ok() && eb.ok());
  std::vector<double> sum(a.Total(), 0.0);
  WeightedAddSink sa(absl::MakeSpan(sum), 2.0), sb(absl::MakeSpan(sum), 3.0);
  ASSERT_TRUE(DecodeUpdate(*ea, a.layout, &sa).ok());
  ASSERT_TRUE(DecodeUpdate(*eb, b.layout, &sb).ok());
  std::vector<float> da, db;
  ASSERT_TRUE(DecodeToDense(*ea, a.layout, &da).ok());
  ASSERT_TRUE(DecodeToDense(*eb, b.layout, &db).ok());
  for (size_t i = 0; i < sum.size(); ++i) {
    ASSERT_EQ(sum[i], 2.0 * da[i] + 3.0 * db[i]) << i;
  }
}

TEST(UpdateCodec, LargeTensorsAreEmittedInBlocks) {
  const Model m = MakeModel({{"big", 3 * UpdateSink::kDecodeBlock + 5}}, 22);
  for (const std::string text : {"q4:b100", "randk:0.9|int8"}) {
    auto enc = EncodeUpdate(Chain(text), m.Views(), nullptr, 0);
    ASSERT_TRUE(enc.ok());
    RecordingSink sink(m.Total());
    ASSERT_TRUE(DecodeUpdate(*enc, m.layout, &sink).ok());
    EXPECT_GE(sink.calls, 3u) << text;
    EXPECT_LE(sink.max_block, UpdateSink::kDecodeBlock);
    std::vector<float> dense;
    ASSERT_TRUE(DecodeToDense(*enc, m.layout, &dense).ok());
    EXPECT_EQ(dense, sink.dense);
  }
}

// ---- malformed input ---------------------------------------------------------------------------

TEST(UpdateDecodeRejects, TruncationAtEveryByte) {
  const Model m = MakeModel({{"a", 40}, {"b", 9}, {"c", 30}}, 30);
  for (const std::string text : {"dense", "fp16", "int8:b8", "q4", "topk:0.2|int8", "randk:0.5|q4",
                                 "topk_global:0.9|fp16", "topk:0.1"}) {
    auto enc = EncodeUpdate(Chain(text), m.Views(), nullptr, 0);
    ASSERT_TRUE(enc.ok());
    ASSERT_TRUE(ValidateUpdate(*enc, m.layout).ok());
    for (size_t len = 0; len < enc->size(); ++len) {
      RecordingSink sink(m.Total());
      const absl::Status s = DecodeUpdate(enc->substr(0, len), m.layout, &sink);
      ASSERT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << text << " prefix " << len;
      ASSERT_EQ(sink.calls + sink.begin_calls, 0u);
    }
    ExpectInvalid(*enc + std::string(1, '\0'), m.layout, "trailing");
  }
}

TEST(UpdateDecodeRejects, HeaderProblems) {
  const Model m = MakeModel(kOne10, 31);
  const std::string good = *EncodeUpdate(Chain("int8"), m.Views(), nullptr, 0);
  std::string bad = good;
  bad[0] = 'X';
  ExpectInvalid(bad, kOne10, "magic");
  bad = good;
  bad[4] = 2;
  ExpectInvalid(bad, kOne10, "format version");
  ExpectInvalid(Bytes().Header("int9", 1).s, kOne10, "bad codec chain");
  ExpectInvalid(Bytes().Header("ef|int8", 1).s, kOne10, "canonical");
  ExpectInvalid(good, kOne10, "differs from the expected", {Chain("q4")});
  ExpectInvalid(good, {{"w", 10}, {"v", 2}}, "has 1 tensors, expected 2");
  ExpectInvalid(good, {{"v", 10}}, "name 'w' does not match");
  ExpectInvalid(good, {{"w", 11}}, "numel 10 does not match the expected 11");
  // Non-canonical varint (tensor count 1 written as 0x81 0x00).
  ExpectInvalid(Bytes().Raw("EFLU").U8(1).Str("int8").U8(0x81).U8(0x00).s, kOne10, "tensor count");
}

TEST(UpdateDecodeRejects, CodecProblems) {
  const auto tensor = [](Bytes& b) -> Bytes& { return b.Str("w").Var(10); };
  Bytes b1;
  tensor(b1.Header("int8", 1)).U8(4);
  ExpectInvalid(b1.s, kOne10, "unknown codec id 4");
  Bytes b2;
  tensor(b2.Header("int8", 1)).U8(255);
  ExpectInvalid(b2.s, kOne10, "unknown codec id 255");
  Bytes b3;
  tensor(b3.Header("int8", 1)).U8(1);  // fp16 under an int8 chain
  ExpectInvalid(b3.s, kOne10, "does not match the chain");
  Bytes b4;
  tensor(b4.Header("int8:b4", 1)).U8(2).Var(8);
  ExpectInvalid(b4.s, kOne10, "block size 8 does not match");
  Bytes b5;
  tensor(b5.Header("int8", 1)).U8(2).Var(0).U8(7);
  ExpectInvalid(b5.s, kOne10, "unknown index encoding 7");
  Bytes b6;
  tensor(b6.Header("int8", 1)).U8(2).Var(0).U8(1);
  ExpectInvalid(b6.s, kOne10, "no sparsifier");
}

// A valid int8 tensor "w" (10 values, per-tensor scale) with a given scale and levels.
std::string DenseInt8(float scale, const std::vector<int8_t>& q,
                      const std::string& chain = "int8") {
  Bytes b;
  b.Header(chain, 1).Str("w").Var(10).U8(2).Var(0).U8(0).F32(scale);
  for (int8_t v : q) b.U8(static_cast<uint8_t>(v));
  return b.s;
}

TEST(UpdateDecodeRejects, BadScalesAndLevels) {
  const std::vector<int8_t> levels = {0, 1, -1, 127, -127, 5, 6, 7, 8, 9};
  std::vector<float> out;
  ASSERT_TRUE(DecodeToDense(DenseInt8(0.5f, levels), kOne10, &out).ok());
  EXPECT_EQ(out[3], 63.5f);
  for (float s : {0.0f, -0.0f, -1.0f, std::numeric_limits<float>::quiet_NaN(),
                  std::numeric_limits<float>::infinity(), 1e-40f, 1e38f}) {
    ExpectInvalid(DenseInt8(s, levels), kOne10, "scale 0");
  }
  std::vector<int8_t> bad = levels;
  bad[4] = -128;
  ExpectInvalid(DenseInt8(0.5f, bad), kOne10, "-128");

  // q4: level -8 and a non-zero padding nibble.
  const std::vector<TensorLayout> one3 = {{"w", 3}};
  const auto q4 = [](uint8_t b0, uint8_t b1) {
    return Bytes().Header("q4", 1).Str("w").Var(3).U8(3).Var(0).U8(0).F32(1.0f).U8(b0).U8(b1).s;
  };
  ASSERT_TRUE(DecodeToDense(q4(0x71, 0x09), one3, &out).ok());
  EXPECT_EQ(out, (std::vector<float>{1.0f, 7.0f, -7.0f}));
  ExpectInvalid(q4(0x81, 0x01), one3, "-8");
  ExpectInvalid(q4(0x11, 0x08), one3, "-8");
  ExpectInvalid(q4(0x11, 0x11), one3, "padding nibble");

  // fp32 NaN / Inf and fp16 Inf / NaN values.
  const std::vector<TensorLayout> one2 = {{"w", 2}};
  ExpectInvalid(Bytes().Header("dense", 1).Str("w").Var(2).U8(0).U8(0).F32(1).F32(INFINITY).s, one2,
                "non-finite fp32");
  ExpectInvalid(Bytes().Header("dense", 1).Str("w").Var(2).U8(0).U8(0).F32(NAN).F32(1).s, one2,
                "non-finite fp32");
  ExpectInvalid(
      Bytes().Header("fp16", 1).Str("w").Var(2).U8(1).U8(0).U8(0).U8(0x3C).U8(0).U8(0x7C).s, one2,
      "non-finite fp16");
  ExpectInvalid(Bytes().Header("fp16", 1).Str("w").Var(2).U8(1).U8(0).U8(1).U8(0xFE).U8(0).U8(0).s,
                one2, "non-finite fp16");
}

// topk:0.2 over 10 values keeps 2: a varint-delta tensor with the given raw index section.
std::string SparseFp32(uint8_t ienc, const std::string& index_section, uint64_t nnz = 2,
                       const std::string& chain = "topk:0.2") {
  Bytes b;
  b.Header(chain, 1).Str("w").Var(10).U8(0).U8(ienc).Var(nnz).Raw(index_section);
  for (uint64_t i = 0; i < nnz; ++i) b.F32(1.0f + i);
  return b.s;
}

TEST(UpdateDecodeRejects, BadIndices) {
  std::vector<float> out;
  // Valid baselines for each encoding: indices {3, 7}.
  const std::string varint_ok = Bytes().Var(2).U8(3).U8(4).s;
  const std::string packed_ok = Bytes().U8(3).U8(0x23).s;  // width 3: 3 | 4 << 3 = 0x23
  const std::string bitmap_ok = Bytes().U8(0x88).U8(0x00).s;
  for (const auto& [ienc, section] : std::vector<std::pair<uint8_t, std::string>>{
           {1, varint_ok}, {2, packed_ok}, {3, bitmap_ok}}) {
    ASSERT_TRUE(DecodeToDense(SparseFp32(ienc, section), kOne10, &out).ok()) << int(ienc);
    EXPECT_EQ(out, (std::vector<float>{0, 0, 0, 1, 0, 0, 0, 2, 0, 0})) << int(ienc);
  }
  // Out of range.
  ExpectInvalid(SparseFp32(1, Bytes().Var(2).U8(3).U8(7).s), kOne10, "index 10 out of range");
  ExpectInvalid(SparseFp32(1, Bytes().Var(2).U8(10).U8(1).s), kOne10, "index 10 out of range");
  ExpectInvalid(SparseFp32(1, Bytes().Var(6).Var(0xFFFFFFFFull).U8(1).s), kOne10, "out of range");
  ExpectInvalid(SparseFp32(2, Bytes().U8(4).U8(0x73).s), kOne10, "out of range");     // 3, 7+3
  ExpectInvalid(SparseFp32(3, Bytes().U8(0x08).U8(0x04).s), kOne10, "out of range");  // bit 10
  // Not increasing.
  ExpectInvalid(SparseFp32(1, Bytes().Var(2).U8(3).U8(0).s), kOne10, "not increasing");
  ExpectInvalid(SparseFp32(2, Bytes().U8(3).U8(0x03).s), kOne10, "not increasing");
  // Count mismatches: nnz vs chain, varint byte length, bitmap popcount.
  ExpectInvalid(SparseFp32(1, Bytes().Var(3).U8(3).U8(4).U8(1).s, 3), kOne10,
                "count mismatch: 3 entries, the chain keeps 2");
  ExpectInvalid(SparseFp32(1, Bytes().Var(3).U8(3).U8(4).U8(1).s), kOne10, "count mismatch");
  ExpectInvalid(SparseFp32(1, Bytes().Var(1).U8(3).s), kOne10, "count does not match");
  ExpectInvalid(SparseFp32(3, Bytes().U8(0x89).U8(0x00).s), kOne10, "count mismatch: bitmap");
  ExpectInvalid(SparseFp32(1, Bytes().Var(2).U8(3).U8(4).s, 11, "topk_global:11"), kOne10,
                "count mismatch: 11 entries for 10 values");
  // topk_global: the total must match k.
  ExpectInvalid(SparseFp32(1, varint_ok, 2, "topk_global:3"), kOne10,
                "count mismatch: 2 entries in total, the chain keeps 3");
  // Unsupported bit widths and non-zero padding bits.
  ExpectInvalid(SparseFp32(2, Bytes().U8(0).s), kOne10, "unsupported index bit width 0");
  ExpectInvalid(SparseFp32(2, Bytes().U8(33).s), kOne10, "unsupported index bit width 33");
  ExpectInvalid(SparseFp32(2, Bytes().U8(3).U8(0x63).s), kOne10, "padding bits");
  // Non-canonical varint inside the index section.
  ExpectInvalid(SparseFp32(1, Bytes().Var(3).U8(0x83).U8(0x00).U8(4).s), kOne10, "non-canonical");
  // Dense encoding in a topk chain that keeps fewer than numel.
  ExpectInvalid(Bytes().Header("topk:0.2", 1).Str("w").Var(10).U8(0).U8(0).s, kOne10,
                "count mismatch");
  // Unknown index encoding under a sparsifier.
  ExpectInvalid(SparseFp32(4, varint_ok), kOne10, "unknown index encoding 4");
}

TEST(UpdateDecodeRejects, RandomCorruptionNeverCrashesNorLeaks) {
  // Every single-byte corruption of small valid encodings is either rejected (before the sink
  // sees anything) or decodes to finite values within the layout.
  const Model m = MakeModel({{"a", 33}, {"b", 20}}, 40);
  for (const std::string text : {"int8:b8", "topk:0.3|q4", "randk:0.4|fp16", "topk_global:9"}) {
    const std::string good = *EncodeUpdate(Chain(text), m.Views(), nullptr, 0);
    for (size_t pos = 0; pos < good.size(); ++pos) {
      for (int delta : {1, 0x80, 0xFF}) {
        std::string bad = good;
        bad[pos] = static_cast<char>(static_cast<uint8_t>(bad[pos]) + delta);
        RecordingSink sink(m.Total());
        const absl::Status s = DecodeUpdate(bad, m.layout, &sink);
        if (!s.ok()) {
          ASSERT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
          ASSERT_EQ(sink.calls + sink.begin_calls, 0u);
        }
      }
    }
  }
}

// ---- fuzz corpus -------------------------------------------------------------------------------

TEST(FuzzCorpus, SeedsAreValidEncodings) {
  const std::vector<std::string> chains = FuzzCorpusChains();
  int found = 0;
  for (size_t i = 0; i < chains.size(); ++i) {
    std::string name = chains[i];
    std::replace(name.begin(), name.end(), '|', '_');
    std::replace(name.begin(), name.end(), ':', '-');
    const std::string path = std::string(EDGEFL_COMPRESSION_SOURCE_DIR) + "/fuzz_corpus/seed_" +
                             std::to_string(i) + "_" + name + ".bin";
    std::ifstream in(path, std::ios::binary);
    ASSERT_TRUE(in.good()) << "missing " << path << " (run fuzz_corpus_gen)";
    std::stringstream ss;
    ss << in.rdbuf();
    auto summary = ValidateUpdate(ss.str(), FuzzLayout(), {Chain(chains[i])});
    EXPECT_TRUE(summary.ok()) << path << ": " << summary.status()
                              << " (format changed? regenerate with fuzz_corpus_gen)";
    EXPECT_LT(ss.str().size(), 20000u);
    ++found;
  }
  EXPECT_EQ(found, static_cast<int>(chains.size()));
}

}  // namespace
}  // namespace edgefl::compression
