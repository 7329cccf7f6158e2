#include "students/int8_model.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>

#include "absl/strings/str_cat.h"

namespace edgefl::students {
namespace {

int64_t ExpectedWeights(const Int8Layer& l) {
  switch (l.kind) {
    case LayerKind::kConv:
      return int64_t{l.out.c} * l.in.c * l.kernel * l.kernel;
    case LayerKind::kDepthwiseConv:
      return int64_t{l.out.c} * l.kernel * l.kernel;
    case LayerKind::kDense:
      return int64_t{l.out.c} * l.in.bytes();
    case LayerKind::kMaxPool:
      return 0;
  }
  return 0;
}

// Number of int8 input values feeding one output of channel c, and their weights.
int64_t FanIn(const Int8Layer& l) {
  switch (l.kind) {
    case LayerKind::kConv:
      return int64_t{l.in.c} * l.kernel * l.kernel;
    case LayerKind::kDepthwiseConv:
      return int64_t{l.kernel} * l.kernel;
    case LayerKind::kDense:
      return l.in.bytes();
    case LayerKind::kMaxPool:
      return 0;
  }
  return 0;
}

bool InInt8(int32_t v) { return v >= -128 && v <= 127; }

}  // namespace

const char* LayerKindName(LayerKind kind) {
  switch (kind) {
    case LayerKind::kConv:
      return "conv";
    case LayerKind::kDepthwiseConv:
      return "dwconv";
    case LayerKind::kMaxPool:
      return "maxpool";
    case LayerKind::kDense:
      return "dense";
  }
  return "?";
}

absl::StatusOr<TensorShape> LayerOutputShape(LayerKind kind, const TensorShape& in,
                                             int out_channels, int kernel, int pad) {
  if (in.h < 1 || in.w < 1 || in.c < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("empty input ", in.h, "x", in.w, "x", in.c, " to a ", LayerKindName(kind)));
  }
  switch (kind) {
    case LayerKind::kConv:
    case LayerKind::kDepthwiseConv: {
      if (kernel < 1 || pad < 0 || pad >= kernel) {
        return absl::InvalidArgumentError(
            absl::StrCat(LayerKindName(kind), ": bad kernel ", kernel, " / pad ", pad));
      }
      const TensorShape out{in.h + 2 * pad - kernel + 1, in.w + 2 * pad - kernel + 1,
                            kind == LayerKind::kConv ? out_channels : in.c};
      if (out.h < 1 || out.w < 1 || out.c < 1) {
        return absl::InvalidArgumentError(absl::StrCat(LayerKindName(kind), " ", kernel, "x",
                                                       kernel, " does not fit a ", in.h, "x", in.w,
                                                       " input"));
      }
      return out;
    }
    case LayerKind::kMaxPool:
      if (in.h < 2 || in.w < 2) {
        return absl::InvalidArgumentError(
            absl::StrCat("maxpool 2x2 does not fit a ", in.h, "x", in.w, " input"));
      }
      return TensorShape{in.h / 2, in.w / 2, in.c};
    case LayerKind::kDense:
      if (out_channels < 1) return absl::InvalidArgumentError("dense layer without outputs");
      return TensorShape{1, 1, out_channels};
  }
  return absl::InvalidArgumentError("unknown layer kind");
}

absl::Status QuantizeMultiplier(double real, int32_t* multiplier, int32_t* shift) {
  if (!std::isfinite(real) || real < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("requantization factor ", real, " is not a finite non-negative number"));
  }
  if (real < std::ldexp(1.0, -32)) {
    *multiplier = 0;
    *shift = 0;
    return absl::OkStatus();
  }
  int exponent = 0;
  const double fraction = std::frexp(real, &exponent);  // real = fraction * 2^exponent
  int64_t m = std::llround(fraction * static_cast<double>(int64_t{1} << 31));
  if (m == (int64_t{1} << 31)) {
    m /= 2;
    ++exponent;
  }
  if (exponent > 30) {
    return absl::InvalidArgumentError(
        absl::StrCat("requantization factor ", real, " is too large (>= 2^30)"));
  }
  if (exponent < -31) {  // rounds to a factor below 2^-32 after all
    *multiplier = 0;
    *shift = 0;
    return absl::OkStatus();
  }
  *multiplier = static_cast<int32_t>(m);
  *shift = exponent;
  return absl::OkStatus();
}

