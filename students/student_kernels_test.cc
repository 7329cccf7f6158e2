// The exported int8 kernels (students/c/edgefl_student_kernels.c, compiled as C99) against
// straightforward references on small tensors, and the exporter's copy of them against the files.
#include <algorithm>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "common/file_util.h"
#include "gtest/gtest.h"
#include "students/c/edgefl_student_kernels.h"
#include "students/c_export.h"
#include "students/int8_model.h"

namespace edgefl::students {
namespace {

// multiplier 2^30 with shift 1 is requantization by exactly 1 (rs = 30: (acc * 2^30 + 2^29) >> 30
// == acc), so the references below are plain integer sums plus the output zero point, clamped.
constexpr int32_t kOne = 1 << 30;

int8_t Clamp(int64_t v, int32_t lo, int32_t hi) {
  return static_cast<int8_t>(v < lo ? lo : v > hi ? hi : v);
}

edgefl_nn_layer Layer(int32_t in_h, int32_t in_w, int32_t in_c, int32_t out_h, int32_t out_w,
                      int32_t out_c) {
  edgefl_nn_layer l = {};
  l.in_h = in_h;
  l.in_w = in_w;
  l.in_c = in_c;
  l.out_h = out_h;
  l.out_w = out_w;
  l.out_c = out_c;
  l.act_min = -128;
  l.act_max = 127;
  return l;
}

TEST(StudentKernels, DenseMatchesReference) {
  const std::vector<int8_t> in = {3, -5, 7, 0, -128, 127};  // in_h 1, in_w 2, in_c 3
  const std::vector<int8_t> w = {1,  -2, 3, 0, 1, -1,       // out 0
                                 -1, 0,  2, 1, 0, 0,        // out 1
                                 0,  0,  0, 0, 1, 1,        // out 2
                                 5,  5,  5, 5, 5, 5};       // out 3: saturates high
  const std::vector<int32_t> bias = {10, -20, 0, 100};
  const std::vector<int32_t> mult(4, kOne);
  const std::vector<int8_t> shift(4, 1);
  edgefl_nn_layer l = Layer(1, 2, 3, 1, 1, 4);
  l.in_zp = -1;
  l.out_zp = 4;
  l.act_min = -100;
  l.act_max = 120;
  l.weights = w.data();
  l.bias = bias.data();
  l.multiplier = mult.data();
  l.shift = shift.data();
  std::vector<int8_t> out(4, 99);
  edgefl_nn_dense(&l, in.data(), out.data());
  for (int o = 0; o < 4; ++o) {
    int64_t acc = bias[o];
    for (int i = 0; i < 6; ++i) acc += (in[i] - l.in_zp) * w[o * 6 + i];
    EXPECT_EQ(out[o], Clamp(acc + l.out_zp, l.act_min, l.act_max)) << "output " << o;
  }
  EXPECT_EQ(out[3], 120);  // the clamp was exercised
}

// The C requantization (an arithmetic >>) against Requantize in int8_model.h (floor division):
// through a 1 x 1 dense layer whose accumulator is its bias.
TEST(StudentKernels, RequantizationMatchesTheReference) {
  const int8_t weight = 1, x = 0;
  for (int32_t acc : {-2000000, -40000, -255, -129, -3, -2, -1, 0, 1, 2, 3, 127, 128, 999999}) {
    for (int32_t mult : {0, kOne, kOne + 12345, 1518500250, 2147483647}) {
      for (int32_t shift : {-31, -8, -1, 0, 1, 3, 7, 30}) {
        edgefl_nn_layer l = Layer(1, 1, 1, 1, 1, 1);
        const int8_t shift8 = static_cast<int8_t>(shift);
        l.out_zp = 3;
        l.weights = &weight;
        l.bias = &acc;
        l.multiplier = &mult;
        l.shift = &shift8;
        int8_t out = 0;
        edgefl_nn_dense(&l, &x, &out);
        EXPECT_EQ(out, Requantize(acc, mult, shift, 3, -128, 127))
            << "acc " << acc << " multiplier " << mult << " shift " << shift;
      }
    }
  }
}

TEST(StudentKernels, MaxPoolMatchesReference) {
  // 4x4x2 -> 2x2x2, HWC.
  std::vector<int8_t> in(32);
  for (int i = 0; i < 32; ++i) in[i] = static_cast<int8_t>((i * 37) % 251 - 125);
  edgefl_nn_layer l = Layer(4, 4, 2, 2, 2, 2);
  std::vector<int8_t> out(8, 0);
  edgefl_nn_maxpool(&l, in.data(), out.data());
  for (int oy = 0; oy < 2; ++oy)
    for (int ox = 0; ox < 2; ++ox)
      for (int c = 0; c < 2; ++c) {
        int8_t m = -128;
        for (int dy = 0; dy < 2; ++dy)
          for (int dx = 0; dx < 2; ++dx)
            m = std::max(m, in[((2 * oy + dy) * 4 + 2 * ox + dx) * 2 + c]);
        EXPECT_EQ(out[(oy * 2 + ox) * 2 + c], m) << oy << "," << ox << "," << c;
      }
}

TEST(StudentKernels, ConvWithZeroPaddingMatchesReference) {
  // 3x3x2 input, 3x3 kernel, pad 1 -> 3x3x2 output, ReLU (act_min == out_zp).
  std::vector<int8_t> in(18);
  for (int i = 0; i < 18; ++i) in[i] = static_cast<int8_t>(i * 7 - 60);
  std::vector<int8_t> w(2 * 9 * 2);  // [out_c][ky][kx][in_c]
  for (size_t i = 0; i < w.size(); ++i) w[i] = static_cast<int8_t>(static_cast<int>(i % 5) - 2);
  const std::vector<int32_t> bias = {7, -300};
  const std::vector<int32_t> mult(2, kOne);
  const std::vector<int8_t> shift(2, 1);
  edgefl_nn_layer l = Layer(3, 3, 2, 3, 3, 2);
  l.kernel = 3;
  l.pad = 1;
  l.in_zp = 5;
  l.out_zp = -3;
  l.act_min = -3;
  l.weights = w.data();
  l.bias = bias.data();
  l.multiplier = mult.data();
  l.shift = shift.data();
  std::vector<int16_t> patch(3 * 3 * 2);
  std::vector<int8_t> out(18, 0);
  edgefl_nn_conv(&l, in.data(), out.data(), patch.data());
  for (int oy = 0; oy < 3; ++oy)
    for (int ox = 0; ox < 3; ++ox)
      for (int oc = 0; oc < 2; ++oc) {
        int64_t acc = bias[oc];
        for (int ky = 0; ky < 3; ++ky)
          for (int kx = 0; kx < 3; ++kx)
            for (int ic = 0; ic < 2; ++ic) {
              const int iy = oy - 1 + ky, ix = ox - 1 + kx;
              if (iy < 0 || iy >= 3 || ix < 0 || ix >= 3) continue;
              acc += (in[(iy * 3 + ix) * 2 + ic] - l.in_zp) * w[((oc * 3 + ky) * 3 + kx) * 2 + ic];
            }
        EXPECT_EQ(out[(oy * 3 + ox) * 2 + oc], Clamp(acc + l.out_zp, l.act_min, l.act_max))
            << oy << "," << ox << "," << oc;
      }
}

// The exporter ships students/c/edgefl_student_kernels.{h,c} byte for byte (embedded at build
// time by students/embed_c_sources.cmake).
TEST(StudentKernels, ExportedKernelsAreTheSourceFiles) {
  Int8Model model;
  model.name = "one_dense";
  model.input = {1, 1, 1};
  Int8Layer dense;
  dense.kind = LayerKind::kDense;
  dense.in = {1, 1, 1};
  dense.out = {1, 1, 2};
  dense.weights = {1, -1};
  dense.bias = {0, 0};
  dense.multiplier = {kOne, kOne};
  dense.shift = {1, 1};
  dense.act_min = -128;
  dense.act_max = 127;
  model.layers.push_back(dense);
  absl::StatusOr<std::map<std::string, std::string>> files = RenderCLibrary(model, {"a", "b"});
  ASSERT_TRUE(files.ok()) << files.status();
  for (const char* name : {"edgefl_student_kernels.h", "edgefl_student_kernels.c"}) {
    absl::StatusOr<std::string> source = ReadFile(std::string(EDGEFL_STUDENT_C_DIR "/") + name);
    ASSERT_TRUE(source.ok()) << source.status();
    EXPECT_EQ(files->at(name), *source) << name;
  }
}

}  // namespace
}  // namespace edgefl::students
