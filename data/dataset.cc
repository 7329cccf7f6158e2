#include "data/dataset.h"

#include <sys/stat.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <memory>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace edgefl::data {
namespace {

constexpr uint32_t kLabelsMagic = 2049;  // 0x00000801: unsigned byte, 1 dimension
constexpr uint32_t kImagesMagic = 2051;  // 0x00000803: unsigned byte, 3 dimensions
constexpr uint32_t kMaxItems = 1u << 30;
constexpr uint32_t kMaxSide = 4096;
constexpr size_t kBlockBytes = 256 * 1024;  // decompression granularity for image rows

// A zlib reader for a gzipped or plain file (gzread passes plain files through unchanged).
class GzFile {
 public:
  GzFile(const GzFile&) = delete;
  GzFile& operator=(const GzFile&) = delete;
  ~GzFile() {
    if (file_ != nullptr) gzclose(file_);
  }

  // NOT_FOUND when `path` does not exist; UNAVAILABLE when it cannot be opened otherwise.
  static absl::StatusOr<std::unique_ptr<GzFile>> Open(const std::string& path) {
    struct stat st;
    if (::stat(path.c_str(), &st) != 0) {
      const int err = errno;
      const std::string msg = absl::StrCat("cannot open ", path, ": ", std::strerror(err));
      return err == ENOENT || err == ENOTDIR ? absl::NotFoundError(msg)
                                             : absl::UnavailableError(msg);
    }
    if (S_ISDIR(st.st_mode)) {
      return absl::InvalidArgumentError(absl::StrCat(path, " is a directory, not an IDX file"));
    }
    errno = 0;
    gzFile f = gzopen(path.c_str(), "rb");
    if (f == nullptr) {
      return absl::UnavailableError(
          absl::StrCat("cannot open ", path, ": ", errno ? std::strerror(errno) : "gzopen failed"));
    }
    gzbuffer(f, 128 * 1024);
    return std::unique_ptr<GzFile>(new GzFile(path, f));
  }

  // Reads exactly `n` bytes; INVALID_ARGUMENT ("truncated" or "corrupt") naming `what` otherwise.
  absl::Status ReadExactly(void* buf, size_t n, const char* what) {
    auto* out = static_cast<unsigned char*>(buf);
    size_t done = 0;
    while (done < n) {
      const unsigned chunk =
          static_cast<unsigned>(std::min<size_t>(n - done, std::numeric_limits<int>::max()));
      const int got = gzread(file_, out + done, chunk);
      if (got < 0) {
        int errnum = 0;
        const char* msg = gzerror(file_, &errnum);
        return absl::InvalidArgumentError(absl::StrCat(path_, ": corrupt data while reading ", what,
                                                       ": ", msg ? msg : "zlib error"));
      }
      if (got == 0) {
        return absl::InvalidArgumentError(absl::StrCat(path_, ": truncated: ", what, " needs ", n,
                                                       " bytes, only ", done, " present"));
      }
      done += static_cast<size_t>(got);
    }
    return absl::OkStatus();
  }

  absl::StatusOr<uint32_t> ReadBigEndian32(const char* what) {
    unsigned char b[4];
    RETURN_IF_ERROR(ReadExactly(b, 4, what));
    return (uint32_t{b[0]} << 24) | (uint32_t{b[1]} << 16) | (uint32_t{b[2]} << 8) | b[3];
  }

  const std::string& path() const { return path_; }

 private:
  GzFile(std::string path, gzFile f) : path_(std::move(path)), file_(f) {}

  std::string path_;
  gzFile file_ = nullptr;
};

absl::Status CheckMagic(const GzFile& f, uint32_t got, uint32_t want, const char* kind) {
  if (got == want) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      f.path(), ": bad magic number ", got, " (expected ", want, " for an IDX ", kind, " file)"));
}

absl::Status CheckRows(const std::vector<int64_t>& rows, int64_t count, const std::string& path) {
  for (size_t i = 0; i < rows.size(); ++i) {
    if (rows[i] < 0 || rows[i] >= count) {
      return absl::InvalidArgumentError(absl::StrCat("row ", rows[i], " (selection entry ", i,
                                                     ") out of range: ", path, " has ", count,
                                                     " rows"));
    }
    if (i > 0 && rows[i] <= rows[i - 1]) {
      return absl::InvalidArgumentError(
          absl::StrCat("row selection must be ascending and unique: entry ", i, " (", rows[i],
                       ") follows ", rows[i - 1]));
    }
  }
  return absl::OkStatus();
}

