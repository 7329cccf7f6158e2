#include "server/config.h"

#include <filesystem>

#include "server/strategy_registry.h"

#include <stdlib.h>

#include <string>

#include "common/file_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace edgefl::server {
namespace {

using ::testing::HasSubstr;

std::string Message(const absl::Status& status) { return std::string(status.message()); }

constexpr char kValidJson[] = R"({
  "rounds": 20,
  "model": "small_cnn",
  "seed": 42,
  "sampling": {"fraction": 0.3, "minClients": 4, "over_selection": 0.25},
  "client": {"epochs": 2, "batch_size": 64, "lr": 0.1},
  "schedule": [{"from_round": 10, "client": {"lr": 0.02}, "deadline_seconds": 120}],
  "deadline_seconds": 60,
  "quorum": 0.8,
  "evaluation": {"every": 5, "max_samples": 1000},
  "data_dir": "/data/fmnist"
})";

TEST(Config, ParsesValidJson) {
  auto config = ParseConfigJson(kValidJson);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->rounds(), 20);
  EXPECT_EQ(config->model(), "small_cnn");
  EXPECT_EQ(config->seed(), 42u);
  EXPECT_DOUBLE_EQ(config->sampling().fraction(), 0.3);
  EXPECT_EQ(config->sampling().min_clients(), 4);  // lowerCamelCase accepted too
  EXPECT_DOUBLE_EQ(config->sampling().over_selection(), 0.25);
  EXPECT_FALSE(config->sampling().has_wait_for_clients_seconds());
  EXPECT_EQ(config->client().epochs(), 2);
  EXPECT_FALSE(config->client().has_momentum());
  ASSERT_EQ(config->schedule_size(), 1);
  EXPECT_EQ(config->schedule(0).from_round(), 10);
  EXPECT_DOUBLE_EQ(config->schedule(0).client().lr(), 0.02);
  EXPECT_FALSE(config->schedule(0).client().has_epochs());
  EXPECT_EQ(config->evaluation().every(), 5);
  EXPECT_FALSE(config->has_max_round_attempts());
  EXPECT_EQ(config->data_dir(), "/data/fmnist");
}

TEST(Config, UnknownKeyIsNamed) {
  auto config = ParseConfigJson(R"({"rounds": 3, "roundz": 4})");
  ASSERT_FALSE(config.ok());
  EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(config.status()), HasSubstr("unknown key \"roundz\"")) << config.status();

  config = ParseConfigJson(R"({"sampling": {"fractoin": 0.5}})");
  ASSERT_FALSE(config.ok());
  EXPECT_THAT(Message(config.status()), HasSubstr("\"sampling.fractoin\"")) << config.status();

  config = ParseConfigJson(R"({"schedule": [{"from_round": 2, "clinet": {}}]})");
  ASSERT_FALSE(config.ok());
  EXPECT_THAT(Message(config.status()), HasSubstr("clinet")) << config.status();
}

TEST(Config, WrongTypeNamesTheField) {
  auto config = ParseConfigJson(R"({"rounds": "many"})");
  ASSERT_FALSE(config.ok());
  EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(config.status()), HasSubstr("rounds")) << config.status();
  EXPECT_THAT(Message(config.status()), HasSubstr("\"many\"")) << config.status();

  config = ParseConfigJson(R"({"client": {"lr": "fast"}})");
  ASSERT_FALSE(config.ok());
  EXPECT_THAT(Message(config.status()), HasSubstr("client.lr")) << config.status();

  config = ParseConfigJson(R"({"schedule": [{"from_round": 1.5}]})");
  ASSERT_FALSE(config.ok());
  EXPECT_THAT(Message(config.status()), HasSubstr("schedule[0].from_round")) << config.status();

  // Syntax errors come back on one line, pointing at the problem.
  config = ParseConfigJson(R"({"rounds": 5 "model": "x"})");
  ASSERT_FALSE(config.ok());
  EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(config.status()), HasSubstr("5 >>\"model\"")) << config.status();
  EXPECT_EQ(Message(config.status()).find('\n'), std::string::npos) << config.status();
  EXPECT_FALSE(ParseConfigJson(R"({"rounds": 5,)").ok());
  EXPECT_FALSE(ParseConfigJson("").ok());
  EXPECT_FALSE(ParseConfigJson("[1]").ok());
}

TEST(Config, LoadConfigFileCarriesThePath) {
  char dir_template[] = "/tmp/config_test.XXXXXX";
  ASSERT_NE(::mkdtemp(dir_template), nullptr);
  const std::string dir = dir_template;
  auto missing = LoadConfigFile(dir + "/absent.json");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(Message(missing.status()), HasSubstr(dir + "/absent.json"));

  ASSERT_TRUE(WriteFileAtomically(dir + "/bad.json", R"({"bogus": 1})").ok());
  auto bad = LoadConfigFile(dir + "/bad.json");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(bad.status()), HasSubstr(dir + "/bad.json"));
  EXPECT_THAT(Message(bad.status()), HasSubstr("bogus"));

  ASSERT_TRUE(WriteFileAtomically(dir + "/good.json", kValidJson).ok());
  auto good = LoadConfigFile(dir + "/good.json");
  ASSERT_TRUE(good.ok()) << good.status();
  EXPECT_EQ(good->rounds(), 20);
}

