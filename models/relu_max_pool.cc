#include "models/relu_max_pool.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/csrc/autograd/custom_function.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "common/float_bits.h"

namespace edgefl::models {
namespace {

// Window position of an output whose gradient is dropped (its value is <= 0).
constexpr uint8_t kNoGradient = 4;

// Vector-friendly kernels: GCC compiles these loops for AVX-512, AVX2 and baseline x86-64 and
// picks one at load time (target_clones); elsewhere they are built for the target as is. The
// file is compiled with -fno-trapping-math (CMakeLists.txt), without which GCC does not turn the
// float selects into vector blends; nothing here reads floating-point exception flags.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define EDGEFL_VECTOR_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define EDGEFL_VECTOR_CLONES
#endif

// All ones if c, else 0.
inline uint32_t Mask(bool c) { return 0u - static_cast<uint32_t>(c); }
// m ? a : b on bit patterns.
inline uint32_t Select(uint32_t m, uint32_t a, uint32_t b) { return (a & m) | (b & ~m); }

// LibTorch's relu, branch-free: clamp_min(x, 0) = x < 0 ? 0 : x, so NaN and -0.0 pass unchanged.
inline float Relu(float x) { return BitsToFloat(FloatToBits(x) & ~Mask(x < 0.0f)); }

// One [H, W] plane (W even) -> [H/2, W/2] in two passes whose loops run over whole rows or the
// whole plane (14 / 7 outputs per row are too short to vectorize a window at a time):
//  1. vertical: for each row pair and column, the larger ReLU'd value of the two (the top one on
//     a tie) and which row it came from -> col[H/2][W], bottom[H/2][W];
//  2. horizontal, over the plane as one run of pairs: the larger of the two columns' winners.
// The result is LibTorch's max_pool2d rule (strictly greater wins in the row-major scan a, b, c,
// d, so the first maximum): on a tie between the columns the left one wins, except that b (top
// right) precedes c (bottom left). out = the maximum, pos = its position 0..3 in the window, or
// kNoGradient when ReLU's backward drops it (out <= 0). All selects are bit masks, so the loops
// vectorize and the remainders do not branch. col / bottom: scratch of (H/2) * W each. Returns
// false, with out / pos unspecified, if the plane holds a NaN: LibTorch's rule for NaN (a NaN
// always wins, so the last NaN) is then applied by ForwardPlaneByScan.
EDGEFL_VECTOR_CLONES
bool ForwardPlane(const float* __restrict in, int64_t h, int64_t w, float* __restrict out,
                  uint8_t* __restrict pos, float* __restrict col, uint8_t* __restrict bottom) {
  const int64_t oh = h / 2, ow = w / 2;
  uint32_t nan_seen = 0;
  for (int64_t i = 0; i < oh; ++i) {
    const float* r0 = in + 2 * i * w;
    const float* r1 = r0 + w;
    float* c = col + i * w;
    uint8_t* bt = bottom + i * w;
    for (int64_t x = 0; x < w; ++x) {
      const float top = r0[x], bot = r1[x];
      nan_seen |= static_cast<uint32_t>(top != top) | static_cast<uint32_t>(bot != bot);
      const float rt = Relu(top), rb = Relu(bot);
      const uint32_t m = Mask(rb > rt);
      c[x] = BitsToFloat(Select(m, FloatToBits(rb), FloatToBits(rt)));
      bt[x] = static_cast<uint8_t>(m & 1u);
    }
  }
  const int64_t n = oh * ow;
  for (int64_t t = 0; t < n; ++t) {
    const float x0 = col[2 * t], x1 = col[2 * t + 1];
    const uint32_t b0 = bottom[2 * t], b1 = bottom[2 * t + 1];
    // Right wins if larger, or equal with left = c (bottom) and right = b (top).
    const uint32_t right = Mask(x1 > x0) | (Mask(x1 == x0) & (0u - (b0 & (b1 ^ 1u))));
    const float best = BitsToFloat(Select(right, FloatToBits(x1), FloatToBits(x0)));
    out[t] = best;
    const uint32_t k = Select(right, 1u + 2u * b1, 2u * b0);
    pos[t] = static_cast<uint8_t>(Select(Mask(best <= 0.0f), kNoGradient, k));
  }
  return nan_seen == 0;
}

// The same plane with LibTorch's scan exactly as written (NaN included): for planes that hold a
// NaN, which training never produces unless it has diverged, and for odd widths.
void ForwardPlaneByScan(const float* in, int64_t h, int64_t w, float* out, uint8_t* pos) {
  const int64_t oh = h / 2, ow = w / 2;
  for (int64_t i = 0; i < oh; ++i) {
    const float* r0 = in + 2 * i * w;
    const float* r1 = r0 + w;
    for (int64_t j = 0; j < ow; ++j) {
      const float v[4] = {Relu(r0[2 * j]), Relu(r0[2 * j + 1]), Relu(r1[2 * j]),
                          Relu(r1[2 * j + 1])};
      float best = -INFINITY;
      uint8_t k = 0;
      for (uint8_t q = 0; q < 4; ++q) {
        if (v[q] > best || std::isnan(v[q])) {
          best = v[q];
          k = q;
        }
      }
      out[i * ow + j] = best;
      // ReLU's backward drops the gradient where its output is <= 0 (not for NaN).
      pos[i * ow + j] = best <= 0.0f ? kNoGradient : k;
    }
  }
}

// Writes the 32 bits of a float (memcpy: no aliasing assumptions, compiles to a plain store).
inline void StoreBits(float* dst, uint32_t bits) { std::memcpy(dst, &bits, sizeof(bits)); }

// Gradient of one plane: each window's winner gets 0 + g (as LibTorch's zero-filled buffer plus
// +=, which turns -0.0 into +0.0), everything else, including dropped odd rows / columns, +0.0.
// The selection is a bit mask so that the loop vectorizes.
EDGEFL_VECTOR_CLONES
void BackwardPlane(const float* __restrict g, const uint8_t* __restrict pos, int64_t h, int64_t w,
                   float* __restrict gin) {
  const int64_t oh = h / 2, ow = w / 2;
  for (int64_t i = 0; i < oh; ++i) {
    float* r0 = gin + 2 * i * w;
    float* r1 = r0 + w;
    const float* gi = g + i * ow;
    const uint8_t* p = pos + i * ow;
    for (int64_t j = 0; j < ow; ++j) {
      const uint32_t k = p[j];
      const float v = 0.0f + gi[j];
      uint32_t bits;
      std::memcpy(&bits, &v, sizeof(bits));
      StoreBits(r0 + 2 * j, bits & (0u - static_cast<uint32_t>(k == 0)));
      StoreBits(r0 + 2 * j + 1, bits & (0u - static_cast<uint32_t>(k == 1)));
      StoreBits(r1 + 2 * j, bits & (0u - static_cast<uint32_t>(k == 2)));
      StoreBits(r1 + 2 * j + 1, bits & (0u - static_cast<uint32_t>(k == 3)));
    }
    if (w % 2 != 0) r0[w - 1] = r1[w - 1] = 0.0f;
  }
  if (h % 2 != 0) std::fill(gin + (h - 1) * w, gin + h * w, 0.0f);
}

// Runs the forward pass over every [H, W] plane and returns the pooled output; *pos receives
// the window positions (also computed for evaluation: one byte per output is cheap).
at::Tensor Forward(const at::Tensor& x, at::Tensor* pos) {
  const at::Tensor in = x.contiguous();
  const int64_t n = in.size(0), c = in.size(1), h = in.size(2), w = in.size(3);
  at::Tensor out = at::empty({n, c, h / 2, w / 2}, in.options());
  *pos = at::empty({n, c, h / 2, w / 2}, in.options().dtype(at::kByte));
  const float* src = in.data_ptr<float>();
  float* dst = out.data_ptr<float>();
  uint8_t* p = pos->data_ptr<uint8_t>();
  const int64_t plane_in = h * w, plane_out = (h / 2) * (w / 2);
  at::parallel_for(0, n * c, 16, [&](int64_t begin, int64_t end) {
    std::vector<float> col(w % 2 == 0 ? (h / 2) * w : 0);
    std::vector<uint8_t> bottom(col.size());
    for (int64_t i = begin; i < end; ++i) {
      // Odd widths (not in any registered model) take the plain scan.
      if (w % 2 != 0 || !ForwardPlane(src + i * plane_in, h, w, dst + i * plane_out,
                                      p + i * plane_out, col.data(), bottom.data())) {
        ForwardPlaneByScan(src + i * plane_in, h, w, dst + i * plane_out, p + i * plane_out);
      }
    }
  });
  return out;
}

class ReluMaxPool2x2Function : public torch::autograd::Function<ReluMaxPool2x2Function> {
 public:
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x) {
    at::Tensor pos;
    at::Tensor out = Forward(x, &pos);
    ctx->save_for_backward({pos});
    ctx->saved_data["h"] = x.size(2);
    ctx->saved_data["w"] = x.size(3);
    return out;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const at::Tensor pos = ctx->get_saved_variables()[0];
    const at::Tensor g = grads[0].contiguous();
    const int64_t n = pos.size(0), c = pos.size(1);
    const int64_t h = ctx->saved_data["h"].toInt(), w = ctx->saved_data["w"].toInt();
    at::Tensor gin = at::empty({n, c, h, w}, g.options());
    const float* gp = g.data_ptr<float>();
    const uint8_t* pp = pos.data_ptr<uint8_t>();
    float* out = gin.data_ptr<float>();
    const int64_t plane_in = h * w, plane_out = (h / 2) * (w / 2);
    at::parallel_for(0, n * c, 16, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        BackwardPlane(gp + i * plane_out, pp + i * plane_out, h, w, out + i * plane_in);
      }
    });
    return {gin};
  }
};

}  // namespace

at::Tensor ReluMaxPool2x2(const at::Tensor& x) {
  if (x.dim() != 4 || x.scalar_type() != at::kFloat || !x.device().is_cpu() || x.size(2) < 2 ||
      x.size(3) < 2) {
    return at::max_pool2d(at::relu(x), {2, 2});
  }
  if (at::GradMode::is_enabled() && x.requires_grad()) {
    return ReluMaxPool2x2Function::apply(x);
  }
  at::Tensor pos;
  return Forward(x, &pos);
}

}  // namespace edgefl::models
