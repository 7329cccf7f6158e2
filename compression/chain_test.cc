#include "compression/chain.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace edgefl::compression {
namespace {

TEST(ChainParse, IssueExamples) {
  auto c = ParseChain("topk:0.01|int8|ef");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->sparsifier, Sparsifier::kTopK);
  EXPECT_EQ(c->fraction, 0.01);
  EXPECT_EQ(c->quantizer, Quantizer::kInt8);
  EXPECT_EQ(c->block_size, 0u);
  EXPECT_FALSE(c->stochastic);
  EXPECT_TRUE(c->error_feedback);

  c = ParseChain("int8");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->sparsifier, Sparsifier::kNone);
  EXPECT_EQ(c->quantizer, Quantizer::kInt8);

  c = ParseChain("fp16");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->quantizer, Quantizer::kFp16);

  c = ParseChain("randk:0.1");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->sparsifier, Sparsifier::kRandK);
  EXPECT_EQ(c->fraction, 0.1);
  EXPECT_EQ(c->quantizer, Quantizer::kFp32);

  c = ParseChain("q4");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->quantizer, Quantizer::kQ4);

  c = ParseChain("dense");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(*c, ChainSpec{});
}

TEST(ChainParse, OptionsInAnyOrder) {
  auto a = ParseChain("int8:b256:sr");
  auto b = ParseChain("int8:sr:b256");
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(*a, *b);
  EXPECT_EQ(a->block_size, 256u);
  EXPECT_TRUE(a->stochastic);
  EXPECT_EQ(b->ToString(), "int8:b256:sr");

  auto c = ParseChain(" ef | q4:b64 | topk:0.05 ");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->ToString(), "topk:0.05|q4:b64|ef");
}

TEST(ChainParse, TopKGlobalKOrFraction) {
  auto k = ParseChain("topk_global:1000|fp16");
  ASSERT_TRUE(k.ok());
  EXPECT_EQ(k->sparsifier, Sparsifier::kTopKGlobal);
  EXPECT_EQ(k->global_k, 1000u);
  EXPECT_EQ(k->fraction, 0.0);

  auto f = ParseChain("topk_global:0.05");
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(f->global_k, 0u);
  EXPECT_EQ(f->fraction, 0.05);

  // "1" is k = 1, "1.0" is the whole model; ToString keeps them apart.
  auto one = ParseChain("topk_global:1");
  auto all = ParseChain("topk_global:1.0");
  ASSERT_TRUE(one.ok() && all.ok());
  EXPECT_EQ(one->global_k, 1u);
  EXPECT_EQ(all->fraction, 1.0);
  EXPECT_EQ(all->ToString(), "topk_global:1.0");
  EXPECT_EQ(*ParseChain(all->ToString()), *all);
}

TEST(ChainParse, ToStringRoundTrips) {
  const std::vector<std::string> canonical = {
      "dense",
      "fp16",
      "fp16:sr",
      "int8",
      "int8:b256",
      "int8:sr",
      "int8:b1:sr",
      "q4",
      "q4:b16777216",
      "ef",
      "int8|ef",
      "topk:0.01|int8|ef",
      "topk:1",
      "randk:0.1",
      "randk:0.333|q4:sr",
      "topk_global:5|fp16|ef",
      "topk_global:0.001|q4:b32:sr|ef",
      "topk:1e-05",
  };
  for (const std::string& s : canonical) {
    auto c = ParseChain(s);
    ASSERT_TRUE(c.ok()) << s << ": " << c.status();
    EXPECT_EQ(c->ToString(), s);
    auto again = ParseChain(c->ToString());
    ASSERT_TRUE(again.ok());
    EXPECT_EQ(*again, *c) << s;
  }
  // Non-canonical spellings map to the canonical one.
  EXPECT_EQ(ParseChain("fp32")->ToString(), "dense");
  EXPECT_EQ(ParseChain("fp32|ef")->ToString(), "ef");
  EXPECT_EQ(ParseChain("int8|topk:0.010")->ToString(), "topk:0.01|int8");
  // Awkward fractions survive the round trip exactly.
  for (double f : {0.1, 1.0 / 3.0, 0.0123456789012345, 1e-9}) {
    ChainSpec spec;
    spec.sparsifier = Sparsifier::kTopK;
    spec.fraction = f;
    auto back = ParseChain(spec.ToString());
    ASSERT_TRUE(back.ok()) << spec.ToString();
    EXPECT_EQ(back->fraction, f);
  }
}

