#include "data/dataset.h"

#include <zlib.h>

#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace edgefl::data {
namespace {

using ::testing::HasSubstr;

const std::string kDir = kDefaultFashionMnistDir;

std::string TempPath(const std::string& name) {
  const std::string dir = absl::StrCat(::testing::TempDir(), "/edgefl_dataset_test");
  std::filesystem::create_directories(dir);
  return absl::StrCat(dir, "/", name);
}

void PutBigEndian32(std::vector<uint8_t>& out, uint32_t v) {
  out.push_back(v >> 24);
  out.push_back(v >> 16);
  out.push_back(v >> 8);
  out.push_back(v);
}

// An IDX3 file of `count` images of 2x2 pixels; image i has all pixels = i + 1, `present` of them.
std::vector<uint8_t> SmallImages(uint32_t magic, uint32_t count, uint32_t present) {
  std::vector<uint8_t> out;
  PutBigEndian32(out, magic);
  PutBigEndian32(out, count);
  PutBigEndian32(out, 2);
  PutBigEndian32(out, 2);
  for (uint32_t i = 0; i < present; ++i) out.insert(out.end(), 4, static_cast<uint8_t>(i + 1));
  return out;
}

std::vector<uint8_t> SmallLabels(uint32_t magic, const std::vector<uint8_t>& labels) {
  std::vector<uint8_t> out;
  PutBigEndian32(out, magic);
  PutBigEndian32(out, labels.size());
  out.insert(out.end(), labels.begin(), labels.end());
  return out;
}

void WriteGz(const std::string& path, const std::vector<uint8_t>& bytes) {
  gzFile f = gzopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr) << path;
  ASSERT_EQ(gzwrite(f, bytes.data(), bytes.size()), static_cast<int>(bytes.size()));
  ASSERT_EQ(gzclose(f), Z_OK);
}

void WritePlain(const std::string& path, const std::vector<uint8_t>& bytes) {
  FILE* f = std::fopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr) << path;
  ASSERT_EQ(std::fwrite(bytes.data(), 1, bytes.size(), f), bytes.size());
  std::fclose(f);
}

TEST(Dataset, ReadsRealLabels) {
  auto train = ReadIdxLabels(kDir + "/train-labels-idx1-ubyte.gz");
  ASSERT_TRUE(train.ok()) << train.status();
  auto test = ReadIdxLabels(kDir + "/t10k-labels-idx1-ubyte.gz");
  ASSERT_TRUE(test.ok()) << test.status();
  ASSERT_EQ(train->size(), 60000u);
  ASSERT_EQ(test->size(), 10000u);
  std::vector<int> hist(10, 0);
  for (uint8_t l : *train) {
    ASSERT_LE(l, 9);
    ++hist[l];
  }
  for (int c = 0; c < 10; ++c) EXPECT_EQ(hist[c], 6000) << "class " << c;
}

TEST(Dataset, LoadsFullTestSet) {
  auto data = LoadFashionMnist(kDir, Split::kTest, std::nullopt);
  ASSERT_TRUE(data.ok()) << data.status();
  EXPECT_EQ(data->size(), 10000);
  EXPECT_EQ(data->rows, 28);
  EXPECT_EQ(data->cols, 28);
  EXPECT_EQ(data->pixels.size(), 10000u * 28 * 28);
  // Not all black: the images are real.
  int64_t sum = 0;
  for (uint8_t p : data->pixels) sum += p;
  EXPECT_GT(sum, 10000 * 28 * 28 * 30);
}