TEST(Config, OverridesScalarsNestedAndOptional) {
  proto::ExperimentConfig config;
  ASSERT_TRUE(ApplyOverride("rounds=5", &config).ok());
  ASSERT_TRUE(ApplyOverride("model=small_cnn", &config).ok());
  ASSERT_TRUE(ApplyOverride("seed=18446744073709551615", &config).ok());
  ASSERT_TRUE(ApplyOverride("client.lr=0.01", &config).ok());
  ASSERT_TRUE(ApplyOverride("sampling.min_clients=3", &config).ok());
  ASSERT_TRUE(ApplyOverride("evaluation.batchSize=250", &config).ok());  // json name
  EXPECT_EQ(config.rounds(), 5);
  EXPECT_EQ(config.model(), "small_cnn");
  EXPECT_EQ(config.seed(), UINT64_MAX);
  EXPECT_DOUBLE_EQ(config.client().lr(), 0.01);
  EXPECT_EQ(config.sampling().min_clients(), 3);
  EXPECT_EQ(config.evaluation().batch_size(), 250);

  // Setting an optional field to its zero value still records presence, so FillDefaults keeps it.
  EXPECT_FALSE(config.sampling().has_over_selection());
  ASSERT_TRUE(ApplyOverride("sampling.over_selection=0", &config).ok());
  EXPECT_TRUE(config.sampling().has_over_selection());
  ASSERT_TRUE(ApplyOverride("client.max_samples=0", &config).ok());
  ASSERT_TRUE(ApplyOverride("seed=0", &config).ok());
  EXPECT_TRUE(config.has_seed());
  ASSERT_TRUE(ApplyOverride("sampling.fraction=0.5", &config).ok());
  FillDefaults(&config);
  EXPECT_DOUBLE_EQ(config.sampling().over_selection(), 0);
  EXPECT_DOUBLE_EQ(config.sampling().fraction(), 0.5);
  EXPECT_EQ(config.client().max_samples(), 0);
  EXPECT_EQ(config.seed(), 0u);

  // Values may contain '='.
  ASSERT_TRUE(ApplyOverride("data_dir=/data/a=b", &config).ok());
  EXPECT_EQ(config.data_dir(), "/data/a=b");
}

TEST(Config, OverridesRepeatedAndMessageFieldsWithJson) {
  proto::ExperimentConfig config;
  ASSERT_TRUE(ApplyOverride(
                  R"(schedule=[{"from_round":10,"client":{"lr":0.02}},{"from_round":20}])", &config)
                  .ok());
  ASSERT_EQ(config.schedule_size(), 2);
  EXPECT_EQ(config.schedule(0).from_round(), 10);
  EXPECT_DOUBLE_EQ(config.schedule(0).client().lr(), 0.02);

  // A repeated field is replaced, not appended to.
  ASSERT_TRUE(ApplyOverride(R"(schedule=[{"from_round":3}])", &config).ok());
  ASSERT_EQ(config.schedule_size(), 1);
  EXPECT_EQ(config.schedule(0).from_round(), 3);
  ASSERT_TRUE(ApplyOverride("schedule=[]", &config).ok());
  EXPECT_EQ(config.schedule_size(), 0);

  // A message field is replaced as a whole.
  config.mutable_client()->set_epochs(7);
  ASSERT_TRUE(ApplyOverride(R"(client={"lr": 0.3, "momentum": 0.9})", &config).ok());
  EXPECT_DOUBLE_EQ(config.client().lr(), 0.3);
  EXPECT_DOUBLE_EQ(config.client().momentum(), 0.9);
  EXPECT_FALSE(config.client().has_epochs());

  // Indexing into a repeated message field.
  ASSERT_TRUE(ApplyOverride(R"(schedule=[{"from_round":10,"client":{"lr":0.02}}])", &config).ok());
  ASSERT_TRUE(ApplyOverride("schedule[0].client.lr=0.03", &config).ok());
  EXPECT_DOUBLE_EQ(config.schedule(0).client().lr(), 0.03);
  ASSERT_TRUE(ApplyOverride(R"(schedule[0]={"from_round":4})", &config).ok());
  EXPECT_EQ(config.schedule(0).from_round(), 4);
  EXPECT_FALSE(config.schedule(0).has_client());

  // Errors inside the JSON leave the field alone and name the problem.
  absl::Status status = ApplyOverride(R"(schedule=[{"from_round":"x"}])", &config);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(status), HasSubstr("schedule")) << status;
  EXPECT_EQ(config.schedule(0).from_round(), 4);
  status = ApplyOverride(R"(client={"lr": 0.1, "bogus": 1})", &config);
  EXPECT_THAT(Message(status), HasSubstr("bogus")) << status;
  EXPECT_DOUBLE_EQ(config.client().lr(), 0.3);
}

TEST(Config, OverrideErrorsNameThePath) {
  proto::ExperimentConfig config;
  absl::Status status = ApplyOverride("sampling.fractoin=0.5", &config);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(status), HasSubstr("sampling.fractoin")) << status;
  EXPECT_THAT(Message(status), HasSubstr("unknown field \"fractoin\"")) << status;

  status = ApplyOverride("nosuch=1", &config);
  EXPECT_THAT(Message(status), HasSubstr("unknown field \"nosuch\"")) << status;

  status = ApplyOverride("rounds=abc", &config);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(status), HasSubstr("rounds")) << status;
  EXPECT_THAT(Message(status), HasSubstr("'abc'")) << status;
  EXPECT_FALSE(config.has_rounds());

  EXPECT_FALSE(ApplyOverride("rounds=1.5", &config).ok());
  EXPECT_FALSE(ApplyOverride("rounds=99999999999", &config).ok());
  EXPECT_FALSE(ApplyOverride("seed=-1", &config).ok());
  EXPECT_FALSE(ApplyOverride("client.lr=fast", &config).ok());
  EXPECT_FALSE(config.has_client());  // a failed leaf does not matter, but the parse failed first
  EXPECT_FALSE(ApplyOverride("rounds", &config).ok());        // no '='
  EXPECT_FALSE(ApplyOverride("=5", &config).ok());            // no path
  EXPECT_FALSE(ApplyOverride("client..lr=1", &config).ok());  // empty component
  EXPECT_THAT(Message(ApplyOverride("rounds.x=1", &config)), HasSubstr("scalar"));
  EXPECT_THAT(Message(ApplyOverride("schedule.from_round=1", &config)), HasSubstr("list"));
  EXPECT_THAT(Message(ApplyOverride("schedule[0].from_round=1", &config)),
              HasSubstr("out of range"));
  EXPECT_THAT(Message(ApplyOverride("client[0].lr=1", &config)), HasSubstr("index"));
}

