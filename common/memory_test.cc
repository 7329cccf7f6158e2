#include "common/memory.h"

#include <malloc.h>

#include <cstdlib>

#include "gtest/gtest.h"

namespace edgefl {
namespace {

// Whether a block of `bytes` came from mmap rather than the heap: glibc counts mmapped blocks in
// mallinfo2().hblks. The volatile store keeps the compiler from eliding the allocation.
bool AllocationIsMmapped(size_t bytes) {
  const size_t before = mallinfo2().hblks;
  void* p = std::malloc(bytes);
  static_cast<volatile char*>(p)[0] = 1;
  const size_t during = mallinfo2().hblks;
  std::free(p);
  return during > before;
}

constexpr size_t kMiB = size_t{1} << 20;

// Each check runs in a child that re-executes this binary (the "threadsafe" death-test style), so
// that its malloc starts from glibc's defaults (a 128 KiB mmap threshold) and reads the
// environment set here. Exit code 0: the block came from where the test expects.
class MallocTuningTest : public ::testing::Test {
 protected:
  void SetUp() override { GTEST_FLAG_SET(death_test_style, "threadsafe"); }
  void TearDown() override {
    unsetenv("MALLOC_MMAP_THRESHOLD_");
  }
};

TEST_F(MallocTuningTest, TrainingKeepsFc1SizedGradientsOnTheHeap) {
  // fedavg_cnn's fc1 gradient is 6.4 MB: under the training threshold, it must not be an mmap.
  EXPECT_EXIT(std::exit(AllocationIsMmapped(6 * kMiB) ? 1 : 0), ::testing::ExitedWithCode(1), "")
      << "without tuning, glibc's default threshold mmaps it (the check can tell)";
  EXPECT_EXIT(
      {
        TuneMallocForTraining();
        std::exit(AllocationIsMmapped(6 * kMiB) ? 1 : 0);
      },
      ::testing::ExitedWithCode(0), "");
  EXPECT_EXIT(
      {
        TuneMallocForTraining();
        std::exit(AllocationIsMmapped(kTrainingMmapThresholdBytes + kMiB) ? 0 : 1);
      },
      ::testing::ExitedWithCode(0), "")
      << "blocks over the threshold still come from mmap";
}

TEST_F(MallocTuningTest, ServingMmapsModelSizedBlocks) {
  EXPECT_EXIT(
      {
        TuneMallocForServing();
        std::exit(AllocationIsMmapped(6 * kMiB) ? 0 : 1);
      },
      ::testing::ExitedWithCode(0), "");
  EXPECT_EXIT(
      {
        TuneMallocForServing();
        std::exit(AllocationIsMmapped(2 * kMiB) ? 1 : 0);
      },
      ::testing::ExitedWithCode(0), "");
}

TEST_F(MallocTuningTest, AnOperatorsEnvironmentWins) {
  // glibc applies MALLOC_MMAP_THRESHOLD_ itself at start-up; the tuning must not override it.
  setenv("MALLOC_MMAP_THRESHOLD_", "1048576", 1);
  EXPECT_EXIT(
      {
        TuneMallocForTraining();
        std::exit(AllocationIsMmapped(2 * kMiB) ? 0 : 1);
      },
      ::testing::ExitedWithCode(0), "")
      << "training's 8 MiB threshold replaced the operator's 1 MiB";
  setenv("MALLOC_MMAP_THRESHOLD_", "16777216", 1);
  EXPECT_EXIT(
      {
        TuneMallocForServing();
        std::exit(AllocationIsMmapped(6 * kMiB) ? 1 : 0);
      },
      ::testing::ExitedWithCode(0), "")
      << "serving's 4 MiB threshold replaced the operator's 16 MiB";
}

TEST(RssTest, PeakIsAtLeastCurrentAndBothAreKnown) {
  const int64_t current = CurrentRssBytes();
  EXPECT_GT(current, 0);
  EXPECT_GE(PeakRssBytes(), current);
}

}  // namespace
}  // namespace edgefl