TEST(Dataset, RowSubsetEqualsSameRowsOfFullRead) {
  auto full = LoadFashionMnist(kDir, Split::kTest, std::nullopt);
  ASSERT_TRUE(full.ok()) << full.status();
  const std::vector<int64_t> rows = {0, 1, 5, 319, 320, 777, 4242, 9998, 9999};
  auto part = LoadFashionMnist(kDir, Split::kTest, rows);
  ASSERT_TRUE(part.ok()) << part.status();
  ASSERT_EQ(part->size(), static_cast<int64_t>(rows.size()));
  ASSERT_EQ(part->pixels.size(), rows.size() * 784);
  for (size_t i = 0; i < rows.size(); ++i) {
    EXPECT_EQ(part->labels[i], full->labels[rows[i]]) << "row " << rows[i];
    EXPECT_TRUE(std::equal(part->pixels.begin() + i * 784, part->pixels.begin() + (i + 1) * 784,
                           full->pixels.begin() + rows[i] * 784))
        << "row " << rows[i];
  }
  // max_rows keeps a prefix of the selection, or of the file without one.
  auto capped = LoadFashionMnist(kDir, Split::kTest, rows, 3);
  ASSERT_TRUE(capped.ok()) << capped.status();
  ASSERT_EQ(capped->size(), 3);
  EXPECT_EQ(capped->labels[2], full->labels[5]);
  auto first = LoadFashionMnist(kDir, Split::kTest, std::nullopt, 100);
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_EQ(first->size(), 100);
  EXPECT_TRUE(std::equal(first->pixels.begin(), first->pixels.end(), full->pixels.begin()));
}

TEST(Dataset, ReadsTrainRowsNearTheEnd) {
  auto labels = ReadIdxLabels(kDir + "/train-labels-idx1-ubyte.gz");
  ASSERT_TRUE(labels.ok()) << labels.status();
  auto data = LoadFashionMnist(kDir, Split::kTrain, std::vector<int64_t>{3, 59999});
  ASSERT_TRUE(data.ok()) << data.status();
  ASSERT_EQ(data->size(), 2);
  EXPECT_EQ(data->labels[0], (*labels)[3]);
  EXPECT_EQ(data->labels[1], (*labels)[59999]);
}

