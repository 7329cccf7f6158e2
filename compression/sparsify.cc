#include "compression/sparsify.h"

#include <algorithm>
#include <cstring>

namespace edgefl::compression {
namespace {

// |x| as an order-preserving integer: for non-NaN floats, comparing these bit patterns as
// unsigned integers orders by magnitude; it is also a strict weak order when NaNs are present.
inline uint32_t MagnitudeBits(float v) {
  uint32_t b;
  std::memcpy(&b, &v, sizeof(b));
  return b & 0x7FFFFFFFu;
}

void FillMagnitudes(absl::Span<const float> x, uint32_t* dst) {
  for (size_t i = 0; i < x.size(); ++i) dst[i] = MagnitudeBits(x[i]);
}

// The k-th largest value of `mags` (1 <= k <= size); reorders mags.
uint32_t KthLargest(std::vector<uint32_t>& mags, uint64_t k) {
  auto nth = mags.begin() + static_cast<ptrdiff_t>(mags.size() - k);
  std::nth_element(mags.begin(), nth, mags.end());
  return *nth;
}

}  // namespace

void TopKIndices(absl::Span<const float> x, uint64_t k, std::vector<uint32_t>* out,
                 std::vector<uint32_t>* scratch) {
  out->clear();
  const size_t n = x.size();
  if (k > n) k = n;
  if (k == 0) return;
  out->reserve(k);
  if (k == n) {
    for (size_t i = 0; i < n; ++i) out->push_back(static_cast<uint32_t>(i));
    return;
  }
  std::vector<uint32_t> local;
  std::vector<uint32_t>& mags = scratch != nullptr ? *scratch : local;
  mags.resize(n);
  FillMagnitudes(x, mags.data());
  const uint32_t threshold = KthLargest(mags, k);
  // mags is permuted; count the strictly larger entries among the top part (those after nth).
  uint64_t greater = 0;
  for (size_t i = n - k + 1; i < n; ++i) greater += mags[i] > threshold;
  uint64_t ties = k - greater;  // entries equal to the threshold to keep, lowest index first
  for (size_t i = 0; i < n; ++i) {
    const uint32_t m = MagnitudeBits(x[i]);
    if (m > threshold) {
      out->push_back(static_cast<uint32_t>(i));
    } else if (m == threshold && ties > 0) {
      out->push_back(static_cast<uint32_t>(i));
      --ties;
    }
  }
}

std::vector<uint32_t> TopKIndices(absl::Span<const float> x, uint64_t k) {
  std::vector<uint32_t> out;
  TopKIndices(x, k, &out);
  return out;
}

void GlobalTopKIndices(absl::Span<const absl::Span<const float>> tensors, uint64_t k,
                       std::vector<std::vector<uint32_t>>* out) {
  out->assign(tensors.size(), {});
  uint64_t total = 0;
  for (const auto& t : tensors) total += t.size();
  if (k > total) k = total;
  if (k == 0) return;
  if (k == total) {
    for (size_t t = 0; t < tensors.size(); ++t) {
      (*out)[t].resize(tensors[t].size());
      for (size_t i = 0; i < tensors[t].size(); ++i) (*out)[t][i] = static_cast<uint32_t>(i);
    }
    return;
  }
  std::vector<uint32_t> mags(total);
  size_t pos = 0;
  for (const auto& t : tensors) {
    FillMagnitudes(t, mags.data() + pos);
    pos += t.size();
  }
  const uint32_t threshold = KthLargest(mags, k);
  uint64_t greater = 0;
  for (size_t i = total - k + 1; i < total; ++i) greater += mags[i] > threshold;
  uint64_t ties = k - greater;
  for (size_t t = 0; t < tensors.size(); ++t) {
    const absl::Span<const float> x = tensors[t];
    std::vector<uint32_t>& idx = (*out)[t];
    for (size_t i = 0; i < x.size(); ++i) {
      const uint32_t m = MagnitudeBits(x[i]);
      if (m > threshold) {
        idx.push_back(static_cast<uint32_t>(i));
      } else if (m == threshold && ties > 0) {
        idx.push_back(static_cast<uint32_t>(i));
        --ties;
      }
    }
  }
}

void RandomKIndices(uint64_t n, uint64_t k, SplitMix64& rng, std::vector<uint32_t>* out) {
  out->clear();
  if (k > n) k = n;
  out->reserve(k);
  uint64_t needed = k;
  for (uint64_t i = 0; i < n && needed > 0; ++i) {
    const uint64_t remaining = n - i;
    // A uniform integer in [0, remaining) (multiply-shift; bias < remaining / 2^64). Select with
    // probability needed / remaining; when needed == remaining every draw selects.
    const uint64_t draw =
        static_cast<uint64_t>((static_cast<unsigned __int128>(rng.Next()) * remaining) >> 64);
    if (draw < needed) {
      out->push_back(static_cast<uint32_t>(i));
      --needed;
    }
  }
}

}  // namespace edgefl::compression
