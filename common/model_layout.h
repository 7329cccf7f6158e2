// The codec layout (tensor names and sizes, in wire order) of a model spec.
#ifndef EDGEFL_COMMON_MODEL_LAYOUT_H_
#define EDGEFL_COMMON_MODEL_LAYOUT_H_

#include <vector>

#include "absl/types/span.h"
#include "compression/update_codec.h"
#include "protos/edgefl.pb.h"

namespace edgefl {

inline std::vector<compression::TensorLayout> LayoutOf(const proto::ModelSpec& spec) {
  std::vector<compression::TensorLayout> layout;
  layout.reserve(spec.tensors_size());
  for (const proto::TensorSpec& t : spec.tensors()) {
    uint64_t numel = 1;
    for (int64_t d : t.shape()) numel *= static_cast<uint64_t>(d);
    layout.push_back({t.name(), numel});
  }
  return layout;
}

// Views of `flat` (the concatenated tensors) cut along `layout`. `flat` must hold exactly the
// layout's total size.
inline std::vector<compression::TensorView> ViewsOf(
    const std::vector<compression::TensorLayout>& layout, absl::Span<const float> flat) {
  std::vector<compression::TensorView> views;
  views.reserve(layout.size());
  size_t offset = 0;
  for (const auto& t : layout) {
    views.push_back({t.name, flat.subspan(offset, t.numel)});
    offset += t.numel;
  }
  return views;
}

}  // namespace edgefl

#endif  // EDGEFL_COMMON_MODEL_LAYOUT_H_