TEST(Config, FillDefaultsSetsDocumentedDefaults) {
  proto::ExperimentConfig config;
  config.set_rounds(3);
  config.mutable_client()->set_lr(0.2);
  FillDefaults(&config);
  EXPECT_EQ(config.rounds(), 3);
  EXPECT_EQ(config.model(), "fedavg_cnn");
  EXPECT_TRUE(config.has_seed());
  EXPECT_EQ(config.seed(), 0u);
  EXPECT_DOUBLE_EQ(config.sampling().fraction(), 1.0);
  EXPECT_EQ(config.sampling().min_clients(), 2);
  EXPECT_TRUE(config.sampling().has_over_selection());
  EXPECT_DOUBLE_EQ(config.sampling().over_selection(), 0);
  EXPECT_DOUBLE_EQ(config.sampling().wait_for_clients_seconds(), 600);
  EXPECT_EQ(config.client().epochs(), 1);
  EXPECT_EQ(config.client().batch_size(), 32);
  EXPECT_DOUBLE_EQ(config.client().lr(), 0.2);
  EXPECT_TRUE(config.client().has_momentum());
  EXPECT_DOUBLE_EQ(config.client().momentum(), 0);
  EXPECT_DOUBLE_EQ(config.client().weight_decay(), 0);
  EXPECT_EQ(config.client().max_samples(), 0);
  EXPECT_DOUBLE_EQ(config.deadline_seconds(), 300);
  EXPECT_DOUBLE_EQ(config.quorum(), 0.5);
  EXPECT_EQ(config.max_round_attempts(), 3);
  EXPECT_EQ(config.evaluation().every(), 1);
  EXPECT_EQ(config.evaluation().max_samples(), 0);
  EXPECT_EQ(config.evaluation().batch_size(), 500);
  EXPECT_EQ(config.evaluation().threads(), 1);
  EXPECT_EQ(config.data_dir(), "/usr/share/datasets/fashion-mnist");
  EXPECT_TRUE(ValidateConfig(config).ok());

  // Idempotent, and defaults appear in the JSON dump.
  proto::ExperimentConfig again = config;
  FillDefaults(&again);
  EXPECT_EQ(again.SerializeAsString(), config.SerializeAsString());
  const std::string json = ConfigToJson(config);
  EXPECT_THAT(json, HasSubstr("\"min_clients\": 2"));
  EXPECT_THAT(json, HasSubstr("\"over_selection\": 0"));
  EXPECT_THAT(json, HasSubstr("\"data_dir\": \"/usr/share/datasets/fashion-mnist\""));
  EXPECT_THAT(json, HasSubstr("\n  "));  // pretty-printed
}

TEST(Config, JsonRoundTrip) {
  auto config = ParseConfigJson(kValidJson);
  ASSERT_TRUE(config.ok());
  FillDefaults(&*config);
  auto reparsed = ParseConfigJson(ConfigToJson(*config));
  ASSERT_TRUE(reparsed.ok()) << reparsed.status();
  EXPECT_EQ(reparsed->SerializeAsString(), config->SerializeAsString());
}

absl::Status ValidateWith(const std::string& assignment) {
  proto::ExperimentConfig config;
  FillDefaults(&config);
  absl::Status status = ApplyOverride(assignment, &config);
  if (!status.ok()) return status;
  return ValidateConfig(config);
}

// As fl-server does: overrides onto an empty config, then the defaults (presets), then checks.
absl::StatusOr<proto::ExperimentConfig> Resolve(const std::vector<std::string>& assignments) {
  proto::ExperimentConfig config;
  for (const std::string& a : assignments) {
    absl::Status s = ApplyOverride(a, &config);
    if (!s.ok()) return s;
  }
  FillDefaults(&config);
  absl::Status s = ValidateConfig(config);
  if (!s.ok()) return s;
  return config;
}
std::string ResolveError(const std::vector<std::string>& assignments) {
  return std::string(Resolve(assignments).status().message());
}

