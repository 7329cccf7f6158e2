#include "compression/update_codec.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "compression/bit_io.h"
#include "compression/quantize.h"
#include "compression/random.h"
#include "compression/sparsify.h"

namespace edgefl::compression {
namespace {

using internal::AppendVarint;
using internal::BitReader;
using internal::BitWriter;
using internal::PutVarint;
using internal::Reader;
using internal::VarintSize;

constexpr uint64_t kStreamRandK = 0;
constexpr uint64_t kStreamRounding = 1;

bool IsIntCodec(Quantizer q) { return q == Quantizer::kInt8 || q == Quantizer::kQ4; }
int QMax(Quantizer q) { return q == Quantizer::kInt8 ? kInt8Max : kInt4Max; }

inline uint32_t FloatBits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof(u));
  return u;
}

int BitLength(uint32_t v) { return v == 0 ? 0 : 32 - __builtin_clz(v); }

struct DeltaStats {
  uint64_t varint_bytes = 0;
  uint32_t max_delta = 0;
};

DeltaStats ComputeDeltaStats(absl::Span<const uint32_t> idx) {
  DeltaStats s;
  uint32_t prev = 0;
  for (size_t j = 0; j < idx.size(); ++j) {
    const uint32_t d = idx[j] - prev;  // j == 0: d = idx[0]
    prev = idx[j];
    s.varint_bytes += VarintSize(d);
    s.max_delta = std::max(s.max_delta, d);
  }
  return s;
}

int PackedWidth(const DeltaStats& s) { return std::max(1, BitLength(s.max_delta)); }

uint64_t IndexBytes(IndexEncoding e, const DeltaStats& s, uint64_t nnz, uint64_t numel) {
  switch (e) {
    case IndexEncoding::kDense:
      return 0;
    case IndexEncoding::kVarintDelta:
      return VarintSize(nnz) + VarintSize(s.varint_bytes) + s.varint_bytes;
    case IndexEncoding::kBitpackedDelta:
      return VarintSize(nnz) + 1 + (nnz * static_cast<uint64_t>(PackedWidth(s)) + 7) / 8;
    case IndexEncoding::kBitmap:
      return VarintSize(nnz) + (numel + 7) / 8;
  }
  return 0;
}

IndexEncoding Choose(const DeltaStats& s, uint64_t nnz, uint64_t numel) {
  if (nnz == numel) return IndexEncoding::kDense;
  IndexEncoding best = IndexEncoding::kVarintDelta;
  uint64_t best_bytes = IndexBytes(best, s, nnz, numel);
  for (IndexEncoding e : {IndexEncoding::kBitpackedDelta, IndexEncoding::kBitmap}) {
    const uint64_t b = IndexBytes(e, s, nnz, numel);
    if (b < best_bytes) {
      best = e;
      best_bytes = b;
    }
  }
  return best;
}

uint64_t HeaderBytes(const std::string& chain, size_t tensors) {
  return 4 + 1 + VarintSize(chain.size()) + chain.size() + VarintSize(tensors);
}

uint64_t TensorFixedBytes(const ChainSpec& spec, size_t name_bytes, uint64_t numel) {
  return VarintSize(name_bytes) + name_bytes + VarintSize(numel) + 1 +
         (IsIntCodec(spec.quantizer) ? VarintSize(spec.block_size) : 0) + 1;
}

// Writes the index section for `idx` (strictly increasing) under `e` (not kDense).
void WriteIndices(IndexEncoding e, absl::Span<const uint32_t> idx, const DeltaStats& s,
                  uint64_t numel, std::string* out) {
  const size_t start = out->size();
  const uint64_t bytes = IndexBytes(e, s, idx.size(), numel);
  out->resize(start + bytes);
  uint8_t* p = reinterpret_cast<uint8_t*>(out->data()) + start;
  p = PutVarint(p, idx.size());
  switch (e) {
    case IndexEncoding::kVarintDelta: {
      p = PutVarint(p, s.varint_bytes);
      uint32_t prev = 0;
      for (uint32_t i : idx) {
        p = PutVarint(p, i - prev);
        prev = i;
      }
      break;
    }
    case IndexEncoding::kBitpackedDelta: {
      const int w = PackedWidth(s);
      *p++ = static_cast<uint8_t>(w);
      BitWriter bw(p);
      uint32_t prev = 0;
      for (uint32_t i : idx) {
        bw.Put(i - prev, w);
        prev = i;
      }
      bw.Finish();
      break;
    }
    case IndexEncoding::kBitmap: {
      std::memset(p, 0, (numel + 7) / 8);
      for (uint32_t i : idx) p[i >> 3] |= static_cast<uint8_t>(1u << (i & 7));
      break;
    }
    case IndexEncoding::kDense:
      break;
  }
}

template <typename... Args>
absl::Status TensorError(size_t t, absl::string_view name, const Args&... args) {
  return absl::InvalidArgumentError(
      absl::StrCat("update tensor ", t, " ('", name, "'): ", args...));
}

