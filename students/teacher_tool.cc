// student_teacher_tool: trains a teacher centrally for bench/student_fmnist when no federated
// global model (workload W's model_final.f32) is at hand: ModelRunner on the full Fashion-MNIST
// training set, starting from given weights, plain SGD as in workload W, and writes raw float32.
//
//   student_teacher_tool MODEL INIT.f32 EPOCHS LR OUT.f32 [THREADS]
//
// Prints the test accuracy after each epoch. Built with everything else (so that it cannot rot unnoticed).
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "common/file_util.h"
#include "data/dataset.h"
#include "models/model_runner.h"
#include "models/model_spec.h"

int main(int argc, char** argv) {
  using namespace edgefl;
  if (argc < 6) {
    std::fprintf(stderr, "usage: %s MODEL INIT.f32 EPOCHS LR OUT.f32 [THREADS]\n", argv[0]);
    return 2;
  }
  const std::string model = argv[1];
  const int epochs = std::atoi(argv[3]);
  const double lr = std::atof(argv[4]);
  const int threads = argc > 6 ? std::atoi(argv[6]) : 1;
  auto fail = [](const absl::Status& s) {
    std::fprintf(stderr, "student_teacher_tool: %s\n", s.ToString().c_str());
    return 2;
  };
  auto runner = models::ModelRunner::Create(model, threads);
  if (!runner.ok()) return fail(runner.status());
  auto init = models::LoadRawWeights(argv[2], (*runner)->spec());
  if (!init.ok()) return fail(init.status());
  if (auto s = (*runner)->SetWeights(*init); !s.ok()) return fail(s);
  auto train = data::LoadFashionMnist(data::kDefaultFashionMnistDir, data::Split::kTrain, std::nullopt);
  if (!train.ok()) return fail(train.status());
  auto test = data::LoadFashionMnist(data::kDefaultFashionMnistDir, data::Split::kTest, std::nullopt);
  if (!test.ok()) return fail(test.status());
  for (int e = 0; e < epochs; ++e) {
    models::TrainOptions o;
    o.epochs = 1;
    o.batch_size = 32;
    o.lr = lr;
    o.seed = static_cast<uint64_t>(e);
    auto r = (*runner)->Train(*train, o, nullptr);
    if (!r.ok()) return fail(r.status());
    auto ev = (*runner)->Evaluate(*test, 32);
    if (!ev.ok()) return fail(ev.status());
    std::printf("epoch %d: train loss %.4f, test accuracy %.4f (%.0f s)\n", e + 1, r->mean_loss,
                ev->accuracy, r->seconds);
    std::fflush(stdout);
  }
  std::vector<float> w;
  (*runner)->GetWeights(&w);
  const std::string bytes(reinterpret_cast<const char*>(w.data()), w.size() * sizeof(float));
  if (auto s = edgefl::WriteFileAtomically(argv[5], bytes); !s.ok()) return fail(s);
  return 0;
}