// FedDyn: the preset's alpha reaches every task (the devices' side); no other optimizer sends it.
TEST(Config, FedDynSendsAlphaToTheDevicesAndRefusesConflictingSettings) {
  auto dyn = Resolve({"aggregation.strategy=feddyn"});
  ASSERT_TRUE(dyn.ok()) << dyn.status();
  EXPECT_EQ(dyn->aggregation().server_optimizer().name(), "feddyn");
  EXPECT_DOUBLE_EQ(dyn->aggregation().server_optimizer().lr(), 1.0);
  EXPECT_DOUBLE_EQ(dyn->aggregation().server_optimizer().alpha(), 0.01);
  EXPECT_FALSE(dyn->aggregation().server_optimizer().has_beta1());
  EXPECT_FALSE(dyn->aggregation().server_optimizer().has_tau());
  EXPECT_DOUBLE_EQ(ResolveTaskConfig(*dyn, 1).feddyn_alpha(), 0.01);
  EXPECT_DOUBLE_EQ(ResolveTaskConfig(*dyn, 1).proximal_mu(), 0);
  auto tuned = Resolve({"aggregation.strategy=feddyn", "aggregation.server_optimizer.alpha=0.1"});
  ASSERT_TRUE(tuned.ok()) << tuned.status();
  EXPECT_DOUBLE_EQ(ResolveTaskConfig(*tuned, 7).feddyn_alpha(), 0.1);
  auto adam = Resolve({"aggregation.strategy=fedadam"});
  ASSERT_TRUE(adam.ok());
  EXPECT_FALSE(ResolveTaskConfig(*adam, 1).has_feddyn_alpha());
  EXPECT_EQ(ResolveError({"aggregation.strategy=feddyn", "aggregation.server_optimizer.alpha=0"}),
            "aggregation.server_optimizer.alpha must be finite and > 0, got 0");
  EXPECT_EQ(ResolveError({"aggregation.strategy=fedadam", "aggregation.server_optimizer.alpha=0.1"}),
            "aggregation.server_optimizer.alpha applies to feddyn only, not adam");
  EXPECT_THAT(ResolveError({"aggregation.strategy=feddyn", "client.proximal_mu=0.1"}),
              HasSubstr("client.proximal_mu must be unset"));
  EXPECT_THAT(ResolveError({"aggregation.strategy=feddyn",
                            R"(schedule=[{"from_round":3,"client":{"proximal_mu":0.2}}])"}),
              HasSubstr("client.proximal_mu must be unset"));
  EXPECT_THAT(ResolveError({"aggregation.strategy=feddyn", "aggregation.server_optimizer.tau=0.1"}),
              HasSubstr("not feddyn"));
  EXPECT_THAT(ResolveError({"aggregation.strategy=feddyn", "aggregation.server_optimizer.lr=0.5"}),
              HasSubstr("aggregation.server_optimizer.lr must be 1 with feddyn (got 0.5)"));
  EXPECT_THAT(ResolveError({"aggregation.strategy=feddyn",
                            R"(schedule=[{"from_round":5,"server_lr":0.5}])"}),
              HasSubstr("must be 1 with feddyn (got a schedule server_lr)"));
  EXPECT_THAT(ResolveError({"aggregation.strategy=feddyn", "aggregation.mode=buffered"}),
              HasSubstr("feddyn needs aggregation.mode \"sync\""));
}

