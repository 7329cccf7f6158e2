// Encoding and decoding of one model update (all tensors of a delta) under a codec chain.
//
// Client side:  EncodeUpdate(chain, tensors, &error_feedback_or_null, seed) -> bytes
// Server side:  DecodeUpdate(bytes, expected_layout, &sink) validates the WHOLE update first and
//               only then streams its entries into the sink in blocks, so a malformed update
//               never reaches an accumulator and no dense per-client copy is built.
//
// ---- Wire format (version 1; all integers little-endian; "varint" = unsigned LEB128) ----------
//
//   Update  := Header Tensor{tensor_count}               (no bytes may follow the last tensor)
//   Header  := "EFLU" | u8 format_version = 1 | varint chain_len | chain (ChainSpec::ToString)
//              | varint tensor_count
//   Tensor  := varint name_len | name | varint numel (< 2^32) | u8 codec_id
//              | [varint block_size]                  only for int8 / q4; 0 = one scale
//              | u8 index_encoding | Indices | Values
//   codec_id       := 0 fp32 | 1 fp16 | 2 int8 | 3 q4          (== Quantizer; must match chain)
//   index_encoding := 0 DENSE | 1 VARINT_DELTA | 2 BITPACKED_DELTA | 3 BITMAP
//   Indices (nnz entries sent, strictly increasing tensor-local indices i_0 < i_1 < ... < numel):
//     DENSE            : nothing; nnz = numel (the only encoding allowed without a sparsifier)
//     VARINT_DELTA     : varint nnz | varint byte_len | nnz varints d_0 = i_0, d_j = i_j - i_{j-1}
//                        (>= 1), exactly byte_len bytes
//     BITPACKED_DELTA  : varint nnz | u8 width in [1, 32] | ceil(nnz * width / 8) bytes holding
//                        the same deltas, width bits each, LSB first; padding bits zero
//     BITMAP           : varint nnz | ceil(numel / 8) bytes, bit (i % 8) of byte i / 8 set iff
//                        index i is sent; popcount == nnz; padding bits zero
//   Values (nnz values in index order):
//     fp32 : nnz x f32, finite
//     fp16 : nnz x binary16, finite
//     int8 : S x f32 scales | nnz x i8 in [-127, 127]
//     q4   : S x f32 scales | ceil(nnz / 2) bytes, two 4-bit two's-complement levels per byte,
//            low nibble first, each in [-7, 7], an unused last nibble zero
//     where S = NumScales(nnz, block_size) (quantize.h) and every scale is finite and within
//     [kMinScale, kMaxScale]; value v of a block is received as float(q) * scale.
//
// The encoder writes DENSE when nnz == numel and otherwise the smallest of VARINT_DELTA,
// BITPACKED_DELTA and BITMAP (ties to the lower id); see EncodedSizeBytes for the exact formula.
// Counts are checked against the chain: topk/randk tensors must carry exactly
// KeptCount(fraction, numel) entries, and topk_global updates exactly GlobalKeptCount in total.
#ifndef EDGEFL_COMPRESSION_UPDATE_CODEC_H_
#define EDGEFL_COMPRESSION_UPDATE_CODEC_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "compression/chain.h"
#include "compression/error_feedback.h"

namespace edgefl::compression {

inline constexpr char kUpdateMagic[4] = {'E', 'F', 'L', 'U'};
inline constexpr uint8_t kUpdateFormatVersion = 1;
inline constexpr uint64_t kMaxTensorNumel = 0xFFFFFFFFull;  // indices are 32-bit
inline constexpr size_t kMaxTensorNameBytes = 4096;

enum class IndexEncoding : uint8_t {
  kDense = 0,
  kVarintDelta = 1,
  kBitpackedDelta = 2,
  kBitmap = 3,
};

// One tensor of the update, borrowed for the duration of the call.
struct TensorView {
  absl::string_view name;
  absl::Span<const float> values;
};

// What the receiver expects, in order (from the ModelSpec: name and product of the shape).
struct TensorLayout {
  std::string name;
  uint64_t numel = 0;
};

// Compresses `tensors` (a model delta, in model order) under `spec`.
//
// With spec.error_feedback, `ef` must be non-null with ef->dim() == the total number of values;
// the residual is added to the input first and replaced by what this encoding leaves out (see
// error_feedback.h); ef's model_version is not touched. Without spec.error_feedback `ef` is
// ignored (may be null) and left unchanged.
// `seed` drives random-k selection and stochastic rounding (stream per tensor index), so the
// same (spec, tensors, residual, seed) always gives the same bytes.
//
// Errors (INVALID_ARGUMENT; nothing is written to `ef` then): an invalid spec, a NaN or Inf in
// the input (or in input + residual), a tensor with more than kMaxTensorNumel values or a name
// longer than kMaxTensorNameBytes, ef missing or of the wrong size.
// Thread-compatible: concurrent calls are fine as long as they do not share `ef`.
absl::StatusOr<std::string> EncodeUpdate(const ChainSpec& spec,
                                         absl::Span<const TensorView> tensors, ErrorFeedback* ef,
                                         uint64_t seed);

// Receives a validated update in blocks (at most kDecodeBlock entries per call). Every flat index
// is delivered at most once per update; indices not delivered are zero. Flat index = offset of
// the tensor in the concatenated layout + tensor-local index.
class UpdateSink {
 public:
  static constexpr size_t kDecodeBlock = 4096;
  virtual ~UpdateSink() = default;
  // Called once per tensor, in order, before its entries.
  virtual void BeginTensor(size_t tensor_index, uint64_t flat_offset, uint64_t numel,
                           uint64_t nnz) {}
  // model[flat_begin + i] = values[i] for all i: a run of consecutive entries.
  virtual void Dense(uint64_t flat_begin, absl::Span<const float> values) = 0;
  // model[flat_base + local_indices[i]] = values[i]; local_indices strictly increasing.
  virtual void Sparse(uint64_t flat_base, absl::Span<const uint32_t> local_indices,
                      absl::Span<const float> values) = 0;
};

// Writes decoded values into a dense float span (the caller zeroes it first).
class DenseWriteSink : public UpdateSink {
 public:
  explicit DenseWriteSink(absl::Span<float> out) : out_(out) {}
  void Dense(uint64_t flat_begin, absl::Span<const float> values) override;
  void Sparse(uint64_t flat_base, absl::Span<const uint32_t> local_indices,
              absl::Span<const float> values) override;