// ---- Decoding ----------------------------------------------------------------------------------

struct TensorRecord {
  uint64_t numel = 0;
  uint64_t nnz = 0;
  uint64_t flat_offset = 0;
  Quantizer codec = Quantizer::kFp32;
  uint32_t block = 0;
  IndexEncoding index_encoding = IndexEncoding::kDense;
  int width = 0;                        // kBitpackedDelta
  const uint8_t* index_data = nullptr;  // deltas / bitpacked / bitmap bytes
  const uint8_t* scales = nullptr;      // NumScales(nnz, block) little-endian floats
  const uint8_t* values = nullptr;
};

// Reads a varint that must be canonical (no redundant trailing zero groups).
bool ReadCanonicalVarint(Reader* r, uint64_t* v) {
  const uint8_t* start = r->position();
  if (!r->ReadVarint(v)) return false;
  const size_t len = static_cast<size_t>(r->position() - start);
  return len == VarintSize(*v);
}

absl::Status ValidateVarintIndices(size_t t, absl::string_view name, const uint8_t* data,
                                   size_t len, uint64_t nnz, uint64_t numel) {
  const uint8_t* p = data;
  const uint8_t* end = data + len;
  uint64_t prev = 0;
  for (uint64_t j = 0; j < nnz; ++j) {
    uint32_t d;
    const uint8_t* before = p;
    if (!internal::ReadVarint32(&p, end, &d)) {
      return TensorError(t, name, "index ", j, " of ", nnz,
                         ": bad or truncated varint (count does not match byte length ", len, ")");
    }
    if (static_cast<uint64_t>(p - before) != VarintSize(d)) {
      return TensorError(t, name, "index ", j, ": non-canonical varint");
    }
    if (j > 0 && d == 0) return TensorError(t, name, "indices not increasing at entry ", j);
    const uint64_t idx = (j == 0 ? 0 : prev) + d;
    if (idx >= numel) {
      return TensorError(t, name, "index ", idx, " out of range [0, ", numel, ")");
    }
    prev = idx;
  }
  if (p != end) {
    return TensorError(t, name, "count mismatch: ", end - p, " index bytes left after ", nnz,
                       " indices");
  }
  return absl::OkStatus();
}

absl::Status ValidatePackedIndices(size_t t, absl::string_view name, const uint8_t* data,
                                   size_t len, int width, uint64_t nnz, uint64_t numel) {
  BitReader br(data, data + len);
  uint64_t prev = 0;
  for (uint64_t j = 0; j < nnz; ++j) {
    const uint32_t d = br.Get(width);
    if (j > 0 && d == 0) return TensorError(t, name, "indices not increasing at entry ", j);
    const uint64_t idx = (j == 0 ? 0 : prev) + d;
    if (idx >= numel) {
      return TensorError(t, name, "index ", idx, " out of range [0, ", numel, ")");
    }
    prev = idx;
  }
  if (br.leftover() != 0) return TensorError(t, name, "non-zero padding bits in packed indices");
  return absl::OkStatus();
}

absl::Status ValidateBitmap(size_t t, absl::string_view name, const uint8_t* data, uint64_t nnz,
                            uint64_t numel) {
  const uint64_t bytes = (numel + 7) / 8;
  uint64_t count = 0;
  for (uint64_t i = 0; i < bytes; ++i) count += static_cast<uint64_t>(__builtin_popcount(data[i]));
  if (numel % 8 != 0 && (data[bytes - 1] >> (numel % 8)) != 0) {
    return TensorError(t, name, "bitmap index out of range [0, ", numel, ")");
  }
  if (count != nnz) {
    return TensorError(t, name, "count mismatch: bitmap has ", count, " entries, header says ",
                       nnz);
  }
  return absl::OkStatus();
}

