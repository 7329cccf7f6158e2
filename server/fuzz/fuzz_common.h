// Shared pieces of the server's libFuzzer targets (server/fuzz/fuzz_*.cc) and of the program that
// writes their seed corpora (corpus_gen.cc): the input framing, a small model, and a fixed token
// key.
//
// Framing: a fuzz input is a sequence of records, each a varint length followed by that many
// bytes; a truncated last record takes whatever bytes remain, and missing records are empty.
// Targets document what each record means.
#ifndef EDGEFL_SERVER_FUZZ_FUZZ_COMMON_H_
#define EDGEFL_SERVER_FUZZ_FUZZ_COMMON_H_

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <initializer_list>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "google/protobuf/stubs/logging.h"
#include "protos/edgefl.pb.h"

namespace edgefl::fuzz {

#define FUZZ_CHECK(cond)                                                                   \
  do {                                                                                     \
    if (!(cond)) {                                                                         \
      std::fprintf(stderr, "FUZZ_CHECK failed: %s at %s:%d\n", #cond, __FILE__, __LINE__); \
      std::abort();                                                                        \
    }                                                                                      \
  } while (0)

class Records {
 public:
  Records(const uint8_t* data, size_t size)
      : data_(reinterpret_cast<const char*>(data)), size_(size) {}
  // The next record ("" once the input is exhausted).
  absl::string_view Next() {
    uint64_t len = 0;
    int shift = 0;
    while (pos_ < size_ && shift < 64) {
      const uint8_t b = static_cast<uint8_t>(data_[pos_++]);
      len |= static_cast<uint64_t>(b & 0x7f) << shift;
      shift += 7;
      if ((b & 0x80) == 0) break;
    }
    const size_t n = static_cast<size_t>(std::min<uint64_t>(len, size_ - pos_));
    absl::string_view out(data_ + pos_, n);
    pos_ += n;
    return out;
  }
  bool done() const { return pos_ >= size_; }

 private:
  const char* data_;
  size_t size_;
  size_t pos_ = 0;
};

// Encodes records in the framing above (for corpus_gen).
inline std::string Frame(const std::vector<std::string>& records) {
  std::string out;
  for (const std::string& r : records) {
    uint64_t n = r.size();
    do {
      uint8_t b = n & 0x7f;
      n >>= 7;
      if (n != 0) b |= 0x80;
      out.push_back(static_cast<char>(b));
    } while (n != 0);
    out += r;
  }
  return out;
}

// A small model (the layout of compression/fuzz_layout.h) so that every update decodes fast.
inline proto::ModelSpec FuzzSpec() {
  proto::ModelSpec spec;
  spec.set_model("fuzz");
  auto add = [&](const char* name, std::vector<int64_t> shape) {
    proto::TensorSpec* t = spec.add_tensors();
    t->set_name(name);
    for (int64_t d : shape) t->add_shape(d);
  };
  add("conv.w", {3, 4, 5, 5});
  add("conv.b", {12});
  add("fc.w", {257});
  return spec;
}

// The secret the fuzzers' token authority uses, and the time they verify tokens at (seeds hold
// tokens minted with it, valid at this time).
inline constexpr char kFuzzSecret[] = "edgefl-fuzz-secret-0123456789abcdef-0123456789";
inline absl::Time FuzzNow() { return absl::FromUnixSeconds(1800000000); }

// protobuf logs every string field with invalid UTF-8 it parses or prints; on fuzz input that is
// expected and only slows the fuzzer down.
inline void SilenceProtobufLogs() {
  google::protobuf::SetLogHandler(
      [](google::protobuf::LogLevel, const char*, int, const std::string&) {});
}

// The secret part of a presented token (its MAC: the 64 lowercase hex chars after the last '.')
// never appears in a refusal message. Token ids and client ids are not secret and may appear. The MAC is only
// checked when the caller did not also put the same text in a field that messages legitimately
// name (a hostname, a claimed client id, a certificate identity): echoing the caller's own
// field is not a leak, and without this exemption the fuzzer finds exactly that coincidence.
inline void CheckTokenNotEchoed(absl::string_view message, absl::string_view token,
                                std::initializer_list<absl::string_view> caller_fields) {
  const size_t dot = token.rfind('.');
  if (dot == absl::string_view::npos) return;
  const absl::string_view mac = token.substr(dot + 1);
  if (mac.size() != 64 || mac.find_first_not_of("0123456789abcdef") != absl::string_view::npos) {
    return;
  }
  if (message.find(mac) == absl::string_view::npos) return;
  if (token.substr(0, dot).find(mac) != absl::string_view::npos) return;  // the token's own id
  for (absl::string_view field : caller_fields) {
    if (field.find(mac) != absl::string_view::npos) return;
  }
  std::fprintf(stderr, "token MAC echoed in refusal message: %.*s\n",
               static_cast<int>(message.size()), message.data());
  std::abort();
}

// A clock stopped at FuzzNow(), so that verdicts do not depend on when the fuzzer runs.
class FixedClock : public Clock {
 public:
  absl::Time Now() const override { return FuzzNow(); }
  bool AwaitWithDeadline(absl::Mutex*, const absl::Condition& cond, absl::Time) const override {
    return cond.Eval();
  }
};

}  // namespace edgefl::fuzz

#endif  // EDGEFL_SERVER_FUZZ_FUZZ_COMMON_H_
