#include "common/sha256.h"

#include <openssl/evp.h>

#include <cstdlib>

namespace edgefl {

struct Sha256::Impl {
  EVP_MD_CTX* ctx = nullptr;
  ~Impl() { EVP_MD_CTX_free(ctx); }
};

namespace {
// OpenSSL only fails here on allocation failure or a broken installation; neither is recoverable,
// and the interface promises a digest, so we abort rather than return a wrong value.
void CheckOpenSsl(int ok) {
  if (ok != 1) std::abort();
}
}  // namespace

Sha256::Sha256() : impl_(std::make_unique<Impl>()) {
  impl_->ctx = EVP_MD_CTX_new();
  if (impl_->ctx == nullptr) std::abort();
  CheckOpenSsl(EVP_DigestInit_ex(impl_->ctx, EVP_sha256(), nullptr));
}

Sha256::~Sha256() = default;

void Sha256::Update(std::string_view data) { Update(data.data(), data.size()); }

void Sha256::Update(const void* data, size_t size) {
  if (size == 0) return;
  CheckOpenSsl(EVP_DigestUpdate(impl_->ctx, data, size));
}

std::string Sha256::Finish() {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  CheckOpenSsl(EVP_DigestFinal_ex(impl_->ctx, digest, &len));
  return std::string(reinterpret_cast<const char*>(digest), len);
}

std::string Sha256::Of(std::string_view data) {
  Sha256 hasher;
  hasher.Update(data);
  return hasher.Finish();
}

std::string Sha256::HexOf(std::string_view data) { return ToHex(Of(data)); }

std::string ToHex(std::string_view raw) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(raw.size() * 2);
  for (unsigned char c : raw) {
    out.push_back(kDigits[c >> 4]);
    out.push_back(kDigits[c & 0xf]);
  }
  return out;
}

}  // namespace edgefl