absl::Status ValidateValues(size_t t, absl::string_view name, const TensorRecord& rec) {
  const uint64_t n = rec.nnz;
  switch (rec.codec) {
    case Quantizer::kFp32: {
      uint32_t bad = 0;
      for (uint64_t i = 0; i < n; ++i) {
        uint32_t b;
        std::memcpy(&b, rec.values + 4 * i, 4);
        bad |= static_cast<uint32_t>((b & 0x7F800000u) == 0x7F800000u);
      }
      if (bad) return TensorError(t, name, "non-finite fp32 value");
      return absl::OkStatus();
    }
    case Quantizer::kFp16: {
      uint32_t bad = 0;
      for (uint64_t i = 0; i < n; ++i) {
        const uint16_t h = static_cast<uint16_t>(rec.values[2 * i] | (rec.values[2 * i + 1] << 8));
        bad |= static_cast<uint32_t>(HalfIsNonFinite(h));
      }
      if (bad) return TensorError(t, name, "non-finite fp16 value");
      return absl::OkStatus();
    }
    case Quantizer::kInt8:
    case Quantizer::kQ4:
      break;
  }
  const size_t ns = NumScales(n, rec.block);
  for (size_t s = 0; s < ns; ++s) {
    float scale;
    std::memcpy(&scale, rec.scales + 4 * s, 4);
    if (!(scale >= kMinScale && scale <= kMaxScale)) {  // also false for NaN
      return TensorError(t, name, "scale ", s, " is ", scale, " (must be finite and in [",
                         kMinScale, ", ", kMaxScale, "])");
    }
  }
  if (rec.codec == Quantizer::kInt8) {
    uint32_t bad = 0;
    for (uint64_t i = 0; i < n; ++i) bad |= static_cast<uint32_t>(rec.values[i] == 0x80u);
    if (bad) return TensorError(t, name, "int8 level -128 outside [-127, 127]");
    return absl::OkStatus();
  }
  uint32_t bad = 0;
  for (uint64_t i = 0; i < n / 2; ++i) {
    const uint8_t b = rec.values[i];
    bad |= static_cast<uint32_t>((b & 0x0Fu) == 0x08u) | static_cast<uint32_t>((b >> 4) == 0x08u);
  }
  if (bad) return TensorError(t, name, "4-bit level -8 outside [-7, 7]");
  if (n % 2 != 0) {
    const uint8_t last = rec.values[n / 2];
    if ((last & 0x0Fu) == 0x08u) return TensorError(t, name, "4-bit level -8 outside [-7, 7]");
    if ((last >> 4) != 0) return TensorError(t, name, "non-zero padding nibble");
  }
  return absl::OkStatus();
}

