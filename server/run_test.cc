// The run lifecycle without processes: load or resume, checkpoint, pending rounds, evaluation
// and metrics, with a fake evaluator and a simulated clock, in temporary folders.
#include "server/run.h"

#include <stdlib.h>

#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "common/file_util.h"
#include "common/testing/simulated_clock.h"
#include "gtest/gtest.h"
#include "models/model_spec.h"
#include "server/fl_server.h"

namespace edgefl::server {
namespace {

std::string TempDir() {
  std::string tmpl = ::testing::TempDir() + "edgefl-run-XXXXXX";
  return mkdtemp(tmpl.data());
}

// Stands in for the test-set evaluation: accuracy 0.5 + round / 100, and which models it saw.
class FakeEvaluator : public Evaluator {
 public:
  absl::StatusOr<EvalFigures> Evaluate(absl::Span<const float> weights) override {
    seen.emplace_back(weights.begin(), weights.end());
    return EvalFigures{0.5 + weights[0] / 100, 0.25, 1.5};
  }
  std::vector<std::vector<float>> seen;
};

// A closed round's record as the scheduler makes it.
proto::RoundRecord Closed(int64_t round) {
  proto::RoundRecord r;
  r.set_round(round);
  r.set_attempts(1);
  r.set_clients_selected(2);
  r.set_clients_reported(2);
  (*r.mutable_rejected())["invalid_argument"] = round;
  return r;
}

// A model whose first value names the round it belongs to.
std::shared_ptr<const std::vector<float>> ModelOf(const LoadedRun& run, float round) {
  auto model = std::make_shared<std::vector<float>>(run.weights);
  (*model)[0] = round;
  return model;
}

struct Line {
  int64_t round = -1;
  bool evaluated = false;
};

std::vector<Line> MetricsLines(const std::string& dir) {
  std::vector<Line> lines;
  const std::string text = ReadFile(dir + "/" + RunStore::kMetricsFile).value_or("");
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    Line l;
    absl::string_view rest = line.substr(line.find(':') + 1);
    EXPECT_TRUE(absl::SimpleAtoi(rest.substr(0, rest.find(',')), &l.round)) << line;
    EXPECT_EQ(line.back(), '}') << line;
    l.evaluated = line.find("\"test_accuracy\"") != absl::string_view::npos;
    lines.push_back(l);
  }
  return lines;
}

std::vector<int64_t> Rounds(const std::vector<Line>& lines) {
  std::vector<int64_t> rounds;
  for (const Line& l : lines) rounds.push_back(l.round);
  return rounds;
}

class RunFixture : public ::testing::Test {
 protected:
  RunOptions Fresh() const {
    RunOptions o;
    o.out = dir_ + "/run";
    o.overrides = {"model=mlp", "rounds=3", "seed=7"};
    return o;
  }
  RunOptions Resume() const {
    RunOptions o;
    o.out = dir_ + "/run";
    o.resume = true;
    return o;
  }
  std::unique_ptr<RunRecorder> Recorder(LoadedRun* run) {
    RunRecorder::Options o;
    o.config = run->config;
    o.spec = run->spec;
    o.elapsed_before = run->elapsed_seconds;
    absl::StatusOr<std::unique_ptr<RunRecorder>> r =
        RunRecorder::Create(o, &run->store, &evaluator_, &clock_);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? std::move(*r) : nullptr;
  }

