// A small self-describing binary container for the state of aggregation stages (server optimizer
// moments, adaptive clip norm, DP noise RNG, privacy accountant), saved in the checkpoint beside
// the model. protos/ holds the wire contract and is owned elsewhere, so this is a hand format:
//
//   offset  size  field
//   0       8     magic "EFLAGST1"
//   8       4     format version (little-endian uint32, currently 1)
//   12      4     kind length L (little-endian uint32, 1..255)
//   16      L     kind (ASCII, e.g. "server_optimizer.adam")
//   16+L    8     payload length P (little-endian uint64)
//   24+L    P     payload: fields written by StateWriter (u64, f64 and f64-array values; an
//                 array is a u64 count followed by its values); all little-endian
//   24+L+P  32    SHA-256 of every byte before it
//
// Doubles are stored as their IEEE-754 bit pattern, so a round trip is bit-exact.
#ifndef EDGEFL_AGGREGATION_STATE_FORMAT_H_
#define EDGEFL_AGGREGATION_STATE_FORMAT_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace edgefl::aggregation {

// Builds one state blob. Not thread-safe.
class StateWriter {
 public:
  // `kind` names what the state belongs to (1..255 ASCII characters).
  explicit StateWriter(absl::string_view kind) : kind_(kind) {}
  void PutU64(uint64_t value);
  void PutF64(double value);
  void PutF64Array(absl::Span<const double> values);
  void PutString(absl::string_view value);
  // The finished blob: header, payload and checksum.
  std::string Finish() const;

 private:
  std::string kind_;
  std::string payload_;
};

// Reads one state blob written by StateWriter. Every accessor checks bounds; none reads past the
// payload. Errors are INVALID_ARGUMENT naming the problem, prefixed by the kind.
class StateReader {
 public:
  // Checks magic, version, kind (must equal `expected_kind`), lengths and checksum.
  static absl::StatusOr<StateReader> Open(absl::string_view blob, absl::string_view expected_kind);

  absl::StatusOr<uint64_t> GetU64(absl::string_view field);
  absl::StatusOr<double> GetF64(absl::string_view field);
  // Reads an array that must hold exactly `expected_size` values.
  absl::Status GetF64Array(absl::string_view field, size_t expected_size, std::vector<double>* out);
  absl::StatusOr<std::string> GetString(absl::string_view field, size_t max_size);
  // INVALID_ARGUMENT if payload bytes remain unread.
  absl::Status Finish() const;

 private:
  StateReader(std::string kind, absl::string_view payload)
      : kind_(std::move(kind)), payload_(payload) {}
  absl::Status Short(absl::string_view field, size_t need) const;

  std::string kind_;
  absl::string_view payload_;
  size_t pos_ = 0;
};

}  // namespace edgefl::aggregation

#endif  // EDGEFL_AGGREGATION_STATE_FORMAT_H_