absl::Status ParseUpdate(absl::string_view encoded, absl::Span<const TensorLayout> layout,
                         const DecodeOptions& options, std::vector<TensorRecord>* records,
                         UpdateSummary* summary) {
  Reader r(encoded);
  const uint8_t* magic;
  if (!r.Skip(4, &magic) || std::memcmp(magic, kUpdateMagic, 4) != 0) {
    return absl::InvalidArgumentError("update: bad magic (not an edgefl encoded update)");
  }
  uint8_t version;
  if (!r.ReadU8(&version)) return absl::InvalidArgumentError("update: truncated header");
  if (version != kUpdateFormatVersion) {
    return absl::InvalidArgumentError(absl::StrCat("update: unsupported format version ", version));
  }
  uint64_t chain_len;
  const uint8_t* chain_bytes;
  if (!ReadCanonicalVarint(&r, &chain_len) || chain_len > 256 ||
      !r.Skip(static_cast<size_t>(chain_len), &chain_bytes)) {
    return absl::InvalidArgumentError("update: truncated or oversized codec chain");
  }
  const absl::string_view chain_text(reinterpret_cast<const char*>(chain_bytes),
                                     static_cast<size_t>(chain_len));
  absl::StatusOr<ChainSpec> chain = ParseChain(chain_text);
  if (!chain.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("update: bad codec chain: ", chain.status().message()));
  }
  if (chain->ToString() != chain_text) {
    return absl::InvalidArgumentError(absl::StrCat("update: codec chain '", chain_text,
                                                   "' is not in canonical form '",
                                                   chain->ToString(), "'"));
  }
  if (options.expected_chain.has_value() && *options.expected_chain != *chain) {
    return absl::InvalidArgumentError(absl::StrCat("update: codec chain '", chain_text,
                                                   "' differs from the expected '",
                                                   options.expected_chain->ToString(), "'"));
  }
  const ChainSpec& spec = *chain;
  uint64_t count;
  if (!ReadCanonicalVarint(&r, &count)) {
    return absl::InvalidArgumentError("update: truncated tensor count");
  }
  if (count != layout.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("update: has ", count, " tensors, expected ", layout.size()));
  }

  records->assign(layout.size(), TensorRecord{});
  summary->chain = spec;
  summary->nnz_per_tensor.assign(layout.size(), 0);
  summary->index_encoding_per_tensor.assign(layout.size(), IndexEncoding::kDense);
  uint64_t flat_offset = 0;
  uint64_t total_nnz = 0;
  for (size_t t = 0; t < layout.size(); ++t) {
    const absl::string_view want = layout[t].name;
    TensorRecord& rec = (*records)[t];
    const auto truncated = [&](absl::string_view what) {
      return TensorError(t, want, "truncated ", what);
    };
    uint64_t name_len;
    const uint8_t* name_bytes;
    if (!ReadCanonicalVarint(&r, &name_len) || name_len > kMaxTensorNameBytes ||
        !r.Skip(static_cast<size_t>(name_len), &name_bytes)) {
      return truncated("or oversized name");
    }
    const absl::string_view name(reinterpret_cast<const char*>(name_bytes),
                                 static_cast<size_t>(name_len));
    if (name != want) {
      return TensorError(t, want, "name '", name, "' does not match the expected name");
    }
    if (!ReadCanonicalVarint(&r, &rec.numel)) return truncated("numel");
    if (rec.numel != layout[t].numel || rec.numel > kMaxTensorNumel) {
      return TensorError(t, want, "numel ", rec.numel, " does not match the expected ",
                         layout[t].numel);
    }
    uint8_t codec;
    if (!r.ReadU8(&codec)) return truncated("codec id");
    if (codec > static_cast<uint8_t>(Quantizer::kQ4)) {
      return TensorError(t, want, "unknown codec id ", codec);
    }
    rec.codec = static_cast<Quantizer>(codec);
    if (rec.codec != spec.quantizer) {
      return TensorError(t, want, "codec id ", codec, " does not match the chain '", chain_text,
                         "'");
    }
    if (IsIntCodec(rec.codec)) {
      uint64_t block;
      if (!ReadCanonicalVarint(&r, &block)) return truncated("block size");
      if (block != spec.block_size) {
        return TensorError(t, want, "block size ", block, " does not match the chain '", chain_text,
                           "'");
      }
      rec.block = static_cast<uint32_t>(block);
    }
    uint8_t ienc;
    if (!r.ReadU8(&ienc)) return truncated("index encoding");
    if (ienc > static_cast<uint8_t>(IndexEncoding::kBitmap)) {
      return TensorError(t, want, "unknown index encoding ", ienc);
    }
    rec.index_encoding = static_cast<IndexEncoding>(ienc);
    if (spec.sparsifier == Sparsifier::kNone && rec.index_encoding != IndexEncoding::kDense) {
      return TensorError(t, want, "sparse index encoding but the chain has no sparsifier");
    }
    if (rec.index_encoding == IndexEncoding::kDense) {
      rec.nnz = rec.numel;
    } else {
      if (!ReadCanonicalVarint(&r, &rec.nnz)) return truncated("entry count");
      if (rec.nnz > rec.numel) {
        return TensorError(t, want, "count mismatch: ", rec.nnz, " entries for ", rec.numel,
                           " values");
      }
    }
    if (spec.sparsifier == Sparsifier::kTopK || spec.sparsifier == Sparsifier::kRandK) {
      const uint64_t want_nnz = KeptCount(spec.fraction, rec.numel);
      if (rec.nnz != want_nnz) {
        return TensorError(t, want, "count mismatch: ", rec.nnz, " entries, the chain keeps ",
                           want_nnz);
      }
    }
    switch (rec.index_encoding) {
      case IndexEncoding::kDense:
        break;
      case IndexEncoding::kVarintDelta: {
        uint64_t len;
        if (!ReadCanonicalVarint(&r, &len) || len > r.remaining() ||
            !r.Skip(static_cast<size_t>(len), &rec.index_data)) {
          return truncated("varint index section");
        }
        absl::Status s = ValidateVarintIndices(t, want, rec.index_data, static_cast<size_t>(len),
                                               rec.nnz, rec.numel);
        if (!s.ok()) return s;
        break;
      }
      case IndexEncoding::kBitpackedDelta: {
        uint8_t w;
        if (!r.ReadU8(&w)) return truncated("index bit width");
        if (w < 1 || w > 32) return TensorError(t, want, "unsupported index bit width ", w);
        rec.width = w;
        const uint64_t len = (rec.nnz * w + 7) / 8;
        if (len > r.remaining() || !r.Skip(static_cast<size_t>(len), &rec.index_data)) {
          return truncated("bit-packed index section");
        }
        absl::Status s = ValidatePackedIndices(t, want, rec.index_data, static_cast<size_t>(len), w,
                                               rec.nnz, rec.numel);
        if (!s.ok()) return s;
        break;
      }
      case IndexEncoding::kBitmap: {
        const uint64_t len = (rec.numel + 7) / 8;
        if (len > r.remaining() || !r.Skip(static_cast<size_t>(len), &rec.index_data)) {
          return truncated("bitmap index section");
        }
        absl::Status s = ValidateBitmap(t, want, rec.index_data, rec.nnz, rec.numel);
        if (!s.ok()) return s;
        break;
      }
    }
    const uint64_t ns = IsIntCodec(rec.codec) ? NumScales(rec.nnz, rec.block) : 0;
    const uint64_t value_bytes = ValueSectionBytes(rec.codec, rec.block, rec.nnz);
    if (value_bytes > r.remaining()) return truncated("values");
    const uint8_t* section;
    r.Skip(static_cast<size_t>(value_bytes), &section);
    rec.scales = section;
    rec.values = section + 4 * ns;
    absl::Status s = ValidateValues(t, want, rec);
    if (!s.ok()) return s;

    rec.flat_offset = flat_offset;
    flat_offset += rec.numel;
    total_nnz += rec.nnz;
    summary->nnz_per_tensor[t] = rec.nnz;
    summary->index_encoding_per_tensor[t] = rec.index_encoding;
  }
  if (r.remaining() != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("update: ", r.remaining(), " trailing bytes after the last tensor"));
  }
  if (spec.sparsifier == Sparsifier::kTopKGlobal) {
    const uint64_t want_nnz = GlobalKeptCount(spec, flat_offset);
    if (total_nnz != want_nnz) {
      return absl::InvalidArgumentError(absl::StrCat(
          "update: count mismatch: ", total_nnz, " entries in total, the chain keeps ", want_nnz));
    }
  }
  summary->total_numel = flat_offset;
  summary->total_nnz = total_nnz;
  return absl::OkStatus();
}