  const std::string dir_ = TempDir();
  SimulatedClock clock_;
  FakeEvaluator evaluator_;
};

TEST_F(RunFixture, FreshRunWritesConfigCheckpointMetricsAndFinalModel) {
  absl::StatusOr<LoadedRun> run = LoadOrResumeRun(Fresh(), &clock_);
  ASSERT_TRUE(run.ok()) << run.status();
  EXPECT_EQ(run->completed_rounds, 0);
  EXPECT_FALSE(run->resumed_from.has_value());
  EXPECT_EQ(run->config.model(), "mlp");
  EXPECT_EQ(run->config.rounds(), 3);
  EXPECT_EQ(static_cast<int64_t>(run->weights.size()), models::NumParameters(run->spec));
  EXPECT_EQ(run->weights, *models::InitialWeights("mlp", 7));  // seeded init
  std::unique_ptr<RunRecorder> rec = Recorder(&*run);
  ASSERT_NE(rec, nullptr);
  EXPECT_TRUE(FileExists(run->store.Path(RunStore::kConfigFile)));
  EXPECT_FALSE(FileExists(run->store.Path(RunStore::kCheckpointFile)));

  clock_.AdvanceTime(absl::Seconds(40));
  rec->OnRoundClosed(Closed(1), ModelOf(*run, 1));
  absl::StatusOr<proto::Checkpoint> ckpt = run->store.ReadCheckpoint();
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  EXPECT_EQ(ckpt->round(), 1);
  EXPECT_EQ(ckpt->elapsed_seconds(), 40);
  EXPECT_EQ(ckpt->config().rounds(), 3);
  ASSERT_EQ(ckpt->pending_rounds_size(), 1);  // its line is not written yet
  EXPECT_EQ(ckpt->pending_rounds(0).rejected().at("invalid_argument"), 1);
  EXPECT_EQ(rec->pending_rounds(), (std::vector<int64_t>{1}));
  EXPECT_FALSE(FileExists(run->store.Path(RunStore::kFinalModelFile)));

  rec->OnRoundDone(Closed(1), ModelOf(*run, 1));
  EXPECT_TRUE(rec->pending_rounds().empty());
  for (int r = 2; r <= 3; ++r) {
    rec->OnRoundClosed(Closed(r), ModelOf(*run, r));
    rec->OnRoundDone(Closed(r), ModelOf(*run, r));
  }
  EXPECT_TRUE(rec->status().ok()) << rec->status();
  const std::vector<Line> lines = MetricsLines(run->store.dir());
  EXPECT_EQ(Rounds(lines), (std::vector<int64_t>{1, 2, 3}));
  for (const Line& l : lines) EXPECT_TRUE(l.evaluated) << l.round;  // evaluation.every = 1
  ASSERT_EQ(evaluator_.seen.size(), 3u);
  EXPECT_EQ(evaluator_.seen[2][0], 3);
  EXPECT_TRUE(FileExists(run->store.Path(RunStore::kFinalModelFile)));
  EXPECT_TRUE(FileExists(run->store.Path(RunStore::kSpecFile)));
}

// With aggregation.averaging the scheduler hands on an average beside the global model: the
// average is the run's result (test_accuracy, model_final.f32), the global model is reported
// beside it (global_test_accuracy) and is what the checkpoint keeps.
TEST_F(RunFixture, AnAveragedModelIsTheResultAndTheGlobalModelIsReportedBeside) {
  absl::StatusOr<LoadedRun> run = LoadOrResumeRun(Fresh(), &clock_);
  ASSERT_TRUE(run.ok()) << run.status();
  std::unique_ptr<RunRecorder> rec = Recorder(&*run);
  ASSERT_NE(rec, nullptr);
  rec->OnRoundClosed(Closed(1), ModelOf(*run, 1));
  rec->OnRoundDone(Closed(1), ModelOf(*run, 1));
  for (int r = 2; r <= 3; ++r) {
    rec->OnRoundClosed(Closed(r), ModelOf(*run, r), "", ModelOf(*run, 100 + r));
    rec->OnRoundDone(Closed(r), ModelOf(*run, r), ModelOf(*run, 100 + r));
  }
  ASSERT_TRUE(rec->status().ok()) << rec->status();
  const std::string text = ReadFile(run->store.Path(RunStore::kMetricsFile)).value_or("");
  const std::vector<std::string> lines = absl::StrSplit(text, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 3u) << text;
  EXPECT_NE(lines[0].find("\"test_accuracy\":0.510000"), std::string::npos) << lines[0];
  EXPECT_EQ(lines[0].find("global_test_accuracy"), std::string::npos) << lines[0];
  EXPECT_NE(lines[2].find("\"test_accuracy\":1.530000"), std::string::npos) << lines[2];
  EXPECT_NE(lines[2].find("\"global_test_accuracy\":0.530000"), std::string::npos) << lines[2];
  EXPECT_NE(lines[2].find("\"eval_seconds\":3.000"), std::string::npos) << lines[2];  // both
  absl::StatusOr<proto::Checkpoint> ckpt = run->store.ReadCheckpoint();
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  float first = 0;
  ASSERT_GE(ckpt->weights().size(), sizeof first);
  std::memcpy(&first, ckpt->weights().data(), sizeof first);
  EXPECT_EQ(first, 3);  // the global model
  const std::string final_model = ReadFile(run->store.Path(RunStore::kFinalModelFile)).value_or("");
  ASSERT_GE(final_model.size(), sizeof first);
  std::memcpy(&first, final_model.data(), sizeof first);
  EXPECT_EQ(first, 103);  // the average
}

TEST_F(RunFixture, ResumeContinuesFromTheLastCompletedRound) {
  {
    absl::StatusOr<LoadedRun> run = LoadOrResumeRun(Fresh(), &clock_);
    ASSERT_TRUE(run.ok()) << run.status();
    std::unique_ptr<RunRecorder> rec = Recorder(&*run);
    clock_.AdvanceTime(absl::Seconds(10));
    for (int r = 1; r <= 2; ++r) {
      rec->OnRoundClosed(Closed(r), ModelOf(*run, r));
      rec->OnRoundDone(Closed(r), ModelOf(*run, r));
    }
  }
  RunOptions resume = Resume();
  resume.overrides = {"rounds=5"};  // a resumed run may be extended
  absl::StatusOr<LoadedRun> run = LoadOrResumeRun(resume, &clock_);
  ASSERT_TRUE(run.ok()) << run.status();
  EXPECT_EQ(run->completed_rounds, 2);
  EXPECT_EQ(run->config.rounds(), 5);
  EXPECT_EQ(run->config.model(), "mlp");
  EXPECT_EQ(run->config.seed(), 7);
  EXPECT_EQ(run->elapsed_seconds, 10);
  ASSERT_EQ(run->weights.size(), static_cast<size_t>(models::NumParameters(run->spec)));
  EXPECT_EQ(run->weights[0], 2);  // round 2's model
  ASSERT_TRUE(run->resumed_from.has_value());
  EXPECT_EQ(run->resumed_from->round(), 2);
  EXPECT_TRUE(run->resumed_from->weights().empty());
  // Nothing was pending: restoring writes no line and evaluates nothing.
  std::unique_ptr<RunRecorder> rec = Recorder(&*run);
  evaluator_.seen.clear();
  absl::StatusOr<int> restored = rec->Restore(*run->resumed_from, run->weights);
  ASSERT_TRUE(restored.ok()) << restored.status();
  EXPECT_EQ(*restored, 0);
  EXPECT_TRUE(evaluator_.seen.empty());
  // Checkpoints count the run's wall time on from the checkpoint's.
  clock_.AdvanceTime(absl::Seconds(5));
  rec->OnRoundClosed(Closed(3), ModelOf(*run, 3));
  EXPECT_EQ(run->store.ReadCheckpoint()->elapsed_seconds(), 15);
}

// Evaluation lags behind the rounds; the process dies after rounds 2 and 3 closed (checkpoint
// written) but before their lines were: resume writes both, evaluating round 3's model.
TEST_F(RunFixture, ResumeWritesTheLinesOfPendingRounds) {
  {
    absl::StatusOr<LoadedRun> run = LoadOrResumeRun(Fresh(), &clock_);
    ASSERT_TRUE(run.ok()) << run.status();
    std::unique_ptr<RunRecorder> rec = Recorder(&*run);
    rec->OnRoundClosed(Closed(1), ModelOf(*run, 1));
    rec->OnRoundDone(Closed(1), ModelOf(*run, 1));
    rec->OnRoundClosed(Closed(2), ModelOf(*run, 2));
    rec->OnRoundClosed(Closed(3), ModelOf(*run, 3));
    EXPECT_EQ(rec->pending_rounds(), (std::vector<int64_t>{2, 3}));
  }
  absl::StatusOr<LoadedRun> run = LoadOrResumeRun(Resume(), &clock_);
  ASSERT_TRUE(run.ok()) << run.status();
  EXPECT_EQ(run->completed_rounds, 3);
  EXPECT_EQ(run->resumed_from->pending_rounds_size(), 2);
  std::unique_ptr<RunRecorder> rec = Recorder(&*run);
  evaluator_.seen.clear();
  absl::StatusOr<int> restored = rec->Restore(*run->resumed_from, run->weights);
  ASSERT_TRUE(restored.ok()) << restored.status();
  EXPECT_EQ(*restored, 2);
  const std::vector<Line> lines = MetricsLines(run->store.dir());
  EXPECT_EQ(Rounds(lines), (std::vector<int64_t>{1, 2, 3}));
  EXPECT_FALSE(lines[1].evaluated);  // round 2's model is gone
  EXPECT_TRUE(lines[2].evaluated);   // round 3's is the checkpoint's
  ASSERT_EQ(evaluator_.seen.size(), 1u);
  EXPECT_EQ(evaluator_.seen[0][0], 3);
}

// A crash in the middle of appending round 2's line leaves half a line; resume replaces it.
TEST_F(RunFixture, ResumeReplacesAMetricsLineCutShortByACrash) {
  std::string whole;
  {
    absl::StatusOr<LoadedRun> run = LoadOrResumeRun(Fresh(), &clock_);
    ASSERT_TRUE(run.ok()) << run.status();
    std::unique_ptr<RunRecorder> rec = Recorder(&*run);
    rec->OnRoundClosed(Closed(1), ModelOf(*run, 1));
    rec->OnRoundDone(Closed(1), ModelOf(*run, 1));
    rec->OnRoundClosed(Closed(2), ModelOf(*run, 2));
    RoundMetrics m;
    m.stats = Closed(2);
    whole = RunStore::MetricsToJson(m);
    ASSERT_TRUE(AppendLine(run->store.Path(RunStore::kMetricsFile), whole.substr(0, 40)).ok());
  }
  absl::StatusOr<LoadedRun> run = LoadOrResumeRun(Resume(), &clock_);
  ASSERT_TRUE(run.ok()) << run.status();
  std::unique_ptr<RunRecorder> rec = Recorder(&*run);
  absl::StatusOr<int> restored = rec->Restore(*run->resumed_from, run->weights);
  ASSERT_TRUE(restored.ok()) << restored.status();
  EXPECT_EQ(*restored, 1);
  const std::vector<Line> lines = MetricsLines(run->store.dir());  // every line whole
  EXPECT_EQ(Rounds(lines), (std::vector<int64_t>{1, 2}));
  EXPECT_TRUE(lines[1].evaluated);
}

TEST_F(RunFixture, RefusesToStartAfreshOverAnExistingRun) {
  {
    absl::StatusOr<LoadedRun> run = LoadOrResumeRun(Fresh(), &clock_);
    ASSERT_TRUE(run.ok()) << run.status();
    Recorder(&*run)->OnRoundClosed(Closed(1), ModelOf(*run, 1));
  }
  absl::StatusOr<LoadedRun> again = LoadOrResumeRun(Fresh(), &clock_);
  EXPECT_EQ(again.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(again.status().message().find("--resume"), absl::string_view::npos) << again.status();
  // The run is untouched.
  EXPECT_EQ(ReadFile(dir_ + "/run/" + RunStore::kCheckpointFile).ok(), true);
  EXPECT_EQ(Rounds(MetricsLines(dir_ + "/run")), std::vector<int64_t>{});
}

// A restartable pod passes --resume_if_present every time: fresh on an empty volume (reading
// --config), a resume once a checkpoint is there (not reading --config: the run keeps its own).
TEST_F(RunFixture, ResumeIfPresentStartsFreshThenResumes) {
  RunOptions o = Fresh();
  o.resume_if_present = true;
  o.config_file = dir_ + "/no-such-config.json";
  absl::StatusOr<LoadedRun> missing = LoadOrResumeRun(o, &clock_);
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound) << missing.status();
  EXPECT_FALSE(FileExists(dir_ + "/run/" + RunStore::kCheckpointFile));
  o.config_file.clear();
  {
    absl::StatusOr<LoadedRun> run = LoadOrResumeRun(o, &clock_);
    ASSERT_TRUE(run.ok()) << run.status();
    EXPECT_FALSE(run->resumed_from.has_value());
    std::unique_ptr<RunRecorder> rec = Recorder(&*run);
    for (int r = 1; r <= 2; ++r) {
      rec->OnRoundClosed(Closed(r), ModelOf(*run, r));
      rec->OnRoundDone(Closed(r), ModelOf(*run, r));
    }
  }
  o.config_file = dir_ + "/no-such-config.json";  // not read on resume
  absl::StatusOr<LoadedRun> run = LoadOrResumeRun(o, &clock_);
  ASSERT_TRUE(run.ok()) << run.status();
  ASSERT_TRUE(run->resumed_from.has_value());
  EXPECT_EQ(run->completed_rounds, 2);
  EXPECT_EQ(run->weights[0], 2);
  EXPECT_EQ(run->config.model(), "mlp");

  RunOptions no_out = o;
  no_out.out.clear();
  EXPECT_EQ(LoadOrResumeRun(no_out, &clock_).status().code(),
            absl::StatusCode::kInvalidArgument);
  RunOptions both = o;
  both.resume = true;
  EXPECT_EQ(LoadOrResumeRun(both, &clock_).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(RunFixture, BadOptionsGiveAClearStatus) {
  RunOptions o = Resume();  // nothing to resume
  absl::StatusOr<LoadedRun> run = LoadOrResumeRun(o, &clock_);
  EXPECT_EQ(run.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(run.status().message().find("--resume"), absl::string_view::npos) << run.status();

  o.out.clear();
  o.runs_root = dir_ + "/empty";
  run = LoadOrResumeRun(o, &clock_);
  EXPECT_EQ(run.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(run.status().message().find("no run with a checkpoint under"), absl::string_view::npos)
      << run.status();

  o = Resume();
  o.config_file = dir_ + "/config.json";
  run = LoadOrResumeRun(o, &clock_);
  EXPECT_EQ(run.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(run.status().message().find("--resume takes the run's own config"),
            absl::string_view::npos)
      << run.status();

  o = Fresh();
  o.overrides.push_back("client.lr=fast");
  run = LoadOrResumeRun(o, &clock_);
  EXPECT_EQ(run.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(run.status().message().find("client.lr"), absl::string_view::npos) << run.status();

  o = Fresh();
  o.overrides.push_back("model=resnet9000");
  run = LoadOrResumeRun(o, &clock_);
  EXPECT_FALSE(run.ok());
  EXPECT_NE(run.status().message().find("resnet9000"), absl::string_view::npos) << run.status();

  o = Fresh();
  o.config_file = dir_ + "/missing.json";
  run = LoadOrResumeRun(o, &clock_);
  EXPECT_FALSE(run.ok());
  EXPECT_NE(run.status().message().find("missing.json"), absl::string_view::npos) << run.status();

  o = Fresh();
  o.overrides.push_back("init_weights=" + dir_ + "/short.f32");
  ASSERT_TRUE(WriteFileAtomically(dir_ + "/short.f32", std::string(12, '\0')).ok());
  run = LoadOrResumeRun(o, &clock_);
  EXPECT_EQ(run.status().code(), absl::StatusCode::kInvalidArgument) << run.status();
}

TEST_F(RunFixture, DefaultFoldersAreTimestampedAndResumeTakesTheNewest) {
  RunOptions o = Fresh();
  o.out.clear();
  o.runs_root = dir_ + "/runs";
  absl::StatusOr<LoadedRun> first = LoadOrResumeRun(o, &clock_);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(
      first->store.dir(),
      o.runs_root + "/" + absl::FormatTime("%Y%m%d-%H%M%S", clock_.Now(), absl::LocalTimeZone()));
  Recorder(&*first)->OnRoundClosed(Closed(1), ModelOf(*first, 1));
  clock_.AdvanceTime(absl::Hours(1));
  absl::StatusOr<LoadedRun> second = LoadOrResumeRun(o, &clock_);
  ASSERT_TRUE(second.ok()) << second.status();
  ASSERT_NE(second->store.dir(), first->store.dir());
  Recorder(&*second)->OnRoundClosed(Closed(2), ModelOf(*second, 2));

  RunOptions resume;
  resume.resume = true;
  resume.runs_root = o.runs_root;
  absl::StatusOr<LoadedRun> resumed = LoadOrResumeRun(resume, &clock_);
  ASSERT_TRUE(resumed.ok()) << resumed.status();
  EXPECT_EQ(resumed->store.dir(), second->store.dir());
  EXPECT_EQ(resumed->completed_rounds, 2);
}

// fl-server's start-up in-process: usage errors are marked as such, and a started server serves
// on a free port until Shutdown makes Run return CANCELLED.
TEST_F(RunFixture, ServerStartsServesAndStops) {
  ServerOptions o;
  o.run = Fresh();
  o.transport.insecure = true;
  o.transport.tls_cert = "/x.pem";
  FakeEvaluator* made = nullptr;
  EvaluatorFactory factory = [&made](const proto::ExperimentConfig&) {
    auto e = std::make_unique<FakeEvaluator>();
    made = e.get();
    return absl::StatusOr<std::unique_ptr<Evaluator>>(std::move(e));
  };
  absl::StatusOr<std::unique_ptr<FlServer>> server = FlServer::Start(o, factory, &clock_);
  EXPECT_TRUE(IsUsageError(server.status())) << server.status();
  EXPECT_NE(server.status().message().find("--insecure cannot be combined"),
            absl::string_view::npos);

  o.transport.tls_cert.clear();
  o.listen = "127.0.0.1:0";
  o.port_file = dir_ + "/port";
  server = FlServer::Start(o, factory, &clock_);
  ASSERT_TRUE(server.ok()) << server.status();
  EXPECT_GT((*server)->port(), 0);
  EXPECT_EQ(ReadFile(o.port_file).value_or(""), absl::StrCat((*server)->port(), "\n"));
  EXPECT_TRUE(FileExists(dir_ + "/run/" + RunStore::kConfigFile));
  EXPECT_NE(made, nullptr);
  (*server)->Shutdown();
  EXPECT_EQ((*server)->Run().code(), absl::StatusCode::kCancelled);
  EXPECT_FALSE(IsUsageError(absl::CancelledError()));
}

}  // namespace
}  // namespace edgefl::server