TEST(Config, AggregationPresetsFillTheirStagesAndExplicitFieldsWin) {
  auto adam = Resolve({"aggregation.strategy=fedadam"});
  ASSERT_TRUE(adam.ok()) << adam.status();
  EXPECT_EQ(adam->aggregation().combiner().rule(), "weighted_mean");
  EXPECT_EQ(adam->aggregation().server_optimizer().name(), "adam");
  EXPECT_DOUBLE_EQ(adam->aggregation().server_optimizer().lr(), 0.1);
  EXPECT_DOUBLE_EQ(adam->aggregation().server_optimizer().beta2(), 0.99);
  auto tuned = Resolve({"aggregation.strategy=fedadam", "aggregation.server_optimizer.lr=0.003"});
  ASSERT_TRUE(tuned.ok());
  EXPECT_DOUBLE_EQ(tuned->aggregation().server_optimizer().lr(), 0.003);
  auto prox = Resolve({"aggregation.strategy=fedprox"});
  ASSERT_TRUE(prox.ok());
  EXPECT_DOUBLE_EQ(prox->client().proximal_mu(), 0.01);
  EXPECT_DOUBLE_EQ(ResolveTaskConfig(*prox, 1).proximal_mu(), 0.01);
  auto avg = Resolve({});
  ASSERT_TRUE(avg.ok());
  EXPECT_EQ(avg->aggregation().strategy(), "fedavg");
  EXPECT_DOUBLE_EQ(ResolveTaskConfig(*avg, 1).proximal_mu(), 0);
  // FedRS: the preset's alpha reaches the task; unset stays unset (the device's plain softmax).
  EXPECT_FALSE(ResolveTaskConfig(*avg, 1).has_restricted_softmax_alpha());
  auto rs = Resolve({"aggregation.strategy=fedrs"});
  ASSERT_TRUE(rs.ok()) << rs.status();
  EXPECT_EQ(rs->aggregation().server_optimizer().name(), "sgd");
  EXPECT_DOUBLE_EQ(ResolveTaskConfig(*rs, 1).restricted_softmax_alpha(), 0.5);
  auto rs_adam = Resolve({"aggregation.strategy=fedadam", "client.restricted_softmax_alpha=0",
                          R"(schedule=[{"from_round":3,"client":{"restricted_softmax_alpha":0.8}}])"});
  ASSERT_TRUE(rs_adam.ok()) << rs_adam.status();
  ASSERT_TRUE(ResolveTaskConfig(*rs_adam, 2).has_restricted_softmax_alpha());
  EXPECT_DOUBLE_EQ(ResolveTaskConfig(*rs_adam, 2).restricted_softmax_alpha(), 0);
  EXPECT_DOUBLE_EQ(ResolveTaskConfig(*rs_adam, 3).restricted_softmax_alpha(), 0.8);
  // FedBABU: the preset freezes the head; off by default; any strategy can take it, and a
  // schedule entry can unfreeze it (e.g. to fine-tune the head in the last rounds).
  EXPECT_FALSE(ResolveTaskConfig(*avg, 1).freeze_head());
  auto babu = Resolve({"aggregation.strategy=fedbabu"});
  ASSERT_TRUE(babu.ok()) << babu.status();
  EXPECT_EQ(babu->aggregation().server_optimizer().name(), "sgd");
  EXPECT_TRUE(ResolveTaskConfig(*babu, 1).freeze_head());
  auto babu_adam = Resolve({"aggregation.strategy=fedadam", "client.freeze_head=true",
                            R"(schedule=[{"from_round":4,"client":{"freeze_head":false}}])"});
  ASSERT_TRUE(babu_adam.ok()) << babu_adam.status();
  EXPECT_EQ(babu_adam->aggregation().server_optimizer().name(), "adam");
  EXPECT_TRUE(ResolveTaskConfig(*babu_adam, 3).freeze_head());
  EXPECT_FALSE(ResolveTaskConfig(*babu_adam, 4).freeze_head());
  auto babu_off = Resolve({"aggregation.strategy=fedbabu", "client.freeze_head=false"});
  ASSERT_TRUE(babu_off.ok()) << babu_off.status();
  EXPECT_FALSE(ResolveTaskConfig(*babu_off, 1).freeze_head());
  // FedNTD: off by default (no fields in the task); the preset's beta 1 and the default tau 3
  // reach the task; with another optimizer and a schedule too.
  EXPECT_EQ(ResolveTaskConfig(*avg, 1).ntd_beta(), 0);
  EXPECT_EQ(ResolveTaskConfig(*avg, 1).ntd_tau(), 0);
  auto ntd = Resolve({"aggregation.strategy=fedntd"});
  ASSERT_TRUE(ntd.ok()) << ntd.status();
  EXPECT_EQ(ntd->aggregation().server_optimizer().name(), "sgd");
  EXPECT_DOUBLE_EQ(ResolveTaskConfig(*ntd, 1).ntd_beta(), 1);
  EXPECT_DOUBLE_EQ(ResolveTaskConfig(*ntd, 1).ntd_tau(), 3);
  auto ntd_adam = Resolve({"aggregation.strategy=fedadam", "client.ntd_beta=0.5", "client.ntd_tau=2",
                           R"(schedule=[{"from_round":5,"client":{"ntd_beta":0}}])"});
  ASSERT_TRUE(ntd_adam.ok()) << ntd_adam.status();
  EXPECT_DOUBLE_EQ(ResolveTaskConfig(*ntd_adam, 4).ntd_beta(), 0.5);
  EXPECT_DOUBLE_EQ(ResolveTaskConfig(*ntd_adam, 4).ntd_tau(), 2);
  EXPECT_EQ(ResolveTaskConfig(*ntd_adam, 5).ntd_beta(), 0);
  auto dp = Resolve({"aggregation.strategy=dp_fedavg_adaptive", "sampling.min_clients=40"});
  ASSERT_TRUE(dp.ok()) << dp.status();
  EXPECT_EQ(dp->aggregation().combiner().rule(), "mean");
  EXPECT_TRUE(dp->aggregation().dp().adaptive_clipping().enabled());
  EXPECT_DOUBLE_EQ(dp->aggregation().dp().clip_norm(), 0.1);
  EXPECT_DOUBLE_EQ(dp->aggregation().dp().adaptive_clipping().count_noise_stddev(), 2.0);
  // The schedule changes the server lr and the DP noise from a round on.
  auto sched = Resolve({"aggregation.strategy=dp_fedavg",
                        R"(schedule=[{"from_round":3,"server_lr":0.5,"dp_noise_multiplier":2}])"});
  ASSERT_TRUE(sched.ok()) << sched.status();
  EXPECT_DOUBLE_EQ(ResolveServerLr(*sched, 2), 1.0);
  EXPECT_DOUBLE_EQ(ResolveServerLr(*sched, 3), 0.5);
  EXPECT_DOUBLE_EQ(ResolveNoiseMultiplier(*sched, 2), 1.0);
  EXPECT_DOUBLE_EQ(ResolveNoiseMultiplier(*sched, 9), 2.0);
  // Every preset resolves to a valid config and a pipeline.
  for (const StrategyPreset& p : StrategyPresets()) {
    auto c = Resolve({"aggregation.strategy=" + p.name, "sampling.min_clients=10"});
    ASSERT_TRUE(c.ok()) << p.name << ": " << c.status();
    auto pipeline = CreatePipeline(*c, 100);
    ASSERT_TRUE(pipeline.ok()) << p.name << ": " << pipeline.status();
    EXPECT_EQ((*pipeline)->name(), p.name);
  }
  EXPECT_THAT(StrategiesHelp(), HasSubstr("multikrum"));
  EXPECT_THAT(StrategiesHelp(), HasSubstr("tau 1e-3"));
}

// Model averaging is off by default; on, it reaches the pipeline's options and leaves the
// strategy's stages as they were.
TEST(Config, ModelAveragingIsOffByDefaultAndReachesThePipeline) {
  auto plain = Resolve({"aggregation.strategy=fedadam"});
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_EQ(plain->aggregation().averaging().from_round(), 0);
  EXPECT_FALSE(plain->aggregation().averaging().has_ema_decay());
  auto off = PipelineOptionsFor(*plain, 10);
  ASSERT_TRUE(off.ok()) << off.status();
  EXPECT_FALSE(off->averaging.has_value());

  auto on = Resolve({"aggregation.strategy=fedadam", "rounds=50",
                     "aggregation.averaging.from_round=41", "aggregation.averaging.ema_decay=0.8"});
  ASSERT_TRUE(on.ok()) << on.status();
  auto opts = PipelineOptionsFor(*on, 10);
  ASSERT_TRUE(opts.ok()) << opts.status();
  ASSERT_TRUE(opts->averaging.has_value());
  EXPECT_EQ(opts->averaging->from_round, 41);
  EXPECT_EQ(opts->averaging->ema_decay, 0.8);
  EXPECT_EQ(opts->optimizer, "adam");
  auto uniform = Resolve({"rounds=50", "aggregation.averaging.from_round=50"});
  ASSERT_TRUE(uniform.ok()) << uniform.status();
  EXPECT_EQ(uniform->aggregation().averaging().ema_decay(), 0);  // filled: the uniform mean
}