// Streams tensor-local indices of a validated record in blocks.
class IndexCursor {
 public:
  explicit IndexCursor(const TensorRecord& rec)
      : rec_(rec), p_(rec.index_data), bits_(rec.index_data, rec.index_data + IndexLen(rec)) {}

  // Fills out[0..n) with the next n indices.
  void Next(size_t n, uint32_t* out) {
    switch (rec_.index_encoding) {
      case IndexEncoding::kVarintDelta:
        for (size_t j = 0; j < n; ++j) {
          uint32_t d = 0;
          int shift = 0;
          uint8_t b;
          do {
            b = *p_++;
            d |= static_cast<uint32_t>(b & 0x7F) << shift;
            shift += 7;
          } while (b & 0x80);
          prev_ = started_ ? prev_ + d : d;
          started_ = true;
          out[j] = prev_;
        }
        break;
      case IndexEncoding::kBitpackedDelta:
        for (size_t j = 0; j < n; ++j) {
          const uint32_t d = bits_.Get(rec_.width);
          prev_ = started_ ? prev_ + d : d;
          started_ = true;
          out[j] = prev_;
        }
        break;
      case IndexEncoding::kBitmap: {
        size_t j = 0;
        while (j < n) {
          while (current_ == 0) {
            current_ = rec_.index_data[byte_];
            base_ = static_cast<uint32_t>(byte_) * 8;
            ++byte_;
          }
          const int bit = __builtin_ctz(current_);
          current_ &= current_ - 1;
          out[j++] = base_ + static_cast<uint32_t>(bit);
        }
        break;
      }
      case IndexEncoding::kDense:
        break;
    }
  }

 private:
  static size_t IndexLen(const TensorRecord& rec) {
    if (rec.index_encoding == IndexEncoding::kBitpackedDelta) {
      return static_cast<size_t>((rec.nnz * rec.width + 7) / 8);
    }
    return 0;
  }

  const TensorRecord& rec_;
  const uint8_t* p_;
  BitReader bits_;
  uint32_t prev_ = 0;
  bool started_ = false;
  size_t byte_ = 0;
  uint32_t current_ = 0;
  uint32_t base_ = 0;
};

// Decodes values [first, first + n) of a validated record. `first` is a multiple of 2.
void DecodeValues(const TensorRecord& rec, const std::vector<float>& scales, uint64_t first,
                  size_t n, int8_t* qbuf, float* out) {
  switch (rec.codec) {
    case Quantizer::kFp32:
      std::memcpy(out, rec.values + 4 * first, 4 * n);
      break;
    case Quantizer::kFp16:
      DecodeHalf(rec.values + 2 * first, n, out);
      break;
    case Quantizer::kInt8:
      DequantizeSymmetricRange(reinterpret_cast<const int8_t*>(rec.values) + first, first, n,
                               scales.data(), rec.block, out);
      break;
    case Quantizer::kQ4:
      UnpackInt4(rec.values + first / 2, n, qbuf);
      DequantizeSymmetricRange(qbuf, first, n, scales.data(), rec.block, out);
      break;
  }
}

void Emit(const std::vector<TensorRecord>& records, UpdateSink* sink) {
  constexpr size_t kBlock = UpdateSink::kDecodeBlock;
  static_assert(kBlock % 2 == 0, "q4 decoding needs even block starts");
  std::vector<float> values(kBlock);
  std::vector<uint32_t> indices(kBlock);
  std::vector<int8_t> qbuf(kBlock);
  std::vector<float> scales;
  for (size_t t = 0; t < records.size(); ++t) {
    const TensorRecord& rec = records[t];
    sink->BeginTensor(t, rec.flat_offset, rec.numel, rec.nnz);
    if (IsIntCodec(rec.codec)) {
      scales.resize(NumScales(rec.nnz, rec.block));
      if (!scales.empty()) std::memcpy(scales.data(), rec.scales, 4 * scales.size());
    }
    IndexCursor cursor(rec);
    for (uint64_t first = 0; first < rec.nnz; first += kBlock) {
      const size_t n = static_cast<size_t>(std::min<uint64_t>(kBlock, rec.nnz - first));
      DecodeValues(rec, scales, first, n, qbuf.data(), values.data());
      if (rec.index_encoding == IndexEncoding::kDense) {
        sink->Dense(rec.flat_offset + first, absl::MakeConstSpan(values.data(), n));
      } else {
        cursor.Next(n, indices.data());
        sink->Sparse(rec.flat_offset, absl::MakeConstSpan(indices.data(), n),
                     absl::MakeConstSpan(values.data(), n));
      }
    }
  }
}

}  // namespace