TEST(ChainParse, RejectsBadStagesNamingThem) {
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"", "empty"},
      {"   ", "empty"},
      {"topk", "topk"},
      {"topk:0", "topk:0"},
      {"topk:1.5", "topk:1.5"},
      {"topk:-0.1", "topk:-0.1"},
      {"topk:nan", "topk:nan"},
      {"topk:inf", "topk:inf"},
      {"topk:abc", "topk:abc"},
      {"topk:0.1:0.2", "topk:0.1:0.2"},
      {"randk:", "randk:"},
      {"topk_global:0", "topk_global:0"},
      {"topk_global:2.5", "topk_global:2.5"},
      {"int8:b0", "int8:b0"},
      {"int8:b16777217", "int8:b16777217"},
      {"int8:bx", "int8:bx"},
      {"int8:b64:b64", "int8:b64:b64"},
      {"int8:sr:sr", "int8:sr:sr"},
      {"int8:fast", "int8:fast"},
      {"fp32:sr", "fp32:sr"},
      {"fp16:b64", "fp16:b64"},
      {"ef:1", "ef:1"},
      {"foo", "foo"},
      {"INT8", "INT8"},
      {"topk:0.1|randk:0.1", "randk:0.1"},
      {"int8|q4", "q4"},
      {"ef|ef", "ef"},
      {"dense|int8", "dense"},
      {"int8||ef", "empty stage"},
  };
  for (const auto& [text, needle] : bad) {
    auto c = ParseChain(text);
    ASSERT_FALSE(c.ok()) << "accepted '" << text << "'";
    EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument) << text;
    EXPECT_NE(std::string(c.status().message()).find(needle), std::string::npos)
        << text << " -> " << c.status();
  }
}

TEST(ChainValidate, RejectsInconsistentSpecs) {
  ChainSpec ok;
  EXPECT_TRUE(ValidateChain(ok).ok());
  ChainSpec s = ok;
  s.sparsifier = Sparsifier::kTopK;
  s.fraction = 0;
  EXPECT_EQ(ValidateChain(s).code(), absl::StatusCode::kInvalidArgument);
  s.fraction = 2;
  EXPECT_FALSE(ValidateChain(s).ok());
  s.fraction = 0.5;
  EXPECT_TRUE(ValidateChain(s).ok());
  s.global_k = 3;
  EXPECT_FALSE(ValidateChain(s).ok());
  s = ok;
  s.block_size = 64;  // fp32 with a block size
  EXPECT_FALSE(ValidateChain(s).ok());
  s = ok;
  s.stochastic = true;  // fp32 stochastic
  EXPECT_FALSE(ValidateChain(s).ok());
  s = ok;
  s.quantizer = static_cast<Quantizer>(9);
  EXPECT_FALSE(ValidateChain(s).ok());
}

TEST(KeptCount, RoundsAndClamps) {
  EXPECT_EQ(KeptCount(0.01, 0), 0u);
  EXPECT_EQ(KeptCount(0.01, 1), 1u);  // at least one
  EXPECT_EQ(KeptCount(0.01, 100), 1u);
  EXPECT_EQ(KeptCount(0.01, 149), 1u);  // 1.49
  EXPECT_EQ(KeptCount(0.01, 150), 2u);  // 1.5 rounds half away from zero
  EXPECT_EQ(KeptCount(0.01, 1663370), 16634u);
  EXPECT_EQ(KeptCount(1.0, 17), 17u);
  EXPECT_EQ(KeptCount(0.999999, 10), 10u);

  ChainSpec g;
  g.sparsifier = Sparsifier::kTopKGlobal;
  g.global_k = 50;
  EXPECT_EQ(GlobalKeptCount(g, 1000), 50u);
  EXPECT_EQ(GlobalKeptCount(g, 20), 20u);
  g.global_k = 0;
  g.fraction = 0.1;
  EXPECT_EQ(GlobalKeptCount(g, 1000), 100u);
  EXPECT_EQ(GlobalKeptCount(ChainSpec{}, 1000), 0u);
}

}  // namespace
}  // namespace edgefl::compression
