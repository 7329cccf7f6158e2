// Fashion-MNIST (gzipped IDX) reading, kept as uint8 until batching. Torch-free.
#ifndef EDGEFL_DATA_DATASET_H_
#define EDGEFL_DATA_DATASET_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace edgefl::data {

inline constexpr char kDefaultFashionMnistDir[] = "/usr/share/datasets/fashion-mnist";

// N images of rows x cols uint8 pixels, row-major, with a label 0..9 each.
struct ImageDataset {
  int64_t size() const { return static_cast<int64_t>(labels.size()); }
  int rows = 28;
  int cols = 28;
  std::vector<uint8_t> pixels;  // size() * rows * cols
  std::vector<uint8_t> labels;  // size()
};

enum class Split { kTrain, kTest };

// Reads an IDX1 label file (gzipped or plain, detected by magic). INVALID_ARGUMENT on a bad magic
// number, truncated data or labels > 9; NOT_FOUND if missing.
absl::StatusOr<std::vector<uint8_t>> ReadIdxLabels(const std::string& path);

// Reads an IDX3 image file streaming through zlib, keeping only the rows listed in `rows`
// (sorted ascending, unique, all < the file's count) or all rows when `rows` is nullopt, so
// memory is the kept rows only. INVALID_ARGUMENT for bad magic, truncation or a row out of range.
// The result's `labels` are left empty (pair it with ReadIdxLabels, or use LoadFashionMnist).
// With a selection, decompression stops after the last selected row, so truncation past it goes
// unnoticed.
absl::StatusOr<ImageDataset> ReadIdxImages(const std::string& path,
                                           const std::optional<std::vector<int64_t>>& rows);

// Reads Fashion-MNIST's {train,t10k}-{images-idx3,labels-idx1}-ubyte.gz from `dir`, keeping
// `rows` (see ReadIdxImages) in the order given (which must be ascending) and their labels.
// `max_rows` > 0 keeps only the first max_rows of the selection. NOT_FOUND naming the missing file.
absl::StatusOr<ImageDataset> LoadFashionMnist(const std::string& dir, Split split,
                                              const std::optional<std::vector<int64_t>>& rows,
                                              int64_t max_rows = 0);

}  // namespace edgefl::data

#endif  // EDGEFL_DATA_DATASET_H_
