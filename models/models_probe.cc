// models_probe: trains one registered model on a Fashion-MNIST shard and evaluates it, printing
// timings, so one client's cost (time, peak RSS under /usr/bin/time -v) can be measured alone.
//
//   models_probe [model] [train_rows] [epochs] [lr] [threads] [partition_file client_id]
//                [test_rows] [init_weights]
//
// train_rows > 0 takes the first rows of the training set; with a partition file the client's
// shard is used instead ("-" for none); test_rows -1 = all 10,000, 0 = no evaluation. Environment:
// BATCH, MOMENTUM, SEED, PROXIMAL_MU (training), EVAL_BATCH (default 500). Prints VmRSS/VmHWM
// after each stage, and the SHA-256 of the trained weights (to compare two builds bit for bit).
// Built with everything else, so that it cannot rot unnoticed: <build>/models/models_probe.
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "common/memory.h"
#include "common/sha256.h"
#include "common/threads.h"
#include "data/dataset.h"
#include "models/model_runner.h"
#include "models/model_spec.h"
#include "data/partition.h"

namespace {

// Prints this process's current and peak resident set size (Linux /proc/self/status).
void PrintRss(const char* stage) {
  FILE* f = std::fopen("/proc/self/status", "r");
  if (f == nullptr) return;
  char line[256];
  long rss = -1, hwm = -1;
  while (std::fgets(line, sizeof(line), f) != nullptr) {
    std::sscanf(line, "VmRSS: %ld", &rss);
    std::sscanf(line, "VmHWM: %ld", &hwm);
  }
  std::fclose(f);
  std::printf("  [rss] %-16s VmRSS %7.1f MiB, VmHWM %7.1f MiB\n", stage, rss / 1024.0,
              hwm / 1024.0);
}

int Fail(const absl::Status& s) {
  std::fprintf(stderr, "error: %s\n", s.ToString().c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace edgefl::models;
  namespace data = edgefl::data;
  const std::string model = argc > 1 ? argv[1] : "fedavg_cnn";
  const int64_t train_rows = argc > 2 ? std::atoll(argv[2]) : 6000;
  const int epochs = argc > 3 ? std::atoi(argv[3]) : 1;
  const double lr = argc > 4 ? std::atof(argv[4]) : 0.05;
  const int threads = argc > 5 ? std::atoi(argv[5]) : 1;
  const std::string partition_file = argc > 6 ? argv[6] : "";
  const int client = argc > 7 ? std::atoi(argv[7]) : 0;
  const int64_t test_rows = argc > 8 ? std::atoll(argv[8]) : 1000;
  const int eval_batch = std::getenv("EVAL_BATCH") ? std::atoi(std::getenv("EVAL_BATCH")) : 500;
  const std::string init = argc > 9 ? argv[9] : "";

  PrintRss("start");
  std::optional<std::vector<int64_t>> rows;
  if (!partition_file.empty() && partition_file != "-") {
    auto p = data::ReadPartitionFile(partition_file, 60000);
    if (!p.ok()) return Fail(p.status());
    if (client < 0 || client >= static_cast<int>(p->size())) {
      return Fail(absl::InvalidArgumentError("client out of range"));
    }
    rows = (*p)[client];
  }
  auto train = data::LoadFashionMnist(data::kDefaultFashionMnistDir, data::Split::kTrain, rows,
                                rows.has_value() ? 0 : train_rows);
  if (!train.ok()) return Fail(train.status());
  PrintRss("data loaded");
  // The same process settings as fl-client.
  edgefl::SetBlasThreads(threads);
  edgefl::TuneMallocForTraining();
  auto runner = ModelRunner::Create(model, threads);
  if (!runner.ok()) return Fail(runner.status());
  PrintRss("runner created");
  if (!init.empty()) {
    auto w = LoadRawWeights(init, (*runner)->spec());
    if (!w.ok()) return Fail(w.status());
    if (auto s = (*runner)->SetWeights(*w); !s.ok()) return Fail(s);
  }
  std::printf("%s: %lld params, %lld training images, %d thread(s)\n", model.c_str(),
              static_cast<long long>((*runner)->num_parameters()),
              static_cast<long long>(train->size()), threads);
  TrainOptions options;
  options.epochs = epochs;
  options.lr = lr;
  if (const char* b = std::getenv("BATCH")) options.batch_size = std::atoi(b);
  if (const char* s = std::getenv("SEED")) options.seed = std::atoll(s);
  if (const char* m = std::getenv("MOMENTUM")) options.momentum = std::atof(m);
  if (const char* mu = std::getenv("PROXIMAL_MU")) options.proximal_mu = std::atof(mu);
  auto result = (*runner)->Train(*train, options, nullptr);
  if (!result.ok()) return Fail(result.status());
  PrintRss("trained");
  std::printf("train: loss %.4f acc %.4f, %lld samples/epoch, %.2f s\n", result->mean_loss,
              result->accuracy, static_cast<long long>(result->samples), result->seconds);
  std::vector<float> weights;
  (*runner)->GetWeights(&weights);
  std::printf("weights sha256 %s\n",
              edgefl::Sha256::HexOf(std::string_view(reinterpret_cast<const char*>(weights.data()),
                                                     weights.size() * sizeof(float)))
                  .c_str());
  if (test_rows != 0) {
    auto test = data::LoadFashionMnist(data::kDefaultFashionMnistDir, data::Split::kTest, std::nullopt,
                                 test_rows > 0 ? test_rows : 0);
    if (!test.ok()) return Fail(test.status());
    auto eval = (*runner)->Evaluate(*test, eval_batch);
    if (!eval.ok()) return Fail(eval.status());
    PrintRss("evaluated");
    std::printf("test: loss %.4f acc %.4f on %lld, %.2f s\n", eval->loss, eval->accuracy,
                static_cast<long long>(eval->samples), eval->seconds);
  }
  return 0;
}
