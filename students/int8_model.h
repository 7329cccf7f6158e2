// A fully integer-quantized image classifier (the microcontroller student after quantization) and
// the fixed-point arithmetic it is defined by. Torch-free.
//
// Arithmetic (the same as TFLite Micro / CMSIS-NN int8 kernels, written out so that every
// implementation gives the same bits):
//   - activations are int8 with one (scale, zero point) per tensor: real = scale * (q - zp);
//   - weights are int8, symmetric (zero point 0), one scale per output channel;
//   - biases are int32 in units of input_scale * weight_scale[c];
//   - a conv / depthwise conv / dense output channel c accumulates in int32
//       acc = bias[c] + sum (x - input_zp) * w        (padding contributes nothing)
//     and is requantized with an int32 multiplier m[c] in [2^30, 2^31) (or 0) and an exponent
//     shift[c] in [-31, 30], i.e. by the real factor m * 2^(shift - 31):
//       rs  = 31 - shift                               (1 .. 62)
//       v   = floor(((int64) acc * m + 2^(rs - 1)) / 2^rs)      (round half up)
//       out = clamp(v + output_zp, act_min, act_max)   (ReLU is act_min = output_zp)
//   - max pooling works on the int8 values directly (scale and zero point pass through).
// No floating point is needed at inference time; the doubles below are metadata.
#ifndef EDGEFL_STUDENTS_INT8_MODEL_H_
#define EDGEFL_STUDENTS_INT8_MODEL_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace edgefl::students {

enum class LayerKind {
  kConv,           // k x k, stride 1, zero padding `pad`, any channels
  kDepthwiseConv,  // k x k, stride 1, padding `pad`, one filter per channel (multiplier 1)
  kMaxPool,        // 2 x 2, stride 2, floor
  kDense,          // fully connected on the flattened input
};

// "conv", "dwconv", "maxpool", "dense".
const char* LayerKindName(LayerKind kind);

// Height x width x channels of an activation tensor (batch 1). A dense output is 1 x 1 x n.
struct TensorShape {
  int h = 0;
  int w = 0;
  int c = 0;
  int64_t bytes() const { return static_cast<int64_t>(h) * w * c; }  // int8 elements
  bool operator==(const TensorShape& o) const { return h == o.h && w == o.w && c == o.c; }
};

// Output shape of one layer; INVALID_ARGUMENT if the layer does not fit its input.
absl::StatusOr<TensorShape> LayerOutputShape(LayerKind kind, const TensorShape& in,
                                             int out_channels, int kernel, int pad);

struct Int8Layer {
  LayerKind kind = LayerKind::kConv;
  TensorShape in;
  TensorShape out;
  int kernel = 0;  // conv, dwconv
  int pad = 0;     // conv, dwconv
  bool relu = false;

  // Weights in LibTorch's layouts (the C exporter rearranges them):
  //   conv [out.c][in.c][k][k]; dwconv [c][1][k][k]; dense [out.c][in.h * in.w * in.c] with the
  //   input flattened in (c, h, w) order as torch's flatten does. Empty for kMaxPool.
  std::vector<int8_t> weights;
  std::vector<int32_t> bias;        // [out.c]
  std::vector<int32_t> multiplier;  // [out.c], 0 or in [2^30, 2^31)
  std::vector<int32_t> shift;       // [out.c], in [-31, 30]
  int32_t input_zero_point = 0;
  int32_t output_zero_point = 0;
  int32_t act_min = -128;
  int32_t act_max = 127;

  // Metadata (not used by the integer arithmetic).
  double input_scale = 0;
  double output_scale = 0;
  std::vector<double> weight_scales;  // [out.c]
};

struct Int8Model {
  std::string name;  // the student architecture, e.g. "student_tiny"
  TensorShape input{28, 28, 1};
  double input_scale = 1.0 / 255.0;  // q = pixel - 128 represents pixel / 255
  int32_t input_zero_point = -128;
  double output_scale = 0;  // of the int8 logits
  int32_t output_zero_point = 0;
  std::vector<Int8Layer> layers;
  int num_classes() const { return layers.empty() ? 0 : layers.back().out.c; }
};

// Splits a positive real factor into (multiplier, shift) as described above; real factors below
// 2^-32 give multiplier 0 (the output is the zero point). INVALID_ARGUMENT for a real factor that
// is negative, not finite, or >= 2^30 (the product would leave int64).
absl::Status QuantizeMultiplier(double real, int32_t* multiplier, int32_t* shift);

// The requantization step for one accumulator (reference scalar implementation).
inline int8_t Requantize(int32_t acc, int32_t multiplier, int32_t shift, int32_t zero_point,
                         int32_t act_min, int32_t act_max) {
  const int rs = 31 - shift;
  const int64_t prod = static_cast<int64_t>(acc) * multiplier + (int64_t{1} << (rs - 1));
  // Floor division by 2^rs, without relying on >> of negative numbers.
  const int64_t den = int64_t{1} << rs;
  int64_t v = prod >= 0 ? prod / den : -((-prod + den - 1) / den);
  v += zero_point;
  if (v < act_min) v = act_min;
  if (v > act_max) v = act_max;
  return static_cast<int8_t>(v);
}

// Checks every layer's shapes chain from model.input to 1 x 1 x num_classes, array sizes, quant
// parameter ranges, and that no int32 accumulator can overflow (|bias| + 255 * sum |w| < 2^31
// per channel). INVALID_ARGUMENT naming the layer otherwise.
absl::Status ValidateInt8Model(const Int8Model& model);

// Where each intermediate activation lives in the static arena. The first layer reads the
// caller's input and the last writes the caller's logits, so tensors 0 .. L-2 (the outputs of
// layers 0 .. L-2) live in the arena: even ones at offset 0, odd ones at the top (so a layer's
// input and output never overlap). A conv layer also needs an int16 patch buffer of
// LayerScratchBytes, placed (2-byte aligned) between its input and output. The arena is the
// largest such footprint over all layers.
struct ArenaPlan {
  int64_t arena_bytes = 0;
  std::vector<int64_t> offsets;          // [L - 1], offset of layer i's output
  std::vector<int64_t> scratch_offsets;  // [L], offset of layer i's scratch, -1 if none
};
// 2 * k * k * in.c for kConv (the (x - zero point) patch of one output pixel as int16), else 0.
int64_t LayerScratchBytes(LayerKind kind, const TensorShape& in, int kernel);
// `scratch_bytes` has one entry per layer.
ArenaPlan PlanArena(const std::vector<TensorShape>& layer_outputs,
                    const std::vector<int64_t>& scratch_bytes);
ArenaPlan PlanArena(const Int8Model& model);

// Bytes of constant parameter data the exported library holds: int8 weights plus, per output
// channel of conv / dwconv / dense, an int32 bias, an int32 multiplier and an int8 shift.
int64_t WeightBytes(const Int8Model& model);
// The int8 weights alone.
int64_t Int8WeightBytes(const Int8Model& model);

}  // namespace edgefl::students

#endif  // EDGEFL_STUDENTS_INT8_MODEL_H_
