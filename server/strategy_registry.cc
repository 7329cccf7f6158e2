#include "server/strategy_registry.h"

#include <algorithm>
#include <cmath>
#include <functional>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"

namespace edgefl::server {
namespace {

using proto::Aggregation;
using proto::ExperimentConfig;

constexpr char kDefaultStrategy[] = "fedavg";
constexpr char kDefaultRule[] = "weighted_mean";
constexpr char kDefaultOptimizer[] = "sgd";
constexpr double kDefaultTrimBeta = 0.1;
constexpr int kDefaultByzantine = 1;
constexpr int kDefaultMaxUpdates = 100;
constexpr int kDefaultBufferSize = 10;
constexpr double kDefaultStalenessExponent = 0.5;  // FedBuff: 1 / sqrt(1 + s)
constexpr int kDefaultMaxStaleness = 10;
constexpr uint64_t kDefaultMaxBufferedBytes = uint64_t{2} << 30;
constexpr double kDefaultClipNorm = 1.0;
constexpr double kDefaultNoiseMultiplier = 1.0;
constexpr double kDefaultDelta = 1e-5;
constexpr double kDefaultTargetQuantile = 0.5;
constexpr double kDefaultClipLr = 0.2;
constexpr double kDefaultProximalMu = 0.01;
constexpr double kDefaultRestrictedSoftmaxAlpha = 0.5;  // FedRS's recommended alpha
constexpr double kDefaultNtdBeta = 1.0;  // FedNTD's beta (Lee et al. 2022)
constexpr double kDefaultFedDynAlpha = 0.01;  // Acar et al. 2021's most used value

// Per-optimizer defaults (Flower's for the adaptive rules; aggregation/server_optimizer.h).
struct OptimizerDefaults {
  const char* name;
  double lr, momentum, beta1, beta2, tau;
};
constexpr OptimizerDefaults kOptimizers[] = {
    {"sgd", 1.0, 0.0, 0, 0, 0},
    {"adam", 0.1, 0, 0.9, 0.99, 1e-9},
    {"yogi", 0.01, 0, 0.9, 0.99, 1e-3},
    {"adagrad", 0.1, 0, 0.0, 0, 1e-9},
    {"feddyn", 1.0, 0, 0, 0, 0},  // alpha: kDefaultFedDynAlpha
};
const OptimizerDefaults* FindOptimizer(const std::string& name) {
  for (const OptimizerDefaults& o : kOptimizers) {
    if (name == o.name) return &o;
  }
  return nullptr;
}

const char* const kRules[] = {"weighted_mean", "mean", "median", "trimmed_mean", "krum",
                              "multi_krum"};
bool IsRule(const std::string& r) {
  return std::find(std::begin(kRules), std::end(kRules), r) != std::end(kRules);
}
bool IsKrum(const std::string& r) { return r == "krum" || r == "multi_krum"; }
bool IsBuffered(const std::string& r) { return r != "weighted_mean" && r != "mean"; }

struct Preset {
  StrategyPreset info;
  std::function<void(ExperimentConfig*)> apply;  // sets only fields that are unset
};

void SetOptimizer(Aggregation* a, const char* name) {
  if (!a->server_optimizer().has_name()) a->mutable_server_optimizer()->set_name(name);
}
void SetRule(Aggregation* a, const char* rule) {
  if (!a->combiner().has_rule()) a->mutable_combiner()->set_rule(rule);
}

const std::vector<Preset>& Presets() {
  static const auto* presets = new std::vector<Preset>{
      {{"fedavg", "FedAvg (McMahan et al. 2017): sample-weighted mean, server SGD with lr 1",
        "combiner.rule=weighted_mean server_optimizer.name=sgd lr=1"},
       [](ExperimentConfig* c) {
         SetRule(c->mutable_aggregation(), "weighted_mean");
         SetOptimizer(c->mutable_aggregation(), "sgd");
       }},
      {{"fedavgm", "FedAvgM (Hsu et al. 2019): FedAvg with server momentum",
        "server_optimizer.name=sgd lr=1 momentum=0.9"},
       [](ExperimentConfig* c) {
         Aggregation* a = c->mutable_aggregation();
         SetRule(a, "weighted_mean");
         SetOptimizer(a, "sgd");
         if (!a->server_optimizer().has_momentum()) a->mutable_server_optimizer()->set_momentum(0.9);
       }},
      {{"fedadam", "FedAdam (Reddi et al. 2021): Adam on the mean delta as pseudo-gradient",
        "server_optimizer.name=adam lr=0.1 beta1=0.9 beta2=0.99 tau=1e-9"},
       [](ExperimentConfig* c) {
         SetRule(c->mutable_aggregation(), "weighted_mean");
         SetOptimizer(c->mutable_aggregation(), "adam");
       }},
      {{"fedyogi", "FedYogi (Reddi et al. 2021): Yogi's additive second moment",
        "server_optimizer.name=yogi lr=0.01 beta1=0.9 beta2=0.99 tau=1e-3"},
       [](ExperimentConfig* c) {
         SetRule(c->mutable_aggregation(), "weighted_mean");
         SetOptimizer(c->mutable_aggregation(), "yogi");
       }},
      {{"fedadagrad", "FedAdagrad (Reddi et al. 2021): Adagrad's running sum of squares",
        "server_optimizer.name=adagrad lr=0.1 beta1=0 tau=1e-9"},
       [](ExperimentConfig* c) {
         SetRule(c->mutable_aggregation(), "weighted_mean");
         SetOptimizer(c->mutable_aggregation(), "adagrad");
       }},
      {{"fedprox", "FedProx (Li et al. 2020): FedAvg with a proximal term on the device",
        "client.proximal_mu=0.01 (plus fedavg)"},
       [](ExperimentConfig* c) {
         SetRule(c->mutable_aggregation(), "weighted_mean");
         SetOptimizer(c->mutable_aggregation(), "sgd");
         if (!c->client().has_proximal_mu()) c->mutable_client()->set_proximal_mu(kDefaultProximalMu);
       }},
      {{"fedrs", "FedRS (Li & Zhan 2021): FedAvg; devices restrict the softmax to their classes",
        "client.restricted_softmax_alpha=0.5 (plus fedavg)"},
       [](ExperimentConfig* c) {
         SetRule(c->mutable_aggregation(), "weighted_mean");
         SetOptimizer(c->mutable_aggregation(), "sgd");
         if (!c->client().has_restricted_softmax_alpha()) {
           c->mutable_client()->set_restricted_softmax_alpha(kDefaultRestrictedSoftmaxAlpha);
         }
       }},
      {{"fedbabu", "FedBABU (Oh et al. 2022): FedAvg; devices train the body, the head stays fixed",
        "client.freeze_head=true (plus fedavg)"},
       [](ExperimentConfig* c) {
         SetRule(c->mutable_aggregation(), "weighted_mean");
         SetOptimizer(c->mutable_aggregation(), "sgd");
         if (!c->client().has_freeze_head()) c->mutable_client()->set_freeze_head(true);
       }},
      {{"fedntd", "FedNTD (Lee et al. 2022): FedAvg; devices distil the global model's not-true classes",
        "client.ntd_beta=1, client.ntd_tau=3 (plus fedavg)"},
       [](ExperimentConfig* c) {
         SetRule(c->mutable_aggregation(), "weighted_mean");
         SetOptimizer(c->mutable_aggregation(), "sgd");
         if (!c->client().has_ntd_beta()) c->mutable_client()->set_ntd_beta(kDefaultNtdBeta);
       }},
      {{"feddyn", "FedDyn (Acar et al. 2021): devices keep a linear term that cancels their drift",
        "server_optimizer.name=feddyn alpha=0.01 (lr 1, fixed; devices: proximal weight alpha)"},
       [](ExperimentConfig* c) {
         SetRule(c->mutable_aggregation(), "weighted_mean");
         SetOptimizer(c->mutable_aggregation(), "feddyn");
       }},
      {{"fedmedian", "FedMedian (Yin et al. 2018): coordinate-wise median, unweighted",
        "combiner.rule=median"},
       [](ExperimentConfig* c) {
         SetRule(c->mutable_aggregation(), "median");
         SetOptimizer(c->mutable_aggregation(), "sgd");
       }},
      {{"fedtrimmedavg", "Trimmed mean (Yin et al. 2018): drop beta per tail per coordinate",
        "combiner.rule=trimmed_mean trim_beta=0.2"},
       [](ExperimentConfig* c) {
         Aggregation* a = c->mutable_aggregation();
         SetRule(a, "trimmed_mean");
         if (!a->combiner().has_trim_beta()) a->mutable_combiner()->set_trim_beta(0.2);
         SetOptimizer(a, "sgd");
       }},
      {{"krum", "Krum (Blanchard et al. 2017): the update closest to its n - f - 2 neighbours",
        "combiner.rule=krum num_byzantine=1"},
       [](ExperimentConfig* c) {
         SetRule(c->mutable_aggregation(), "krum");
         SetOptimizer(c->mutable_aggregation(), "sgd");
       }},
      {{"multikrum", "Multi-Krum (Blanchard et al. 2017): mean of the m best Krum scores",
        "combiner.rule=multi_krum num_byzantine=1 multi_krum_m=0 (n - f)"},
       [](ExperimentConfig* c) {
         SetRule(c->mutable_aggregation(), "multi_krum");
         SetOptimizer(c->mutable_aggregation(), "sgd");
       }},
      {{"dp_fedavg", "DP-FedAvg (McMahan et al. 2018): clip to C, unweighted mean, Gaussian noise",
        "combiner.rule=mean dp.enabled=true clip_norm=1 noise_multiplier=1 delta=1e-5"},
       [](ExperimentConfig* c) {
         Aggregation* a = c->mutable_aggregation();
         SetRule(a, "mean");
         SetOptimizer(a, "sgd");
         if (!a->dp().has_enabled()) a->mutable_dp()->set_enabled(true);
       }},
      {{"dp_fedavg_adaptive",
        "DP-FedAvg with adaptive clipping (Andrew et al. 2021): C tracks a norm quantile",
        "dp_fedavg + dp.adaptive_clipping.enabled=true target_quantile=0.5 learning_rate=0.2, "
        "clip_norm starts at 0.1"},
       [](ExperimentConfig* c) {
         Aggregation* a = c->mutable_aggregation();
         SetRule(a, "mean");
         SetOptimizer(a, "sgd");
         proto::DifferentialPrivacy* dp = a->mutable_dp();
         if (!dp->has_enabled()) dp->set_enabled(true);
         if (!dp->has_clip_norm()) dp->set_clip_norm(0.1);
         if (!dp->adaptive_clipping().has_enabled()) {
           dp->mutable_adaptive_clipping()->set_enabled(true);
         }
       }},
  };
  return *presets;
}

const Preset* FindPreset(const std::string& name) {
  for (const Preset& p : Presets()) {
    if (p.info.name == name) return &p;
  }
  return nullptr;
}

absl::Status Bad(const std::string& field, const std::string& requirement, double value) {
  return absl::InvalidArgumentError(
      absl::StrCat("aggregation.", field, " must be ", requirement, ", got ", value));
}

absl::Status CheckBeta(const std::string& field, double v) {
  if (!(v >= 0 && v < 1)) return Bad(field, "in [0, 1)", v);
  return absl::OkStatus();
}
absl::Status CheckPositiveFinite(const std::string& field, double v) {
  if (!(v > 0) || std::isinf(v)) return Bad(field, "finite and > 0", v);
  return absl::OkStatus();
}

std::string Quoted(const std::string& s) { return absl::StrCat("\"", absl::CEscape(s.substr(0, 64)), "\""); }

}  // namespace

const std::vector<StrategyPreset>& StrategyPresets() {
  static const auto* list = [] {
    auto* v = new std::vector<StrategyPreset>;
    for (const Preset& p : Presets()) v->push_back(p.info);
    return v;
  }();
  return *list;
}

void FillAggregationDefaults(ExperimentConfig* config) {
  Aggregation* a = config->mutable_aggregation();
  if (!a->has_strategy()) a->set_strategy(kDefaultStrategy);
  if (const Preset* preset = FindPreset(a->strategy()); preset != nullptr) preset->apply(config);
  proto::Combiner* c = a->mutable_combiner();
  if (!c->has_rule()) c->set_rule(kDefaultRule);
  if (c->rule() == "trimmed_mean" && !c->has_trim_beta()) c->set_trim_beta(kDefaultTrimBeta);
  if (IsKrum(c->rule()) && !c->has_num_byzantine()) c->set_num_byzantine(kDefaultByzantine);
  if (c->rule() == "multi_krum") {
    if (!c->has_multi_krum_m()) c->set_multi_krum_m(0);
    if (!c->has_multi_krum_weighted()) c->set_multi_krum_weighted(false);
  }
  if (IsBuffered(c->rule())) {
    if (!c->has_max_updates()) c->set_max_updates(kDefaultMaxUpdates);
    if (!c->has_max_buffered_bytes()) c->set_max_buffered_bytes(kDefaultMaxBufferedBytes);
  }
  proto::ServerOptimizer* o = a->mutable_server_optimizer();
  if (!o->has_name()) o->set_name(kDefaultOptimizer);
  if (const OptimizerDefaults* d = FindOptimizer(o->name()); d != nullptr) {
    if (!o->has_lr()) o->set_lr(d->lr);
    const std::string name = o->name();
    if (name == "sgd" && !o->has_momentum()) o->set_momentum(d->momentum);
    const bool adaptive = name == "adam" || name == "yogi" || name == "adagrad";
    if (adaptive && !o->has_beta1()) o->set_beta1(d->beta1);
    if ((name == "adam" || name == "yogi") && !o->has_beta2()) o->set_beta2(d->beta2);
    if (adaptive && !o->has_tau()) o->set_tau(d->tau);
    if (name == "feddyn" && !o->has_alpha()) o->set_alpha(kDefaultFedDynAlpha);
  }
  if (!a->has_mode()) a->set_mode("sync");
  if (a->mode() == "buffered") {
    proto::Buffered* b = a->mutable_buffered();
    if (!b->has_buffer_size()) b->set_buffer_size(kDefaultBufferSize);
    if (!b->has_concurrency()) b->set_concurrency(0);
    if (!b->has_staleness_exponent()) b->set_staleness_exponent(kDefaultStalenessExponent);
    if (!b->has_max_staleness()) b->set_max_staleness(kDefaultMaxStaleness);
  }
  proto::ModelAveraging* avg = a->mutable_averaging();
  if (!avg->has_from_round()) avg->set_from_round(0);
  if (avg->from_round() > 0 && !avg->has_ema_decay()) avg->set_ema_decay(0);
  proto::DifferentialPrivacy* dp = a->mutable_dp();
  if (!dp->has_enabled()) dp->set_enabled(false);
  if (dp->enabled()) {
    if (!dp->has_clip_norm()) dp->set_clip_norm(kDefaultClipNorm);
    if (!dp->has_noise_multiplier()) dp->set_noise_multiplier(kDefaultNoiseMultiplier);
    if (!dp->has_delta()) dp->set_delta(kDefaultDelta);
    if (!dp->has_seed()) dp->set_seed(config->seed());
    proto::AdaptiveClipping* ac = dp->mutable_adaptive_clipping();
    if (!ac->has_enabled()) ac->set_enabled(false);
    if (ac->enabled()) {
      if (!ac->has_target_quantile()) ac->set_target_quantile(kDefaultTargetQuantile);
      if (!ac->has_learning_rate()) ac->set_learning_rate(kDefaultClipLr);
      if (!ac->has_count_noise_stddev()) {
        // Andrew et al.: K / 20 for K clients per round; at least 1 / sigma so that the count's
        // share of the budget leaves the update a finite noise multiplier.
        const double k = std::max(1, config->sampling().min_clients());
        const double z = dp->noise_multiplier();
        ac->set_count_noise_stddev(z > 0 ? std::max(k / 20, 1 / z) : k / 20);
      }
    }
  }
}

absl::Status ValidateAggregation(const ExperimentConfig& config) {
  const Aggregation& a = config.aggregation();
  if (FindPreset(a.strategy()) == nullptr) {
    std::vector<std::string> names;
    for (const Preset& p : Presets()) names.push_back(p.info.name);
    return absl::InvalidArgumentError(absl::StrCat("aggregation.strategy: unknown strategy ",
                                                   Quoted(a.strategy()), " (",
                                                   absl::StrJoin(names, ", "), ")"));
  }
  if (a.has_norm_bound() && config.update_bounds().has_max_l2_norm()) {
    return absl::InvalidArgumentError(
        "set the norm bound once: aggregation.norm_bound or update_bounds, not both");
  }
  const proto::UpdateBounds& nb = a.norm_bound();
  if (nb.has_max_l2_norm()) RETURN_IF_ERROR(CheckPositiveFinite("norm_bound.max_l2_norm", nb.max_l2_norm()));
  if (nb.has_on_violation() && nb.on_violation() != "reject" && nb.on_violation() != "clip") {
    return absl::InvalidArgumentError(absl::StrCat(
        "aggregation.norm_bound.on_violation must be \"reject\" or \"clip\", got ",
        Quoted(nb.on_violation())));
  }
  const proto::Combiner& c = a.combiner();
  if (!IsRule(c.rule())) {
    return absl::InvalidArgumentError(absl::StrCat("aggregation.combiner.rule: unknown rule ",
                                                   Quoted(c.rule()), " (",
                                                   absl::StrJoin(kRules, ", "), ")"));
  }
  if (c.has_trim_beta() && !(c.trim_beta() >= 0 && c.trim_beta() < 0.5)) {
    return Bad("combiner.trim_beta", "in [0, 0.5)", c.trim_beta());
  }
  if (c.has_max_updates() && c.max_updates() < 1) {
    return Bad("combiner.max_updates", ">= 1", c.max_updates());
  }
  if (IsBuffered(c.rule()) && c.max_buffered_bytes() == 0) {
    return Bad("combiner.max_buffered_bytes", "> 0", 0);
  }
  const int min_clients = config.sampling().min_clients();
  if (IsKrum(c.rule())) {
    const int f = c.num_byzantine();
    if (f < 0) return Bad("combiner.num_byzantine", ">= 0", f);
    if (min_clients <= 2 * f + 2) {
      return absl::InvalidArgumentError(absl::StrCat(
          "aggregation.combiner.num_byzantine = ", f, " is too large: ", c.rule(),
          " needs more than 2f + 2 = ", 2 * f + 2, " updates per round, but sampling.min_clients "
          "is ", min_clients));
    }
    if (c.rule() == "multi_krum") {
      if (c.multi_krum_m() < 0) return Bad("combiner.multi_krum_m", ">= 0 (0 = n - f)", c.multi_krum_m());
      if (c.multi_krum_m() > min_clients - f) {
        return absl::InvalidArgumentError(absl::StrCat(
            "aggregation.combiner.multi_krum_m = ", c.multi_krum_m(), " exceeds n - f = ",
            min_clients - f, " for sampling.min_clients ", min_clients, " and f = ", f));
      }
    }
  }
  const proto::ServerOptimizer& o = a.server_optimizer();
  if (FindOptimizer(o.name()) == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        "aggregation.server_optimizer.name: unknown optimizer ", Quoted(o.name()),
        " (sgd, adam, yogi, adagrad, feddyn)"));
  }
  RETURN_IF_ERROR(CheckPositiveFinite("server_optimizer.lr", o.lr()));
  if (o.has_momentum()) RETURN_IF_ERROR(CheckBeta("server_optimizer.momentum", o.momentum()));
  if (o.has_beta1()) RETURN_IF_ERROR(CheckBeta("server_optimizer.beta1", o.beta1()));
  if (o.has_beta2()) RETURN_IF_ERROR(CheckBeta("server_optimizer.beta2", o.beta2()));
  if (o.has_tau()) RETURN_IF_ERROR(CheckPositiveFinite("server_optimizer.tau", o.tau()));
  if (o.has_momentum() && o.name() != "sgd") {
    return absl::InvalidArgumentError(absl::StrCat(
        "aggregation.server_optimizer.momentum applies to sgd only (", o.name(), " has beta1)"));
  }
  if (o.name() == "feddyn") {
    if (o.has_beta1() || o.has_beta2() || o.has_tau()) {
      return absl::InvalidArgumentError(
          "aggregation.server_optimizer beta1, beta2 and tau apply to adam, yogi and adagrad, "
          "not feddyn (its parameters are lr and alpha)");
    }
    RETURN_IF_ERROR(CheckPositiveFinite("server_optimizer.alpha", o.alpha()));
    // -h / alpha corrects for the devices' terms only if the model moves by the whole mean
    // update: with lr 0.5 the terms over-correct and labels:2 diverged at round 13.
    bool scheduled_lr = false;
    for (const proto::ScheduleEntry& e : config.schedule()) scheduled_lr |= e.has_server_lr();
    if (o.lr() != 1.0 || scheduled_lr) {
      return absl::InvalidArgumentError(absl::StrCat(
          "aggregation.server_optimizer.lr must be 1 with feddyn (got ",
          scheduled_lr ? std::string("a schedule server_lr") : absl::StrCat(o.lr()),
          "): its correction -h / alpha assumes the model moves by the whole mean update, and "
          "any other step makes the devices' terms over- or under-correct"));
    }
    // The devices' proximal weight is alpha itself (TaskConfig.feddyn_alpha).
    bool proximal = config.client().has_proximal_mu();
    for (const proto::ScheduleEntry& e : config.schedule()) proximal |= e.client().has_proximal_mu();
    if (proximal) {
      return absl::InvalidArgumentError(
          "client.proximal_mu must be unset with aggregation.server_optimizer.name feddyn: the "
          "devices' proximal weight is aggregation.server_optimizer.alpha");
    }
    if (a.mode() == "buffered") {
      return absl::InvalidArgumentError(
          "aggregation.server_optimizer.name feddyn needs aggregation.mode \"sync\": its "
          "correction h assumes each update starts from the current model");
    }
  } else if (o.has_alpha()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "aggregation.server_optimizer.alpha applies to feddyn only, not ", o.name()));
  }
  if (a.mode() != "sync" && a.mode() != "buffered") {
    return absl::InvalidArgumentError(absl::StrCat(
        "aggregation.mode: unknown mode ", Quoted(a.mode()), " (sync, buffered)"));
  }
  if (a.mode() == "buffered") {
    const proto::Buffered& b = a.buffered();
    if (b.buffer_size() < 1) return Bad("buffered.buffer_size", ">= 1", b.buffer_size());
    if (b.concurrency() < 0) return Bad("buffered.concurrency", ">= 0 (0 = all)", b.concurrency());
    if (!(b.staleness_exponent() >= 0) || std::isinf(b.staleness_exponent())) {
      return Bad("buffered.staleness_exponent", "finite and >= 0", b.staleness_exponent());
    }
    if (b.max_staleness() < 0) return Bad("buffered.max_staleness", ">= 0", b.max_staleness());
    if (c.rule() != "weighted_mean" && c.rule() != "mean") {
      return absl::InvalidArgumentError(absl::StrCat(
          "aggregation.mode \"buffered\" needs a streaming combiner (weighted_mean or mean), not ",
          Quoted(c.rule())));
    }
    if (a.dp().enabled()) {
      return absl::InvalidArgumentError(
          "aggregation.mode \"buffered\" cannot be combined with aggregation.dp: the accountant "
          "assumes sampled synchronous rounds");
    }
  } else if (a.has_buffered()) {
    return absl::InvalidArgumentError(
        "aggregation.buffered is set but aggregation.mode is not \"buffered\"");
  }
  const proto::DifferentialPrivacy& dp = a.dp();
  if (dp.enabled()) {
    if (c.rule() != "mean") {
      return absl::InvalidArgumentError(absl::StrCat(
          "aggregation.dp needs aggregation.combiner.rule \"mean\" (got ", Quoted(c.rule()),
          "): the unweighted mean bounds each client's influence by clip_norm / K"));
    }
    RETURN_IF_ERROR(CheckPositiveFinite("dp.clip_norm", dp.clip_norm()));
    if (!(dp.noise_multiplier() >= 0) || std::isinf(dp.noise_multiplier())) {
      return Bad("dp.noise_multiplier", "finite and >= 0", dp.noise_multiplier());
    }
    if (!(dp.delta() > 0 && dp.delta() < 1)) return Bad("dp.delta", "in (0, 1)", dp.delta());
    const proto::AdaptiveClipping& ac = dp.adaptive_clipping();
    if (ac.enabled()) {
      if (!(ac.target_quantile() >= 0 && ac.target_quantile() <= 1)) {
        return Bad("dp.adaptive_clipping.target_quantile", "in [0, 1]", ac.target_quantile());
      }
      RETURN_IF_ERROR(CheckPositiveFinite("dp.adaptive_clipping.learning_rate", ac.learning_rate()));
      if (!(ac.count_noise_stddev() >= 0) || std::isinf(ac.count_noise_stddev())) {
        return Bad("dp.adaptive_clipping.count_noise_stddev", "finite and >= 0",
                   ac.count_noise_stddev());
      }
      if (dp.noise_multiplier() > 0 &&
          !(ac.count_noise_stddev() > 1 / (2 * dp.noise_multiplier()))) {
        return Bad("dp.adaptive_clipping.count_noise_stddev",
                   absl::StrCat("> 1 / (2 noise_multiplier) = ", 1 / (2 * dp.noise_multiplier()),
                                " (Andrew et al. 2021, Theorem 1)"),
                   ac.count_noise_stddev());
      }
    }
  } else if (dp.has_clip_norm() || dp.has_noise_multiplier() || dp.has_delta() ||
             dp.adaptive_clipping().enabled()) {
    return absl::InvalidArgumentError(
        "aggregation.dp fields are set but aggregation.dp.enabled is false");
  }
  const proto::ModelAveraging& avg = a.averaging();
  if (avg.from_round() < 0 || avg.from_round() > config.rounds()) {
    return Bad("averaging.from_round", absl::StrCat("in [0, rounds = ", config.rounds(), "] (0 = off)"),
               avg.from_round());
  }
  if (!(avg.ema_decay() >= 0 && avg.ema_decay() < 1)) {
    return Bad("averaging.ema_decay", "in [0, 1) (0 = the uniform mean)", avg.ema_decay());
  }
  if (avg.from_round() == 0 && avg.ema_decay() != 0) {
    return absl::InvalidArgumentError(
        "aggregation.averaging.ema_decay is set but aggregation.averaging.from_round is 0 (off)");
  }
  for (int i = 0; i < config.schedule_size(); ++i) {
    const proto::ScheduleEntry& e = config.schedule(i);
    if (e.has_server_lr() && (!(e.server_lr() > 0) || std::isinf(e.server_lr()))) {
      return absl::InvalidArgumentError(absl::StrCat("schedule[", i,
                                                     "].server_lr must be finite and > 0, got ",
                                                     e.server_lr()));
    }
    if (e.has_dp_noise_multiplier()) {
      if (!dp.enabled()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "schedule[", i, "].dp_noise_multiplier is set but aggregation.dp.enabled is false"));
      }
      if (!(e.dp_noise_multiplier() >= 0) || std::isinf(e.dp_noise_multiplier())) {
        return absl::InvalidArgumentError(absl::StrCat(
            "schedule[", i, "].dp_noise_multiplier must be finite and >= 0, got ",
            e.dp_noise_multiplier()));
      }
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<aggregation::PipelineOptions> PipelineOptionsFor(const ExperimentConfig& config,
                                                               size_t dim) {
  using aggregation::PipelineOptions;
  const Aggregation& a = config.aggregation();
  PipelineOptions p;
  p.dim = dim;
  p.name = a.strategy();
  const proto::UpdateBounds& nb =
      a.norm_bound().has_max_l2_norm() ? a.norm_bound() : config.update_bounds();
  if (nb.has_max_l2_norm()) {
    aggregation::NormBoundFilter::Options f;
    f.max_norm = nb.max_l2_norm();
    f.mode = nb.on_violation() == "clip" ? aggregation::NormBoundFilter::Mode::kClip
                                         : aggregation::NormBoundFilter::Mode::kReject;
    p.norm_bound = f;
  }
  const proto::Combiner& c = a.combiner();
  if (c.rule() == "weighted_mean") {
    p.combiner = PipelineOptions::Combiner::kWeightedMean;
  } else if (c.rule() == "mean") {
    p.combiner = PipelineOptions::Combiner::kMean;
  } else {
    p.combiner = PipelineOptions::Combiner::kBuffered;
    aggregation::BufferedCombiner::Options& b = p.buffered;
    b.rule = c.rule() == "median"         ? aggregation::RobustRule::kMedian
             : c.rule() == "trimmed_mean" ? aggregation::RobustRule::kTrimmedMean
             : c.rule() == "krum"         ? aggregation::RobustRule::kKrum
                                          : aggregation::RobustRule::kMultiKrum;
    b.max_updates = c.max_updates();
    b.max_buffered_bytes = c.max_buffered_bytes();
    b.trim_beta = c.has_trim_beta() ? c.trim_beta() : kDefaultTrimBeta;
    b.num_byzantine = c.num_byzantine();
    b.multi_krum_m = c.multi_krum_m();
    b.multi_krum_weighted = c.multi_krum_weighted();
  }
  const proto::ServerOptimizer& o = a.server_optimizer();
  p.optimizer = o.name();
  p.sgd.learning_rate = p.adam.learning_rate = p.yogi.learning_rate = p.adagrad.learning_rate =
      o.lr();
  p.sgd.momentum = o.momentum();
  p.adam.beta1 = p.yogi.beta1 = p.adagrad.beta1 = o.beta1();
  p.adam.beta2 = p.yogi.beta2 = o.beta2();
  if (o.has_tau()) p.adam.tau = p.yogi.tau = p.adagrad.tau = o.tau();
  if (o.has_alpha()) p.feddyn.alpha = o.alpha();
  const proto::DifferentialPrivacy& dp = a.dp();
  if (dp.enabled()) {
    PipelineOptions::Dp d;
    d.clip_norm = dp.clip_norm();
    d.noise_multiplier = dp.noise_multiplier();
    d.delta = dp.delta();
    d.seed = dp.seed();
    if (dp.adaptive_clipping().enabled()) {
      aggregation::AdaptiveClipping::Options ac;
      ac.target_quantile = dp.adaptive_clipping().target_quantile();
      ac.learning_rate = dp.adaptive_clipping().learning_rate();
      ac.count_noise_stddev = dp.adaptive_clipping().count_noise_stddev();
      ac.seed = dp.seed() ^ 0x5bd1e995u;  // its own stream, derived from the noise seed
      d.adaptive = ac;
    }
    p.dp = d;
  }
  if (a.averaging().from_round() > 0) {
    aggregation::ModelAverage::Options m;
    m.from_round = a.averaging().from_round();
    m.ema_decay = a.averaging().ema_decay();
    p.averaging = m;
  }
  return p;
}

