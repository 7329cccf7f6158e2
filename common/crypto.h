// Small cryptographic helpers through OpenSSL: random bytes from the CSPRNG, HMAC-SHA256 and a
// constant-time comparison for MACs. Nothing here logs its inputs.
#ifndef EDGEFL_COMMON_CRYPTO_H_
#define EDGEFL_COMMON_CRYPTO_H_

#include <cstddef>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace edgefl {

inline constexpr size_t kHmacSha256Bytes = 32;

// `n` bytes from OpenSSL's CSPRNG (RAND_bytes). INTERNAL if the generator fails (it never
// returns predictable bytes). Thread-safe.
absl::StatusOr<std::string> RandomBytes(size_t n);

// HMAC-SHA256 of `data` under `key` (any length): 32 raw bytes. Thread-safe.
std::string HmacSha256(absl::string_view key, absl::string_view data);

// Whether a == b, in time that depends only on the lengths (CRYPTO_memcmp). Lengths are not
// secret (MACs have a fixed size), so unequal lengths return false at once.
bool ConstantTimeEquals(absl::string_view a, absl::string_view b);

// Lowercase or uppercase hex to bytes; nullopt for an odd length or a non-hex character.
std::optional<std::string> FromHex(absl::string_view hex);

}  // namespace edgefl

#endif  // EDGEFL_COMMON_CRYPTO_H_
