// SHA-256 through OpenSSL's EVP interface.
#ifndef EDGEFL_COMMON_SHA256_H_
#define EDGEFL_COMMON_SHA256_H_

#include <memory>
#include <string>
#include <string_view>

namespace edgefl {

// Incremental SHA-256. Not thread-safe; one hasher per stream.
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;
  void Update(std::string_view data);
  void Update(const void* data, size_t size);
  // Returns the 32-byte raw digest; the hasher must not be used afterwards.
  std::string Finish();

  // One-shot helpers.
  static std::string Of(std::string_view data);      // 32 raw bytes
  static std::string HexOf(std::string_view data);   // 64 lowercase hex chars

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

std::string ToHex(std::string_view raw);

}  // namespace edgefl

#endif  // EDGEFL_COMMON_SHA256_H_