TEST(Config, BadAggregationNamesTheField) {
  EXPECT_THAT(ResolveError({"aggregation.strategy=fedfoo"}),
              HasSubstr("aggregation.strategy: unknown strategy \"fedfoo\""));
  EXPECT_THAT(ResolveError({"aggregation.combiner.rule=mode"}),
              HasSubstr("aggregation.combiner.rule: unknown rule \"mode\""));
  EXPECT_THAT(ResolveError({"aggregation.server_optimizer.name=lamb"}),
              HasSubstr("aggregation.server_optimizer.name: unknown optimizer \"lamb\""));
  EXPECT_EQ(ResolveError({"aggregation.strategy=fedadam", "aggregation.server_optimizer.beta1=1"}),
            "aggregation.server_optimizer.beta1 must be in [0, 1), got 1");
  EXPECT_EQ(ResolveError({"aggregation.strategy=fedyogi", "aggregation.server_optimizer.beta2=-0.1"}),
            "aggregation.server_optimizer.beta2 must be in [0, 1), got -0.1");
  EXPECT_EQ(ResolveError({"aggregation.strategy=fedyogi", "aggregation.server_optimizer.tau=0"}),
            "aggregation.server_optimizer.tau must be finite and > 0, got 0");
  EXPECT_EQ(ResolveError({"aggregation.strategy=fedtrimmedavg", "aggregation.combiner.trim_beta=0.5"}),
            "aggregation.combiner.trim_beta must be in [0, 0.5), got 0.5");
  EXPECT_THAT(ResolveError({"aggregation.strategy=krum", "aggregation.combiner.num_byzantine=2",
                            "sampling.min_clients=6"}),
              HasSubstr("aggregation.combiner.num_byzantine = 2 is too large"));
  EXPECT_TRUE(Resolve({"aggregation.strategy=krum", "aggregation.combiner.num_byzantine=2",
                       "sampling.min_clients=7"}).ok());
  EXPECT_EQ(ResolveError({"aggregation.strategy=dp_fedavg", "aggregation.dp.noise_multiplier=-1"}),
            "aggregation.dp.noise_multiplier must be finite and >= 0, got -1");
  EXPECT_EQ(ResolveError({"aggregation.strategy=dp_fedavg", "aggregation.dp.delta=1"}),
            "aggregation.dp.delta must be in (0, 1), got 1");
  EXPECT_EQ(ResolveError({"aggregation.strategy=dp_fedavg", "aggregation.dp.delta=0"}),
            "aggregation.dp.delta must be in (0, 1), got 0");
  EXPECT_THAT(ResolveError({"aggregation.strategy=fedmedian", "aggregation.dp.enabled=true"}),
              HasSubstr("aggregation.dp needs aggregation.combiner.rule \"mean\""));
  EXPECT_THAT(ResolveError({"aggregation.dp.noise_multiplier=1"}),
              HasSubstr("aggregation.dp.enabled is false"));
  EXPECT_THAT(ResolveError({R"(schedule=[{"from_round":2,"server_lr":0}])"}),
              HasSubstr("schedule[0].server_lr must be finite and > 0"));
  EXPECT_THAT(ResolveError({R"(schedule=[{"from_round":2,"dp_noise_multiplier":1}])"}),
              HasSubstr("dp_noise_multiplier is set but aggregation.dp.enabled is false"));
  EXPECT_EQ(ResolveError({"rounds=10", "aggregation.averaging.from_round=11"}),
            "aggregation.averaging.from_round must be in [0, rounds = 10] (0 = off), got 11");
  EXPECT_EQ(ResolveError({"aggregation.averaging.from_round=-1"}),
            "aggregation.averaging.from_round must be in [0, rounds = 10] (0 = off), got -1");
  EXPECT_EQ(ResolveError({"aggregation.averaging.from_round=2", "aggregation.averaging.ema_decay=1"}),
            "aggregation.averaging.ema_decay must be in [0, 1) (0 = the uniform mean), got 1");
  EXPECT_EQ(ResolveError({"aggregation.averaging.ema_decay=0.9"}),
            "aggregation.averaging.ema_decay is set but aggregation.averaging.from_round is 0 (off)");
  EXPECT_EQ(ResolveError({"client.proximal_mu=-0.1"}), "client.proximal_mu must be >= 0, got -0.1");
  EXPECT_EQ(ResolveError({"client.ntd_beta=-1"}), "client.ntd_beta must be >= 0, got -1");
  EXPECT_EQ(ResolveError({"aggregation.strategy=fedntd", "client.ntd_tau=0"}),
            "client.ntd_tau must be > 0, got 0");
  EXPECT_EQ(ResolveError({R"(schedule=[{"from_round":2,"client":{"ntd_tau":-3}}])"}),
            "schedule[0].client.ntd_tau must be > 0, got -3");
  EXPECT_EQ(ResolveError({"client.restricted_softmax_alpha=1.5"}),
            "client.restricted_softmax_alpha must be in [0, 1], got 1.5");
  EXPECT_EQ(ResolveError({"client.restricted_softmax_alpha=-0.1"}),
            "client.restricted_softmax_alpha must be in [0, 1], got -0.1");
  EXPECT_EQ(ResolveError({R"(schedule=[{"from_round":2,"client":{"restricted_softmax_alpha":2}}])"}),
            "schedule[0].client.restricted_softmax_alpha must be in [0, 1], got 2");
  EXPECT_EQ(ResolveError({"client.min_battery_percent=101"}),
            "client.min_battery_percent must be in 0..100, got 101");
  EXPECT_EQ(ResolveError({"client.max_temperature_c=-5"}),
            "client.max_temperature_c must be >= 0, got -5");
  auto devices = Resolve({"client.min_battery_percent=30", "client.require_charging=true"});
  ASSERT_TRUE(devices.ok());
  EXPECT_EQ(ResolveTaskConfig(*devices, 1).min_battery_percent(), 30);
  EXPECT_TRUE(ResolveTaskConfig(*devices, 1).require_charging());
  EXPECT_THAT(ResolveError({"update_bounds.max_l2_norm=1", "aggregation.norm_bound.max_l2_norm=2"}),
              HasSubstr("not both"));
  // A buffered rule whose bound exceeds max_buffered_bytes is refused when the pipeline is built.
  auto big = Resolve({"aggregation.strategy=fedmedian", "aggregation.combiner.max_updates=100",
                      "aggregation.combiner.max_buffered_bytes=1000000"});
  ASSERT_TRUE(big.ok());
  auto refused = CreatePipeline(*big, 10000);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(refused.status().message(), HasSubstr("max_buffered_bytes"));
}