// ---- Sinks -------------------------------------------------------------------------------------

void DenseWriteSink::Dense(uint64_t flat_begin, absl::Span<const float> values) {
  std::memcpy(out_.data() + flat_begin, values.data(), values.size() * sizeof(float));
}

void DenseWriteSink::Sparse(uint64_t flat_base, absl::Span<const uint32_t> local_indices,
                            absl::Span<const float> values) {
  float* base = out_.data() + flat_base;
  for (size_t i = 0; i < values.size(); ++i) base[local_indices[i]] = values[i];
}

void WeightedAddSink::Dense(uint64_t flat_begin, absl::Span<const float> values) {
  double* dst = sum_.data() + flat_begin;
  const double w = weight_;
  for (size_t i = 0; i < values.size(); ++i) dst[i] += w * static_cast<double>(values[i]);
}

void WeightedAddSink::Sparse(uint64_t flat_base, absl::Span<const uint32_t> local_indices,
                             absl::Span<const float> values) {
  double* base = sum_.data() + flat_base;
  const double w = weight_;
  for (size_t i = 0; i < values.size(); ++i) {
    base[local_indices[i]] += w * static_cast<double>(values[i]);
  }
}

// ---- Sizes -------------------------------------------------------------------------------------

uint64_t IndexSectionBytes(IndexEncoding encoding, absl::Span<const uint32_t> indices,
                           uint64_t numel) {
  return IndexBytes(encoding, ComputeDeltaStats(indices), indices.size(), numel);
}

IndexEncoding ChooseIndexEncoding(absl::Span<const uint32_t> indices, uint64_t numel) {
  return Choose(ComputeDeltaStats(indices), indices.size(), numel);
}

uint64_t ValueSectionBytes(Quantizer quantizer, uint32_t block_size, uint64_t nnz) {
  switch (quantizer) {
    case Quantizer::kFp32:
      return 4 * nnz;
    case Quantizer::kFp16:
      return 2 * nnz;
    case Quantizer::kInt8:
      return 4 * NumScales(nnz, block_size) + nnz;
    case Quantizer::kQ4:
      return 4 * NumScales(nnz, block_size) + (nnz + 1) / 2;
  }
  return 0;
}

uint64_t EncodedSizeBytes(const ChainSpec& spec, absl::Span<const TensorLayout> layout,
                          absl::Span<const std::vector<uint32_t>> kept) {
  uint64_t total = HeaderBytes(spec.ToString(), layout.size());
  for (size_t t = 0; t < layout.size(); ++t) {
    const uint64_t numel = layout[t].numel;
    total += TensorFixedBytes(spec, layout[t].name.size(), numel);
    if (kept.empty()) {
      total += ValueSectionBytes(spec.quantizer, spec.block_size, numel);
      continue;
    }
    const absl::Span<const uint32_t> idx = kept[t];
    const DeltaStats s = ComputeDeltaStats(idx);
    total += IndexBytes(Choose(s, idx.size(), numel), s, idx.size(), numel);
    total += ValueSectionBytes(spec.quantizer, spec.block_size, idx.size());
  }
  return total;
}

uint64_t MaxEncodedSizeBytes(const ChainSpec& spec, absl::Span<const TensorLayout> layout) {
  uint64_t model = 0;
  for (const TensorLayout& l : layout) model += l.numel;
  const uint64_t global_k = GlobalKeptCount(spec, model);
  uint64_t total = HeaderBytes(spec.ToString(), layout.size());
  for (const TensorLayout& l : layout) {
    const uint64_t numel = l.numel;
    total += TensorFixedBytes(spec, l.name.size(), numel);
    uint64_t nnz = numel;
    switch (spec.sparsifier) {
      case Sparsifier::kNone:
        break;
      case Sparsifier::kTopK:
      case Sparsifier::kRandK:
        nnz = KeptCount(spec.fraction, numel);
        break;
      case Sparsifier::kTopKGlobal:
        nnz = std::min(numel, global_k);
        break;
    }
    if (spec.sparsifier != Sparsifier::kNone) {
      // Any index encoding the decoder accepts: each delta is < numel (a canonical varint of at
      // most VarintSize(numel) bytes) or at most 32 bits packed; or a bitmap.
      const uint64_t per = numel == 0 ? 1 : VarintSize(numel - 1);
      const uint64_t varint = VarintSize(nnz * per) + nnz * per;
      const uint64_t packed = 1 + 4 * nnz;
      const uint64_t bitmap = (numel + 7) / 8;
      total += VarintSize(nnz) + std::max({varint, packed, bitmap});
    }
    total += ValueSectionBytes(spec.quantizer, spec.block_size, nnz);
  }
  return total;
}