// ReadIdxImages, also reporting the number of images the file declares.
absl::StatusOr<ImageDataset> ReadImages(const std::string& path,
                                        const std::optional<std::vector<int64_t>>& rows,
                                        int64_t* file_count) {
  ASSIGN_OR_RETURN(std::unique_ptr<GzFile> f, GzFile::Open(path));
  ASSIGN_OR_RETURN(uint32_t magic, f->ReadBigEndian32("magic number"));
  RETURN_IF_ERROR(CheckMagic(*f, magic, kImagesMagic, "image (idx3)"));
  ASSIGN_OR_RETURN(uint32_t count, f->ReadBigEndian32("image count"));
  ASSIGN_OR_RETURN(uint32_t height, f->ReadBigEndian32("row count"));
  ASSIGN_OR_RETURN(uint32_t width, f->ReadBigEndian32("column count"));
  if (count > kMaxItems || height == 0 || width == 0 || height > kMaxSide || width > kMaxSide) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": implausible dimensions ", count, "x", height, "x", width));
  }
  if (file_count != nullptr) *file_count = count;
  if (rows.has_value()) RETURN_IF_ERROR(CheckRows(*rows, count, path));

  const size_t row_bytes = size_t{height} * width;
  const int64_t keep = rows.has_value() ? static_cast<int64_t>(rows->size()) : count;
  ImageDataset out;
  out.rows = static_cast<int>(height);
  out.cols = static_cast<int>(width);
  out.pixels.resize(static_cast<size_t>(keep) * row_bytes);
  if (!rows.has_value()) {
    // Everything is kept: decompress straight into the destination.
    RETURN_IF_ERROR(f->ReadExactly(out.pixels.data(), out.pixels.size(), "image data"));
    return out;
  }
  // Stream blocks of rows through a small buffer, keeping only the selected ones, and stop after
  // the last selected row.
  const int64_t rows_per_block = std::max<int64_t>(1, kBlockBytes / row_bytes);
  std::vector<uint8_t> block(static_cast<size_t>(rows_per_block) * row_bytes);
  int64_t next = 0;  // index into *rows
  for (int64_t first = 0; next < keep; first += rows_per_block) {
    const int64_t n = std::min<int64_t>(rows_per_block, count - first);
    RETURN_IF_ERROR(f->ReadExactly(block.data(), static_cast<size_t>(n) * row_bytes, "image data"));
    for (; next < keep && (*rows)[next] < first + n; ++next) {
      std::memcpy(out.pixels.data() + static_cast<size_t>(next) * row_bytes,
                  block.data() + static_cast<size_t>((*rows)[next] - first) * row_bytes, row_bytes);
    }
  }
  return out;
}

}  // namespace

absl::StatusOr<std::vector<uint8_t>> ReadIdxLabels(const std::string& path) {
  ASSIGN_OR_RETURN(std::unique_ptr<GzFile> f, GzFile::Open(path));
  ASSIGN_OR_RETURN(uint32_t magic, f->ReadBigEndian32("magic number"));
  RETURN_IF_ERROR(CheckMagic(*f, magic, kLabelsMagic, "label (idx1)"));
  ASSIGN_OR_RETURN(uint32_t count, f->ReadBigEndian32("label count"));
  if (count > kMaxItems) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": implausible label count ", count));
  }
  std::vector<uint8_t> labels(count);
  RETURN_IF_ERROR(f->ReadExactly(labels.data(), labels.size(), "label data"));
  for (size_t i = 0; i < labels.size(); ++i) {
    if (labels[i] > 9) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": label ", int{labels[i]}, " at row ", i, " is not in 0..9"));
    }
  }
  return labels;
}

absl::StatusOr<ImageDataset> ReadIdxImages(const std::string& path,
                                           const std::optional<std::vector<int64_t>>& rows) {
  return ReadImages(path, rows, /*file_count=*/nullptr);
}

absl::StatusOr<ImageDataset> LoadFashionMnist(const std::string& dir, Split split,
                                              const std::optional<std::vector<int64_t>>& rows,
                                              int64_t max_rows) {
  const std::string prefix = absl::StrCat(dir, "/", split == Split::kTrain ? "train" : "t10k");
  const std::string images_path = prefix + "-images-idx3-ubyte.gz";
  const std::string labels_path = prefix + "-labels-idx1-ubyte.gz";
  if (max_rows < 0) {
    return absl::InvalidArgumentError(absl::StrCat("max_rows must be >= 0, got ", max_rows));
  }
  ASSIGN_OR_RETURN(std::vector<uint8_t> all_labels, ReadIdxLabels(labels_path));
  const int64_t num_labels = static_cast<int64_t>(all_labels.size());

  std::optional<std::vector<int64_t>> selection;
  if (rows.has_value()) {
    const size_t keep = max_rows > 0 ? std::min<size_t>(rows->size(), max_rows) : rows->size();
    selection.emplace(rows->begin(), rows->begin() + keep);
  } else if (max_rows > 0 && max_rows < num_labels) {
    selection.emplace(max_rows);
    for (int64_t i = 0; i < max_rows; ++i) (*selection)[i] = i;
  }

  int64_t num_images = -1;
  ASSIGN_OR_RETURN(ImageDataset data, ReadImages(images_path, selection, &num_images));
  if (num_images != num_labels) {
    return absl::InvalidArgumentError(absl::StrCat(images_path, " holds ", num_images,
                                                   " images but ", labels_path, " holds ",
                                                   num_labels, " labels"));
  }
  if (selection.has_value()) {
    data.labels.reserve(selection->size());
    for (int64_t r : *selection) data.labels.push_back(all_labels[r]);
  } else {
    data.labels = std::move(all_labels);
  }
  return data;
}

}  // namespace edgefl::data