// Every shipped example is a valid experiment and builds its pipeline.
TEST(Config, EveryExampleConfigIsValid) {
  const std::string dir = std::string(EDGEFL_SERVER_SOURCE_DIR) + "/../examples";
  int seen = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    if (entry.path().extension() != ".json") continue;
    ++seen;
    auto config = LoadConfigFile(entry.path().string());
    ASSERT_TRUE(config.ok()) << entry.path() << ": " << config.status();
    FillDefaults(&*config);
    ASSERT_TRUE(ValidateConfig(*config).ok()) << entry.path() << ": " << ValidateConfig(*config);
    auto pipeline = CreatePipeline(*config, 1663370);  // fedavg_cnn's size
    EXPECT_TRUE(pipeline.ok()) << entry.path() << ": " << pipeline.status();
  }
  EXPECT_GE(seen, 12);
}

TEST(Config, ValidateConfigNamesTheField) {
  EXPECT_EQ(Message(ValidateWith("client.lr=-1")), "client.lr must be > 0, got -1");
  EXPECT_EQ(Message(ValidateWith("client.lr=0")), "client.lr must be > 0, got 0");
  EXPECT_EQ(Message(ValidateWith("rounds=0")), "rounds must be >= 1, got 0");
  EXPECT_EQ(Message(ValidateWith("sampling.fraction=1.5")),
            "sampling.fraction must be in (0, 1], got 1.5");
  EXPECT_EQ(Message(ValidateWith("sampling.fraction=0")),
            "sampling.fraction must be in (0, 1], got 0");
  EXPECT_EQ(Message(ValidateWith("client.batch_size=0")), "client.batch_size must be >= 1, got 0");
  EXPECT_EQ(Message(ValidateWith("quorum=0")), "quorum must be in (0, 1], got 0");
  EXPECT_EQ(Message(ValidateWith("sampling.min_clients=0")),
            "sampling.min_clients must be >= 1, got 0");
  EXPECT_EQ(Message(ValidateWith("sampling.over_selection=-0.1")),
            "sampling.over_selection must be >= 0, got -0.1");
  EXPECT_EQ(Message(ValidateWith("max_round_attempts=0")),
            "max_round_attempts must be >= 1, got 0");
  EXPECT_EQ(Message(ValidateWith("deadline_seconds=0")), "deadline_seconds must be > 0, got 0");
  EXPECT_EQ(Message(ValidateWith("evaluation.every=0")), "evaluation.every must be >= 1, got 0");
  EXPECT_EQ(Message(ValidateWith("client.momentum=1")), "client.momentum must be in [0, 1), got 1");
  EXPECT_EQ(Message(ValidateWith("model=")), "model must not be empty");
  EXPECT_THAT(Message(ValidateWith("client.lr=nan")), HasSubstr("client.lr must be > 0"));
  EXPECT_EQ(Message(ValidateWith(R"(schedule=[{"from_round":0}])")),
            "schedule[0].from_round must be >= 1, got 0");
  EXPECT_EQ(
      Message(ValidateWith(R"(schedule=[{"from_round":2},{"from_round":5,"client":{"lr":-2}}])")),
      "schedule[1].client.lr must be > 0, got -2");
  EXPECT_EQ(Message(ValidateWith(R"(schedule=[{"from_round":2,"deadline_seconds":-1}])")),
            "schedule[0].deadline_seconds must be > 0, got -1");
  EXPECT_EQ(ValidateWith("client.lr=0.5").code(), absl::StatusCode::kOk);
  EXPECT_EQ(ValidateWith("client.lr=-1").code(), absl::StatusCode::kInvalidArgument);
}