 private:
  absl::Span<float> out_;
};

// Adds weight * value into a dense double sum (a streaming weighted-mean accumulator).
class WeightedAddSink : public UpdateSink {
 public:
  WeightedAddSink(absl::Span<double> sum, double weight) : sum_(sum), weight_(weight) {}
  void Dense(uint64_t flat_begin, absl::Span<const float> values) override;
  void Sparse(uint64_t flat_base, absl::Span<const uint32_t> local_indices,
              absl::Span<const float> values) override;

 private:
  absl::Span<double> sum_;
  double weight_;
};

struct DecodeOptions {
  // When set, the update's chain must equal this one (e.g. the round's configured codec).
  std::optional<ChainSpec> expected_chain;
};

struct UpdateSummary {
  ChainSpec chain;
  uint64_t total_numel = 0;
  uint64_t total_nnz = 0;  // entries actually sent
  std::vector<uint64_t> nnz_per_tensor;
  std::vector<IndexEncoding> index_encoding_per_tensor;
};

// Fully validates `encoded` against `layout` without emitting anything. INVALID_ARGUMENT, with a
// message naming the tensor and the problem, for: bad magic / format version, an unparsable
// chain or one that differs from options.expected_chain, a tensor count, name or numel that
// differs from layout, an unknown codec id or index encoding, a codec or block size that differs
// from the chain, a dense encoding where a sparsifier requires indices, indices out of range or
// not increasing, counts that do not match (nnz vs chain, varint byte length, bitmap popcount),
// an unsupported index bit width, non-zero padding bits, truncation, trailing bytes, a NaN / Inf
// / zero / out-of-range scale, a non-finite fp32/fp16 value, or an int level outside
// [-qmax, qmax]. Thread-safe (pure).
absl::StatusOr<UpdateSummary> ValidateUpdate(absl::string_view encoded,
                                             absl::Span<const TensorLayout> layout,
                                             const DecodeOptions& options = {});

// ValidateUpdate, then (only if valid) streams every sent entry into `sink`. On error the sink
// has not been called at all. Every value the sink sees is finite.
absl::Status DecodeUpdate(absl::string_view encoded, absl::Span<const TensorLayout> layout,
                          UpdateSink* sink, const DecodeOptions& options = {});

// DecodeUpdate into a dense vector of the layout's total size (zeros where nothing was sent).
// `out` is only modified on success.
absl::Status DecodeToDense(absl::string_view encoded, absl::Span<const TensorLayout> layout,
                           std::vector<float>* out, const DecodeOptions& options = {});

// ---- Sizes ------------------------------------------------------------------------------------

// Bytes of the index section (index_encoding byte excluded) for `indices` (strictly increasing,
// < numel) under a given encoding: DENSE 0 (only valid when indices.size() == numel);
// VARINT_DELTA varint(nnz) + varint(B) + B with B = sum varint(d_j);
// BITPACKED_DELTA varint(nnz) + 1 + ceil(nnz * w / 8), w = max(1, bit length of max d_j);
// BITMAP varint(nnz) + ceil(numel / 8).
uint64_t IndexSectionBytes(IndexEncoding encoding, absl::Span<const uint32_t> indices,
                           uint64_t numel);
// The encoding EncodeUpdate picks: DENSE iff nnz == numel, else the smallest of the other three.
IndexEncoding ChooseIndexEncoding(absl::Span<const uint32_t> indices, uint64_t numel);
// Bytes of the value section: fp32 4n, fp16 2n, int8 4S + n, q4 4S + ceil(n/2), S = NumScales.
uint64_t ValueSectionBytes(Quantizer quantizer, uint32_t block_size, uint64_t nnz);

// Exact size of EncodeUpdate's output for `spec` over `layout` when tensor t sends the entries
// kept[t]. For chains without a sparsifier pass an empty `kept` (every tensor dense).
uint64_t EncodedSizeBytes(const ChainSpec& spec, absl::Span<const TensorLayout> layout,
                          absl::Span<const std::vector<uint32_t>> kept);

// An upper bound on the size of any valid encoding under `spec` for `layout` (exact for chains
// without a sparsifier). Servers can reject larger uploads before reading them.
uint64_t MaxEncodedSizeBytes(const ChainSpec& spec, absl::Span<const TensorLayout> layout);

}  // namespace edgefl::compression

#endif  // EDGEFL_COMPRESSION_UPDATE_CODEC_H_
