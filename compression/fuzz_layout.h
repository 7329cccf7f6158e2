// The small model layout shared by the fuzzer (fuzz_decode.cc), its corpus generator
// (fuzz_corpus_gen.cc) and the test that checks the committed corpus still decodes.
#ifndef EDGEFL_COMPRESSION_FUZZ_LAYOUT_H_
#define EDGEFL_COMPRESSION_FUZZ_LAYOUT_H_

#include <string>
#include <vector>

#include "compression/update_codec.h"

namespace edgefl::compression {

inline std::vector<TensorLayout> FuzzLayout() {
  return {{"conv.w", 300}, {"conv.b", 12}, {"fc.w", 257}};
}

// The chains the seed corpus covers, one file each (file name = index + chain with '|' and ':'
// replaced).
inline std::vector<std::string> FuzzCorpusChains() {
  return {"dense",
          "fp16",
          "int8",
          "int8:b64:sr",
          "q4",
          "q4:b32",
          "topk:0.05|int8|ef",
          "topk:0.3|fp16",
          "randk:0.1|q4",
          "randk:0.5",
          "topk_global:40|int8:b16",
          "topk_global:0.9|q4:sr"};
}

}  // namespace edgefl::compression

#endif  // EDGEFL_COMPRESSION_FUZZ_LAYOUT_H_