TEST(Config, UpdateBoundsAreValidated) {
  EXPECT_EQ(Message(ValidateWith("update_bounds.max_l2_norm=0")),
            "update_bounds.max_l2_norm must be > 0, got 0");
  EXPECT_THAT(Message(ValidateWith("update_bounds.max_l2_norm=nan")),
              HasSubstr("update_bounds.max_l2_norm must be > 0"));
  EXPECT_EQ(Message(ValidateWith("update_bounds.on_violation=drop")),
            "update_bounds.on_violation must be \"reject\" or \"clip\", got \"drop\"");
  EXPECT_TRUE(ValidateWith("update_bounds.max_l2_norm=10").ok());
  EXPECT_TRUE(ValidateWith(R"(update_bounds={"max_l2_norm": 5, "on_violation": "clip"})").ok());
  proto::ExperimentConfig config;
  FillDefaults(&config);
  EXPECT_FALSE(config.update_bounds().has_max_l2_norm());  // no bound unless configured
  EXPECT_EQ(config.update_bounds().on_violation(), "reject");
  auto parsed = ParseConfigJson(R"({"update_bounds": {"max_l2_norm": 2.5}})");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->update_bounds().max_l2_norm(), 2.5);
}

// Found by server/fuzz/fuzz_config: protobuf's JSON parser lets invalid UTF-8 into string fields,
// and such a config does not survive config.json.
TEST(Config, InvalidUtf8StringsAreRefused) {
  auto parsed = ParseConfigJson("{\"data_dir\": \"/data/\xff\xfe\"}");
  if (parsed.ok()) {
    FillDefaults(&*parsed);
    EXPECT_EQ(Message(ValidateConfig(*parsed)), "data_dir is not valid UTF-8");
  }
  EXPECT_EQ(Message(ValidateWith("client.uplink=int8\xc3")), "client.uplink is not valid UTF-8");
  // The UTF-8 walk does not hide the other checks.
  EXPECT_THAT(Message(ValidateWith(R"(schedule=[{"from_round":2,"client":{"downlink":"x"}}])")),
              HasSubstr("schedule[0].client.downlink"));
  EXPECT_TRUE(ValidateWith("data_dir=/data/fa\xc3\xa7"
                           "ade \xe2\x82\xac \xf0\x9f\x98\x80")
                  .ok());
}

TEST(Config, ResolveTaskConfigAppliesScheduleFieldByField) {
  proto::ExperimentConfig config;
  ASSERT_TRUE(ApplyOverride("seed=77", &config).ok());
  ASSERT_TRUE(ApplyOverride("client.epochs=2", &config).ok());
  // Listed out of order on purpose: entries apply by from_round.
  ASSERT_TRUE(ApplyOverride(R"(schedule=[
      {"from_round": 20, "client": {"epochs": 5}, "deadline_seconds": 30},
      {"from_round": 10, "client": {"lr": 0.02, "batch_size": 16}}])",
                            &config)
                  .ok());
  FillDefaults(&config);
  ASSERT_TRUE(ValidateConfig(config).ok());

  proto::TaskConfig r1 = ResolveTaskConfig(config, 1);
  EXPECT_DOUBLE_EQ(r1.lr(), 0.05);
  EXPECT_EQ(r1.epochs(), 2);
  EXPECT_EQ(r1.batch_size(), 32);
  EXPECT_EQ(r1.seed(), 77u);

  proto::TaskConfig r9 = ResolveTaskConfig(config, 9);
  EXPECT_DOUBLE_EQ(r9.lr(), 0.05);
  EXPECT_EQ(r9.batch_size(), 32);

  proto::TaskConfig r10 = ResolveTaskConfig(config, 10);
  EXPECT_DOUBLE_EQ(r10.lr(), 0.02);
  EXPECT_EQ(r10.batch_size(), 16);
  EXPECT_EQ(r10.epochs(), 2);  // not in the entry: base value kept

  proto::TaskConfig r25 = ResolveTaskConfig(config, 25);
  EXPECT_DOUBLE_EQ(r25.lr(), 0.02);  // from the round-10 entry, not reset by the round-20 one
  EXPECT_EQ(r25.batch_size(), 16);
  EXPECT_EQ(r25.epochs(), 5);
  EXPECT_EQ(r25.seed(), 77u);

  EXPECT_DOUBLE_EQ(ResolveDeadlineSeconds(config, 19), 300);
  EXPECT_DOUBLE_EQ(ResolveDeadlineSeconds(config, 20), 30);
}

TEST(Config, ResolveTaskConfigLaterEntryWinsAndDefaultsWithoutFill) {
  proto::ExperimentConfig config;
  ASSERT_TRUE(ApplyOverride(R"(schedule=[
      {"from_round": 3, "client": {"lr": 0.2}},
      {"from_round": 3, "client": {"lr": 0.3}},
      {"from_round": 2, "client": {"momentum": 0.5}},
      {"from_round": 1, "client": {"lr": 0.9, "epochs": 4}}])",
                            &config)
                  .ok());
  proto::TaskConfig r = ResolveTaskConfig(config, 3);  // FillDefaults not run
  EXPECT_DOUBLE_EQ(r.lr(), 0.3);  // the round-1 entry is listed last but applies first
  EXPECT_DOUBLE_EQ(r.momentum(), 0.5);
  EXPECT_EQ(r.epochs(), 4);
  EXPECT_EQ(r.batch_size(), 32);
  EXPECT_DOUBLE_EQ(ResolveTaskConfig(config, 1).lr(), 0.9);
  EXPECT_DOUBLE_EQ(ResolveTaskConfig(config, 2).lr(), 0.9);
  EXPECT_DOUBLE_EQ(ResolveTaskConfig(config, 0).lr(), 0.05);  // before any entry
  EXPECT_DOUBLE_EQ(ResolveDeadlineSeconds(config, 1), 300);
}

}  // namespace
}  // namespace edgefl::server
