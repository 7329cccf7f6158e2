#include "aggregation/state_format.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/sha256.h"

namespace edgefl::aggregation {
namespace {

constexpr char kMagic[] = "EFLAGST1";  // 8 bytes without the terminator
constexpr size_t kMagicSize = 8;
constexpr uint32_t kVersion = 1;
constexpr size_t kChecksumSize = 32;
constexpr size_t kMaxKind = 255;

void AppendLe(uint64_t value, int bytes, std::string* out) {
  for (int i = 0; i < bytes; ++i) out->push_back(static_cast<char>((value >> (8 * i)) & 0xff));
}

uint64_t ReadLe(absl::string_view bytes, size_t pos, int n) {
  uint64_t value = 0;
  for (int i = 0; i < n; ++i) {
    value |= static_cast<uint64_t>(static_cast<unsigned char>(bytes[pos + i])) << (8 * i);
  }
  return value;
}

uint64_t DoubleBits(double d) {
  uint64_t u;
  std::memcpy(&u, &d, sizeof(u));
  return u;
}

double BitsDouble(uint64_t u) {
  double d;
  std::memcpy(&d, &u, sizeof(d));
  return d;
}

}  // namespace

void StateWriter::PutU64(uint64_t value) { AppendLe(value, 8, &payload_); }
void StateWriter::PutF64(double value) { AppendLe(DoubleBits(value), 8, &payload_); }
void StateWriter::PutF64Array(absl::Span<const double> values) {
  PutU64(values.size());
  payload_.reserve(payload_.size() + 8 * values.size());
  for (double v : values) PutF64(v);
}
void StateWriter::PutString(absl::string_view value) {
  PutU64(value.size());
  payload_.append(value.data(), value.size());
}

std::string StateWriter::Finish() const {
  std::string out(kMagic, kMagicSize);
  AppendLe(kVersion, 4, &out);
  AppendLe(kind_.size(), 4, &out);
  out += kind_;
  AppendLe(payload_.size(), 8, &out);
  out += payload_;
  out += Sha256::Of(out);
  return out;
}

absl::StatusOr<StateReader> StateReader::Open(absl::string_view blob,
                                              absl::string_view expected_kind) {
  const std::string what = absl::StrCat("state for ", expected_kind, ": ");
  if (blob.size() < kMagicSize + 8 + kChecksumSize ||
      blob.substr(0, kMagicSize) != absl::string_view(kMagic, kMagicSize)) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, "not an aggregation state blob (bad magic or ", blob.size(), " bytes)"));
  }
  const uint64_t version = ReadLe(blob, kMagicSize, 4);
  if (version != kVersion) {
    return absl::InvalidArgumentError(absl::StrCat(what, "unsupported format version ", version,
                                                   " (this build reads ", kVersion, ")"));
  }
  const uint64_t kind_size = ReadLe(blob, kMagicSize + 4, 4);
  const size_t header = kMagicSize + 8;
  if (kind_size == 0 || kind_size > kMaxKind ||
      blob.size() < header + kind_size + 8 + kChecksumSize) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, "truncated or malformed header (kind length ", kind_size, ")"));
  }
  const absl::string_view kind = blob.substr(header, kind_size);
  const uint64_t payload_size = ReadLe(blob, header + kind_size, 8);
  const size_t payload_pos = header + kind_size + 8;
  if (payload_size != blob.size() - payload_pos - kChecksumSize) {
    return absl::InvalidArgumentError(absl::StrCat(what, "payload length ", payload_size,
                                                   " does not match the blob's ", blob.size(),
                                                   " bytes (truncated or padded)"));
  }
  const absl::string_view body = blob.substr(0, blob.size() - kChecksumSize);
  if (Sha256::Of(std::string_view(body.data(), body.size())) !=
      blob.substr(blob.size() - kChecksumSize)) {
    return absl::InvalidArgumentError(absl::StrCat(what, "checksum mismatch (corrupt state)"));
  }
  if (kind != expected_kind) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, "the blob holds state of kind \"", kind, "\""));
  }
  return StateReader(std::string(kind), blob.substr(payload_pos, payload_size));
}

absl::Status StateReader::Short(absl::string_view field, size_t need) const {
  return absl::InvalidArgumentError(absl::StrCat("state for ", kind_, ": field ", field, " needs ",
                                                 need, " bytes, ", payload_.size() - pos_,
                                                 " remain"));
}

absl::StatusOr<uint64_t> StateReader::GetU64(absl::string_view field) {
  if (payload_.size() - pos_ < 8) return Short(field, 8);
  const uint64_t value = ReadLe(payload_, pos_, 8);
  pos_ += 8;
  return value;
}

absl::StatusOr<double> StateReader::GetF64(absl::string_view field) {
  if (payload_.size() - pos_ < 8) return Short(field, 8);
  const double value = BitsDouble(ReadLe(payload_, pos_, 8));
  pos_ += 8;
  return value;
}

absl::Status StateReader::GetF64Array(absl::string_view field, size_t expected_size,
                                      std::vector<double>* out) {
  absl::StatusOr<uint64_t> count = GetU64(field);
  if (!count.ok()) return count.status();
  if (*count != expected_size) {
    return absl::InvalidArgumentError(absl::StrCat("state for ", kind_, ": field ", field,
                                                   " holds ", *count, " values, expected ",
                                                   expected_size));
  }
  if ((payload_.size() - pos_) / 8 < expected_size) return Short(field, 8 * expected_size);
  out->resize(expected_size);
  for (size_t i = 0; i < expected_size; ++i) {
    (*out)[i] = BitsDouble(ReadLe(payload_, pos_, 8));
    pos_ += 8;
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> StateReader::GetString(absl::string_view field, size_t max_size) {
  absl::StatusOr<uint64_t> size = GetU64(field);
  if (!size.ok()) return size.status();
  if (*size > max_size) {
    return absl::InvalidArgumentError(absl::StrCat("state for ", kind_, ": field ", field, " is ",
                                                   *size, " bytes, at most ", max_size,
                                                   " allowed"));
  }
  if (payload_.size() - pos_ < *size) return Short(field, *size);
  std::string value(payload_.substr(pos_, *size));
  pos_ += *size;
  return value;
}

absl::Status StateReader::Finish() const {
  if (pos_ != payload_.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "state for ", kind_, ": ", payload_.size() - pos_, " unexpected trailing payload bytes"));
  }
  return absl::OkStatus();
}

}  // namespace edgefl::aggregation
