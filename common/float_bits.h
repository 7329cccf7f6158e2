// The bit pattern of a float and back (a C++17 stand-in for std::bit_cast; memcpy makes no
// aliasing assumptions and compiles to a register move). Header-only, no dependencies: used by
// the torch-free codecs in compression/ as well as by models/.
#ifndef EDGEFL_COMMON_FLOAT_BITS_H_
#define EDGEFL_COMMON_FLOAT_BITS_H_

#include <cstdint>
#include <cstring>

namespace edgefl {

inline uint32_t FloatToBits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof(u));
  return u;
}

inline float BitsToFloat(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof(f));
  return f;
}

}  // namespace edgefl

#endif  // EDGEFL_COMMON_FLOAT_BITS_H_