// ---- Encode ------------------------------------------------------------------------------------

absl::StatusOr<std::string> EncodeUpdate(const ChainSpec& spec,
                                         absl::Span<const TensorView> tensors, ErrorFeedback* ef,
                                         uint64_t seed) {
  if (absl::Status s = ValidateChain(spec); !s.ok()) return s;
  uint64_t total = 0;
  for (size_t t = 0; t < tensors.size(); ++t) {
    const TensorView& tv = tensors[t];
    if (tv.values.size() > kMaxTensorNumel) {
      return TensorError(t, tv.name, "more than ", kMaxTensorNumel, " values");
    }
    if (tv.name.size() > kMaxTensorNameBytes) {
      return TensorError(t, tv.name.substr(0, 64), "name longer than ", kMaxTensorNameBytes,
                         " bytes");
    }
    total += tv.values.size();
  }
  const bool use_ef = spec.error_feedback;
  if (use_ef) {
    if (ef == nullptr) {
      return absl::InvalidArgumentError("the chain has 'ef' but no ErrorFeedback state was given");
    }
    if (ef->dim() != total) {
      return absl::InvalidArgumentError(
          absl::StrCat("error-feedback state has ", ef->dim(), " entries, the update has ", total));
    }
  }

  // Reject non-finite input before touching any state.
  {
    uint64_t offset = 0;
    for (size_t t = 0; t < tensors.size(); ++t) {
      const absl::Span<const float> x = tensors[t].values;
      const float* r = use_ef ? ef->residual().data() + offset : nullptr;
      uint32_t bad = 0;
      if (r == nullptr) {
        for (size_t i = 0; i < x.size(); ++i) {
          bad |= static_cast<uint32_t>((FloatBits(x[i]) & 0x7F800000u) == 0x7F800000u);
        }
      } else {
        for (size_t i = 0; i < x.size(); ++i) {
          bad |= static_cast<uint32_t>((FloatBits(x[i] + r[i]) & 0x7F800000u) == 0x7F800000u);
        }
      }
      if (bad) {
        return TensorError(t, tensors[t].name,
                           use_ef ? "NaN or Inf in delta + residual" : "NaN or Inf in delta");
      }
      offset += x.size();
    }
  }

  // The values to compress: the delta, or with error feedback delta + residual computed in place
  // in the residual buffer (which then holds what is not sent once each tensor is encoded).
  std::vector<absl::Span<const float>> inputs(tensors.size());
  {
    uint64_t offset = 0;
    for (size_t t = 0; t < tensors.size(); ++t) {
      const absl::Span<const float> x = tensors[t].values;
      if (use_ef) {
        float* r = ef->mutable_residual().data() + offset;
        for (size_t i = 0; i < x.size(); ++i) r[i] = x[i] + r[i];
        inputs[t] = absl::MakeConstSpan(r, x.size());
      } else {
        inputs[t] = x;
      }
      offset += x.size();
    }
  }

  std::vector<std::vector<uint32_t>> global_kept;
  if (spec.sparsifier == Sparsifier::kTopKGlobal) {
    GlobalTopKIndices(inputs, GlobalKeptCount(spec, total), &global_kept);
  }

  const std::string chain = spec.ToString();
  std::string out;
  if (spec.sparsifier == Sparsifier::kNone) {
    // Dense chains: the size is known up front (names aside), so allocate once.
    out.reserve(HeaderBytes(chain, tensors.size()) + 32 * tensors.size() +
                ValueSectionBytes(spec.quantizer, spec.block_size, total) +
                (IsIntCodec(spec.quantizer) ? 4 * tensors.size() : 0));
  }
  out.append(kUpdateMagic, 4);
  out.push_back(static_cast<char>(kUpdateFormatVersion));
  AppendVarint(&out, chain.size());
  out.append(chain);
  AppendVarint(&out, tensors.size());

  std::vector<uint32_t> local_kept, mags;
  std::vector<float> gathered, recon, scales;
  std::vector<int8_t> qbuf;
  const bool is_int = IsIntCodec(spec.quantizer);
  uint64_t offset = 0;
  for (size_t t = 0; t < tensors.size(); ++t) {
    const absl::Span<const float> in = inputs[t];
    const uint64_t numel = in.size();

    const std::vector<uint32_t>* kept = nullptr;
    switch (spec.sparsifier) {
      case Sparsifier::kNone:
        break;
      case Sparsifier::kTopK:
        TopKIndices(in, KeptCount(spec.fraction, numel), &local_kept, &mags);
        kept = &local_kept;
        break;
      case Sparsifier::kRandK: {
        SplitMix64 rng = SplitMix64::ForStream(seed, t, kStreamRandK);
        RandomKIndices(numel, KeptCount(spec.fraction, numel), rng, &local_kept);
        kept = &local_kept;
        break;
      }
      case Sparsifier::kTopKGlobal:
        kept = &global_kept[t];
        break;
    }
    const bool dense = kept == nullptr || kept->size() == numel;
    const uint64_t nnz = dense ? numel : kept->size();
    const float* v = in.data();
    if (!dense) {
      gathered.resize(nnz);
      for (size_t j = 0; j < nnz; ++j) gathered[j] = in[(*kept)[j]];
      v = gathered.data();
    }

    AppendVarint(&out, tensors[t].name.size());
    out.append(tensors[t].name.data(), tensors[t].name.size());
    AppendVarint(&out, numel);
    out.push_back(static_cast<char>(spec.quantizer));
    if (is_int) AppendVarint(&out, spec.block_size);
    if (dense) {
      out.push_back(static_cast<char>(IndexEncoding::kDense));
    } else {
      const DeltaStats stats = ComputeDeltaStats(*kept);
      const IndexEncoding e = Choose(stats, nnz, numel);
      out.push_back(static_cast<char>(e));
      WriteIndices(e, *kept, stats, numel, &out);
    }

    const size_t value_pos = out.size();
    out.resize(value_pos + ValueSectionBytes(spec.quantizer, spec.block_size, nnz));
    uint8_t* dst = reinterpret_cast<uint8_t*>(out.data()) + value_pos;
    SplitMix64 rounding_rng = SplitMix64::ForStream(seed, t, kStreamRounding);
    SplitMix64* rng = spec.stochastic ? &rounding_rng : nullptr;
    const float* sent = v;  // what the decoder reconstructs for the kept values
    switch (spec.quantizer) {
      case Quantizer::kFp32:
        if (nnz > 0) std::memcpy(dst, v, 4 * nnz);
        break;
      case Quantizer::kFp16:
        EncodeHalf(v, nnz, rng, dst);
        if (use_ef) {
          recon.resize(nnz);
          DecodeHalf(dst, nnz, recon.data());
          sent = recon.data();
        }
        break;
      case Quantizer::kInt8:
      case Quantizer::kQ4: {
        const int qmax = QMax(spec.quantizer);
        const size_t ns = NumScales(nnz, spec.block_size);
        scales.resize(ns);
        ComputeScales(v, nnz, qmax, spec.block_size, scales.data());
        if (ns > 0) std::memcpy(dst, scales.data(), 4 * ns);
        int8_t* q;
        if (spec.quantizer == Quantizer::kInt8) {
          q = reinterpret_cast<int8_t*>(dst + 4 * ns);
        } else {
          qbuf.resize(nnz);
          q = qbuf.data();
        }
        QuantizeSymmetric(v, nnz, scales.data(), spec.block_size, qmax, rng, q);
        if (spec.quantizer == Quantizer::kQ4) PackInt4(q, nnz, dst + 4 * ns);
        if (use_ef) {
          recon.resize(nnz);
          DequantizeSymmetric(q, nnz, scales.data(), spec.block_size, recon.data());
          sent = recon.data();
        }
        break;
      }
    }

    if (use_ef) {
      // residual = input - sent; the residual buffer currently holds the input.
      float* r = ef->mutable_residual().data() + offset;
      if (dense) {
        for (size_t i = 0; i < nnz; ++i) r[i] = r[i] - sent[i];
      } else {
        for (size_t j = 0; j < nnz; ++j) {
          const uint32_t i = (*kept)[j];
          r[i] = r[i] - sent[j];
        }
      }
    }
    offset += numel;
  }
  return out;
}