absl::Status ValidateInt8Model(const Int8Model& model) {
  if (model.layers.empty()) return absl::InvalidArgumentError("int8 model without layers");
  if (!InInt8(model.input_zero_point)) {
    return absl::InvalidArgumentError("input zero point out of int8 range");
  }
  TensorShape cur = model.input;
  for (size_t i = 0; i < model.layers.size(); ++i) {
    const Int8Layer& l = model.layers[i];
    const std::string where = absl::StrCat("layer ", i, " (", LayerKindName(l.kind), ")");
    if (!(l.in == cur)) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": input ", l.in.h, "x", l.in.w, "x",
                                                     l.in.c, " does not follow ", cur.h, "x", cur.w,
                                                     "x", cur.c));
    }
    auto out = LayerOutputShape(l.kind, l.in, l.out.c, l.kernel, l.pad);
    if (!out.ok())
      return absl::InvalidArgumentError(absl::StrCat(where, ": ", out.status().message()));
    if (!(*out == l.out))
      return absl::InvalidArgumentError(absl::StrCat(where, ": wrong output shape"));
    if (static_cast<int64_t>(l.weights.size()) != ExpectedWeights(l)) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": ", l.weights.size(), " weights, expected ", ExpectedWeights(l)));
    }
    if (!InInt8(l.input_zero_point) || !InInt8(l.output_zero_point) || !InInt8(l.act_min) ||
        !InInt8(l.act_max) || l.act_min > l.act_max) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": zero point or clamp out of range"));
    }
    if (l.kind != LayerKind::kMaxPool) {
      const size_t n = static_cast<size_t>(l.out.c);
      if (l.bias.size() != n || l.multiplier.size() != n || l.shift.size() != n) {
        return absl::InvalidArgumentError(
            absl::StrCat(where, ": per-channel arrays must have ", n, " entries"));
      }
      const int64_t fan_in = FanIn(l);
      for (size_t c = 0; c < n; ++c) {
        const int32_t m = l.multiplier[c];
        if (m != 0 && m < (int32_t{1} << 30)) {
          return absl::InvalidArgumentError(
              absl::StrCat(where, ": channel ", c, " multiplier ", m, " not in [2^30, 2^31)"));
        }
        if (l.shift[c] < -31 || l.shift[c] > 30) {
          return absl::InvalidArgumentError(
              absl::StrCat(where, ": channel ", c, " shift ", l.shift[c], " not in [-31, 30]"));
        }
        int64_t bound = std::llabs(static_cast<long long>(l.bias[c]));
        const int64_t begin = static_cast<int64_t>(c) * fan_in;
        for (int64_t j = 0; j < fan_in; ++j) bound += 255 * std::abs(int{l.weights[begin + j]});
        if (bound >= (int64_t{1} << 31)) {
          return absl::InvalidArgumentError(
              absl::StrCat(where, ": channel ", c, " could overflow its int32 accumulator"));
        }
      }
    } else if (l.input_zero_point != l.output_zero_point) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": pooling changes the zero point"));
    }
    cur = l.out;
  }
  if (cur.h != 1 || cur.w != 1) {
    return absl::InvalidArgumentError("the last layer must be dense (1 x 1 x classes)");
  }
  return absl::OkStatus();
}

int64_t LayerScratchBytes(LayerKind kind, const TensorShape& in, int kernel) {
  return kind == LayerKind::kConv ? int64_t{2} * kernel * kernel * in.c : 0;
}

ArenaPlan PlanArena(const std::vector<TensorShape>& layer_outputs,
                    const std::vector<int64_t>& scratch_bytes) {
  ArenaPlan plan;
  const int64_t layers = static_cast<int64_t>(layer_outputs.size());
  const int64_t intermediate = layers > 0 ? layers - 1 : 0;
  // Arena bytes of tensor t (the output of layer t), 0 for the caller's input / logits.
  auto size = [&](int64_t t) { return t >= 0 && t < intermediate ? layer_outputs[t].bytes() : 0; };
  auto even_up = [](int64_t b) { return (b + 1) / 2 * 2; };
  for (int64_t i = 0; i < layers; ++i) {
    // Layer i reads tensor i - 1 and writes tensor i; the even one of them sits low.
    const int64_t low = i % 2 == 0 ? size(i) : size(i - 1);
    const int64_t high = i % 2 == 0 ? size(i - 1) : size(i);
    const int64_t scratch = i < static_cast<int64_t>(scratch_bytes.size()) ? scratch_bytes[i] : 0;
    plan.arena_bytes =
        std::max(plan.arena_bytes, scratch > 0 ? even_up(low) + scratch + high : low + high);
  }
  for (int64_t t = 0; t < intermediate; ++t) {
    plan.offsets.push_back(t % 2 == 0 ? 0 : plan.arena_bytes - layer_outputs[t].bytes());
  }
  for (int64_t i = 0; i < layers; ++i) {
    const int64_t scratch = i < static_cast<int64_t>(scratch_bytes.size()) ? scratch_bytes[i] : 0;
    plan.scratch_offsets.push_back(scratch > 0 ? even_up(i % 2 == 0 ? size(i) : size(i - 1)) : -1);
  }
  return plan;
}

ArenaPlan PlanArena(const Int8Model& model) {
  std::vector<TensorShape> outs;
  std::vector<int64_t> scratch;
  for (const Int8Layer& l : model.layers) {
    outs.push_back(l.out);
    scratch.push_back(LayerScratchBytes(l.kind, l.in, l.kernel));
  }
  return PlanArena(outs, scratch);
}

int64_t Int8WeightBytes(const Int8Model& model) {
  int64_t n = 0;
  for (const Int8Layer& l : model.layers) n += static_cast<int64_t>(l.weights.size());
  return n;
}

int64_t WeightBytes(const Int8Model& model) {
  int64_t n = Int8WeightBytes(model);
  for (const Int8Layer& l : model.layers) {
    if (l.kind != LayerKind::kMaxPool) n += int64_t{9} * l.out.c;
  }
  return n;
}

}  // namespace edgefl::students
