// fl-server's evaluation: each new global model on the Fashion-MNIST test set, through LibTorch
// (models/model_runner). The only part of the server's run that needs torch, in its own library
// (edgefl_server_eval) so the run lifecycle and its tests do not.
#ifndef EDGEFL_SERVER_TEST_SET_EVALUATOR_H_
#define EDGEFL_SERVER_TEST_SET_EVALUATOR_H_

#include <memory>

#include "absl/status/statusor.h"
#include "protos/config.pb.h"
#include "server/run.h"

namespace edgefl::server {

// Loads the test split from config.data_dir (the first config.evaluation.max_samples images,
// 0 = all), sets the BLAS and torch thread counts to config.evaluation.threads and builds the
// config.model() runner; Evaluate uses config.evaluation.batch_size. Errors name the missing data
// folder or the unknown model.
absl::StatusOr<std::unique_ptr<Evaluator>> CreateTestSetEvaluator(
    const proto::ExperimentConfig& config);

}  // namespace edgefl::server

#endif  // EDGEFL_SERVER_TEST_SET_EVALUATOR_H_