absl::StatusOr<std::unique_ptr<aggregation::Pipeline>> CreatePipeline(
    const ExperimentConfig& config, size_t dim) {
  ASSIGN_OR_RETURN(const aggregation::PipelineOptions options, PipelineOptionsFor(config, dim));
  absl::StatusOr<std::unique_ptr<aggregation::Pipeline>> p = aggregation::Pipeline::Create(options);
  if (!p.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("aggregation: ", p.status().message()));
  }
  return p;
}

namespace {
template <typename Get, typename Has>
double Resolve(const ExperimentConfig& config, int64_t round, double base, Has has, Get get) {
  int64_t from = 0;
  double value = base;
  // Later entries win among equal from_round, as for the client settings.
  for (const proto::ScheduleEntry& e : config.schedule()) {
    if (e.from_round() <= round && (e.*has)() && e.from_round() >= from) {
      from = e.from_round();
      value = (e.*get)();
    }
  }
  return value;
}
}  // namespace

double ResolveServerLr(const ExperimentConfig& config, int64_t round) {
  return Resolve(config, round, config.aggregation().server_optimizer().lr(),
                 &proto::ScheduleEntry::has_server_lr, &proto::ScheduleEntry::server_lr);
}

double ResolveNoiseMultiplier(const ExperimentConfig& config, int64_t round) {
  if (!config.aggregation().dp().enabled()) return -1;
  return Resolve(config, round, config.aggregation().dp().noise_multiplier(),
                 &proto::ScheduleEntry::has_dp_noise_multiplier,
                 &proto::ScheduleEntry::dp_noise_multiplier);
}

