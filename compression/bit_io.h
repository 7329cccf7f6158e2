// Internal byte/bit-level helpers for the update wire format: LEB128 varints, a bounds-checked
// reader, and LSB-first bit packing. Not part of the public API of edgefl_compression.
#ifndef EDGEFL_COMPRESSION_BIT_IO_H_
#define EDGEFL_COMPRESSION_BIT_IO_H_

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

#include "absl/strings/string_view.h"

namespace edgefl::compression::internal {

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "edgefl compression assumes a little-endian host (x86-64, aarch64)"
#endif

// Bytes LEB128 needs for v (1..10).
inline uint64_t VarintSize(uint64_t v) {
  uint64_t n = 1;
  while (v >= 0x80) {
    v >>= 7;
    ++n;
  }
  return n;
}

// Writes v as LEB128 at p; returns the byte after it.
inline uint8_t* PutVarint(uint8_t* p, uint64_t v) {
  while (v >= 0x80) {
    *p++ = static_cast<uint8_t>(v | 0x80);
    v >>= 7;
  }
  *p++ = static_cast<uint8_t>(v);
  return p;
}

inline void AppendVarint(std::string* out, uint64_t v) {
  uint8_t buf[10];
  uint8_t* end = PutVarint(buf, v);
  out->append(reinterpret_cast<const char*>(buf), static_cast<size_t>(end - buf));
}

inline void AppendU32(std::string* out, uint32_t v) {
  char buf[4];
  std::memcpy(buf, &v, 4);
  out->append(buf, 4);
}

// Bounds-checked sequential reader over a byte buffer. Every Read* returns false (and leaves
// the position unspecified) when the buffer ends early or the value is malformed.
class Reader {
 public:
  Reader(const uint8_t* data, size_t size) : p_(data), end_(data + size) {}
  explicit Reader(absl::string_view s)
      : Reader(reinterpret_cast<const uint8_t*>(s.data()), s.size()) {}

  size_t remaining() const { return static_cast<size_t>(end_ - p_); }
  const uint8_t* position() const { return p_; }

  bool ReadU8(uint8_t* v) {
    if (p_ == end_) return false;
    *v = *p_++;
    return true;
  }

  // LEB128, at most 10 bytes, no bits beyond 64.
  bool ReadVarint(uint64_t* v) {
    uint64_t result = 0;
    for (int shift = 0; shift < 70; shift += 7) {
      if (p_ == end_) return false;
      const uint8_t b = *p_++;
      if (shift == 63 && (b & 0x7E) != 0) return false;  // overflow past bit 63
      result |= static_cast<uint64_t>(b & 0x7F) << shift;
      if ((b & 0x80) == 0) {
        *v = result;
        return true;
      }
    }
    return false;
  }

  // Advances by n bytes, returning their start in *out.
  bool Skip(size_t n, const uint8_t** out) {
    if (remaining() < n) return false;
    *out = p_;
    p_ += n;
    return true;
  }

 private:
  const uint8_t* p_;
  const uint8_t* end_;
};

// Decodes one LEB128 varint from [*p, end) for values that must fit in 32 bits (index deltas):
// at most 5 bytes. Returns false on truncation or a value >= 2^32.
inline bool ReadVarint32(const uint8_t** p, const uint8_t* end, uint32_t* v) {
  uint64_t result = 0;
  const uint8_t* q = *p;
  for (int shift = 0; shift < 35; shift += 7) {
    if (q == end) return false;
    const uint8_t b = *q++;
    result |= static_cast<uint64_t>(b & 0x7F) << shift;
    if ((b & 0x80) == 0) {
      if (result > 0xFFFFFFFFull) return false;
      *v = static_cast<uint32_t>(result);
      *p = q;
      return true;
    }
  }
  return false;
}

// LSB-first bit packer of values up to 32 bits wide into a preallocated buffer.
class BitWriter {
 public:
  explicit BitWriter(uint8_t* out) : out_(out) {}
  void Put(uint32_t v, int width) {
    acc_ |= static_cast<uint64_t>(v) << nbits_;
    nbits_ += width;
    while (nbits_ >= 8) {
      *out_++ = static_cast<uint8_t>(acc_);
      acc_ >>= 8;
      nbits_ -= 8;
    }
  }
  // Writes the final partial byte (zero-padded); returns the end pointer.
  uint8_t* Finish() {
    if (nbits_ > 0) *out_++ = static_cast<uint8_t>(acc_);
    acc_ = 0;
    nbits_ = 0;
    return out_;
  }

 private:
  uint8_t* out_;
  uint64_t acc_ = 0;
  int nbits_ = 0;
};

// LSB-first reader matching BitWriter. The caller guarantees that enough bytes exist for all
// Get calls (it checks the section length up front); Get never reads past `end`.
class BitReader {
 public:
  BitReader(const uint8_t* p, const uint8_t* end) : p_(p), end_(end) {}
  uint32_t Get(int width) {
    while (nbits_ < width) {
      const uint64_t byte = p_ < end_ ? *p_++ : 0;
      acc_ |= byte << nbits_;
      nbits_ += 8;
    }
    const uint32_t v = static_cast<uint32_t>(acc_ & ((uint64_t{1} << width) - 1));
    acc_ >>= width;
    nbits_ -= width;
    return v;
  }
  // Bits that were loaded but not consumed (the padding of the last byte once all values are
  // read); must be zero in a canonical encoding.
  uint64_t leftover() const { return acc_; }

 private:
  const uint8_t* p_;
  const uint8_t* end_;
  uint64_t acc_ = 0;
  int nbits_ = 0;
};

}  // namespace edgefl::compression::internal

#endif  // EDGEFL_COMPRESSION_BIT_IO_H_