// ---- Decode ------------------------------------------------------------------------------------

absl::StatusOr<UpdateSummary> ValidateUpdate(absl::string_view encoded,
                                             absl::Span<const TensorLayout> layout,
                                             const DecodeOptions& options) {
  std::vector<TensorRecord> records;
  UpdateSummary summary;
  absl::Status s = ParseUpdate(encoded, layout, options, &records, &summary);
  if (!s.ok()) return s;
  return summary;
}

absl::Status DecodeUpdate(absl::string_view encoded, absl::Span<const TensorLayout> layout,
                          UpdateSink* sink, const DecodeOptions& options) {
  std::vector<TensorRecord> records;
  UpdateSummary summary;
  absl::Status s = ParseUpdate(encoded, layout, options, &records, &summary);
  if (!s.ok()) return s;
  Emit(records, sink);
  return absl::OkStatus();
}

absl::Status DecodeToDense(absl::string_view encoded, absl::Span<const TensorLayout> layout,
                           std::vector<float>* out, const DecodeOptions& options) {
  std::vector<TensorRecord> records;
  UpdateSummary summary;
  absl::Status s = ParseUpdate(encoded, layout, options, &records, &summary);
  if (!s.ok()) return s;
  out->assign(summary.total_numel, 0.0f);
  DenseWriteSink sink(absl::MakeSpan(*out));
  Emit(records, &sink);
  return absl::OkStatus();
}

}  // namespace edgefl::compression