TEST(Dataset, RejectsBadRowSelection) {
  auto unsorted = LoadFashionMnist(kDir, Split::kTest, std::vector<int64_t>{5, 3});
  EXPECT_EQ(unsorted.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(unsorted.status().message(), HasSubstr("ascending"));
  auto repeated = LoadFashionMnist(kDir, Split::kTest, std::vector<int64_t>{3, 3});
  EXPECT_EQ(repeated.status().code(), absl::StatusCode::kInvalidArgument);
  auto out_of_range = LoadFashionMnist(kDir, Split::kTest, std::vector<int64_t>{1, 10000});
  EXPECT_EQ(out_of_range.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(out_of_range.status().message(), HasSubstr("10000"));
  auto negative = ReadIdxImages(kDir + "/t10k-images-idx3-ubyte.gz", std::vector<int64_t>{-1});
  EXPECT_EQ(negative.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(Dataset, ReadsSmallGzippedAndPlainFiles) {
  const std::string gz = TempPath("small-images.gz");
  const std::string plain = TempPath("small-images.idx");
  WriteGz(gz, SmallImages(2051, 3, 3));
  WritePlain(plain, SmallImages(2051, 3, 3));
  for (const std::string& path : {gz, plain}) {
    auto all = ReadIdxImages(path, std::nullopt);
    ASSERT_TRUE(all.ok()) << all.status();
    EXPECT_EQ(all->rows, 2);
    EXPECT_EQ(all->cols, 2);
    EXPECT_EQ(all->pixels, std::vector<uint8_t>({1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3}));
    auto some = ReadIdxImages(path, std::vector<int64_t>{2});
    ASSERT_TRUE(some.ok()) << some.status();
    EXPECT_EQ(some->pixels, std::vector<uint8_t>({3, 3, 3, 3}));
  }
}

TEST(Dataset, RejectsTruncatedImages) {
  const std::string path = TempPath("truncated-images.gz");
  WriteGz(path, SmallImages(2051, 3, 2));  // declares 3 images, holds 2
  auto all = ReadIdxImages(path, std::nullopt);
  EXPECT_EQ(all.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(all.status().message(), HasSubstr("truncated"));
  auto last = ReadIdxImages(path, std::vector<int64_t>{2});
  EXPECT_EQ(last.status().code(), absl::StatusCode::kInvalidArgument);
  // A header cut short.
  const std::string header = TempPath("short-header.gz");
  WriteGz(header, {0, 0, 8, 3, 0, 0});
  EXPECT_EQ(ReadIdxImages(header, std::nullopt).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(Dataset, RejectsTruncatedGzipStream) {
  // Compress incompressible-ish data, then cut the compressed file in half.
  std::vector<uint8_t> bytes = SmallImages(2051, 500, 500);
  for (size_t i = 16; i < bytes.size(); ++i) bytes[i] = static_cast<uint8_t>(i * 2654435761u >> 13);
  const std::string whole = TempPath("whole.gz");
  WriteGz(whole, bytes);
  const auto size = std::filesystem::file_size(whole);
  const std::string cut = TempPath("cut.gz");
  std::filesystem::copy_file(whole, cut, std::filesystem::copy_options::overwrite_existing);
  std::filesystem::resize_file(cut, size / 2);
  ASSERT_TRUE(ReadIdxImages(whole, std::nullopt).ok());
  auto result = ReadIdxImages(cut, std::nullopt);
  EXPECT_EQ(result.status().code(), absl::StatusCode::kInvalidArgument) << result.status();
}

TEST(Dataset, RejectsBadMagic) {
  const std::string images = TempPath("bad-magic-images.gz");
  WriteGz(images, SmallImages(2049, 3, 3));  // a label magic in an image file
  auto r = ReadIdxImages(images, std::nullopt);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(r.status().message(), HasSubstr("magic"));
  const std::string labels = TempPath("bad-magic-labels.gz");
  WriteGz(labels, SmallLabels(2051, {1, 2}));
  auto l = ReadIdxLabels(labels);
  EXPECT_EQ(l.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(l.status().message(), HasSubstr("magic"));
}

TEST(Dataset, RejectsLabelOutOfRangeAndTruncatedLabels) {
  const std::string bad = TempPath("bad-label.gz");
  WriteGz(bad, SmallLabels(2049, {1, 10, 2}));
  auto l = ReadIdxLabels(bad);
  EXPECT_EQ(l.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(l.status().message(), HasSubstr("label 10"));
  std::vector<uint8_t> bytes = SmallLabels(2049, {1, 2, 3});
  bytes.pop_back();
  const std::string truncated = TempPath("truncated-labels.gz");
  WriteGz(truncated, bytes);
  auto t = ReadIdxLabels(truncated);
  EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(t.status().message(), HasSubstr("truncated"));
}

TEST(Dataset, MissingFileIsNotFound) {
  const std::string missing = TempPath("no-such-file.gz");
  auto l = ReadIdxLabels(missing);
  EXPECT_EQ(l.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(l.status().message(), HasSubstr(missing));
  auto i = ReadIdxImages(missing, std::nullopt);
  EXPECT_EQ(i.status().code(), absl::StatusCode::kNotFound);
  auto d = LoadFashionMnist("/nonexistent/fmnist", Split::kTrain, std::nullopt);
  EXPECT_EQ(d.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(d.status().message(), HasSubstr("/nonexistent/fmnist/train-labels-idx1-ubyte.gz"));
}

TEST(Dataset, RejectsImageLabelCountMismatch) {
  const std::string dir = TempPath("mismatch");
  std::filesystem::create_directories(dir);
  WriteGz(dir + "/t10k-images-idx3-ubyte.gz", SmallImages(2051, 3, 3));
  WriteGz(dir + "/t10k-labels-idx1-ubyte.gz", SmallLabels(2049, {1, 2}));
  auto d = LoadFashionMnist(dir, Split::kTest, std::nullopt);
  EXPECT_EQ(d.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(d.status().message(), HasSubstr("3 images"));
}

}  // namespace
}  // namespace edgefl::data