std::string StrategiesHelp() {
  std::string out =
      "Aggregation: update -> filters -> combiner -> DP noise -> server optimizer -> global model.\n"
      "Pick a preset with aggregation.strategy (config JSON, or --set aggregation.strategy=NAME);\n"
      "any field set explicitly overrides the preset.\n\nStrategies (presets):\n";
  for (const Preset& p : Presets()) {
    absl::StrAppend(&out, "  ", p.info.name, std::string(20 - std::min<size_t>(19, p.info.name.size()), ' '),
                    p.info.summary, "\n", std::string(22, ' '), "sets ", p.info.settings, "\n");
  }
  absl::StrAppend(
      &out,
      "\nFilters (in this order, on each update):\n"
      "  norm_bound          aggregation.norm_bound.max_l2_norm (unset = none; > 0),\n"
      "                      on_violation reject (default; counted rejected.update_norm) | clip\n"
      "  dp_clip             with aggregation.dp.enabled: scale each update to norm <= clip_norm\n"
      "\nCombiners (aggregation.combiner.rule):\n"
      "  weighted_mean       sample-weighted mean, streaming, memory O(model)   [default]\n"
      "  mean                unweighted mean, streaming (required by DP)\n"
      "  median              coordinate-wise median, buffered O(K x model)\n"
      "  trimmed_mean        trim_beta per tail in [0, 0.5), default 0.1 (fedtrimmedavg: 0.2)\n"
      "  krum                num_byzantine f >= 0, default 1; needs n > 2f + 2 updates\n"
      "  multi_krum          f as krum; multi_krum_m (0 = n - f, default), multi_krum_weighted "
      "false\n"
      "  buffered rules:     max_updates (default 100; a round selects no more),\n"
      "                      max_buffered_bytes (default 2 GiB; a bigger bound is refused)\n"
      "\nServer optimizers (aggregation.server_optimizer.name; delta = combined update):\n"
      "  sgd                 lr 1, momentum 0 in [0, 1) (FedAvgM: 0.9)   [default]\n"
      "  adam                lr 0.1, beta1 0.9, beta2 0.99, tau 1e-9\n"
      "  yogi                lr 0.01, beta1 0.9, beta2 0.99, tau 1e-3\n"
      "  adagrad             lr 0.1, beta1 0, tau 1e-9\n"
      "                      (m, v start at 0 and tau^2; no bias correction: Reddi et al. Alg. 2)\n"
      "  feddyn              alpha 0.01 > 0 (lr must stay 1): h -= alpha delta; model += delta - h / alpha;\n"
      "                      each device adds alpha (w - w_global) - g to its gradients, g its\n"
      "                      own linear term (in --state_dir), g -= alpha (its delta) once accepted\n"
      "\nCentral DP (aggregation.dp):\n"
      "  enabled false, clip_norm 1, noise_multiplier 1 (noise std = sigma C / K on the mean),\n"
      "  delta 1e-5, seed = experiment seed; adaptive_clipping: enabled false, target_quantile\n"
      "  0.5, learning_rate 0.2, count_noise_stddev max(min_clients / 20, 1 / sigma).\n"
      "  dp_epsilon (RDP accountant of the sampled Gaussian mechanism, q = selected / eligible)\n"
      "  is written to every metrics line.\n"
      "\nModel averaging (aggregation.averaging; SWA, Izmailov et al. 2018):\n"
      "  from_round 0 (off) .. rounds: from that round the run's result (test_accuracy in\n"
      "  metrics.jsonl, model_final.f32) is an average of the global models since from_round;\n"
      "  the devices keep training from the global model (global_test_accuracy beside).\n"
      "  ema_decay 0 = the uniform mean, in (0, 1) = a = ema_decay a + (1 - ema_decay) x_round.\n"
      "  Kept in the checkpoint; double precision, rounded to float once.\n"
      "\nRound mode (aggregation.mode):\n"
      "  sync                select clients, wait for quorum / deadline, aggregate   [default]\n"
      "  buffered            FedBuff (Nguyen et al. 2022): devices train continuously; every\n"
      "                      buffered.buffer_size updates (default 10) make a new version.\n"
      "                      Staleness s = versions since the update's base: weight (1 + s)^-a,\n"
      "                      staleness_exponent a = 0.5, max_staleness 10 (older refused),\n"
      "                      concurrency 0 (= every eligible device is offered each version).\n"
      "                      Streaming combiners only; no DP.\n"
      "\nPer round (schedule entries): server_lr, dp_noise_multiplier; client.proximal_mu\n"
      "(FedProx), client.restricted_softmax_alpha (FedRS), client.freeze_head (FedBABU:\n"
      "the model's final layer keeps its weights) and client.ntd_beta / ntd_tau (FedNTD:\n"
      "not-true distillation from the round's global model, beta >= 0, tau > 0, default 3)\n"
      "like every client setting.\n"
      "\nClient-side terms combine with any server optimizer, e.g. fedadam with\n"
      "client.ntd_beta=1, client.restricted_softmax_alpha=0.5 or client.freeze_head=true.\n"
      "\nHierarchical (fl-server --upstream, a regional aggregator): the aggregator only averages\n"
      "(weighted_mean, sgd lr 1 without momentum, no DP; norm_bound is fine, per device); server\n"
      "optimizers, robust rules (one mean per region) and central DP (a region is a participant)\n"
      "go on the root. Client settings such as proximal_mu come from the root's task.\n");
  return out;
}

}  // namespace edgefl::server
