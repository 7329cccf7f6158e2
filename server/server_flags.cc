#include "server/server_flags.h"

#include "absl/strings/str_cat.h"

namespace edgefl::server {

const char kServerDescription[] =
    "The edgefl coordinator: schedules federated rounds over gRPC, aggregates the\n"
    "clients' updates (FedAvg, FedAvgM, FedAdam, FedYogi, FedAdagrad, FedProx, robust\n"
    "rules, central DP: `fl-server strategies` lists them), evaluates each new global\n"
    "model on the test set and writes metrics.jsonl, an atomic checkpoint after every\n"
    "round and the final model into the output folder.\n\n"
    "  fl-server --tls_cert server.pem --tls_key server.key --rounds 50\n"
    "  fl-server --tls_cert server.pem --tls_key server.key --client_ca ca.pem\n"
    "  fl-server --insecure --config examples/fmnist_fedavg.json --set client.lr=0.02\n"
    "  fl-server --insecure --set aggregation.strategy=fedadam \\\n"
    "            --set aggregation.server_optimizer.lr=0.01\n"
    "  fl-server strategies\n"
    "  fl-server --insecure --resume --out runs/20261126-101500\n"
    "  fl-server --tls_cert ... --out /var/lib/edgefl/runs/exp1 --resume_if_present \\\n"
    "            --after_finish=serve   (a Kubernetes pod: resumes, stays up once done)\n"
    "  fl-server token create --secret_file secret --ttl 24h --count 100\n"
    "  fl-server report runs/20261126-101500   (writes its report.html)\n"
    "  fl-server --tls_cert s.pem --tls_key s.key --model small_cnn --min_clients 3 \\\n"
    "            --upstream root:50051 --upstream_ca ca.pem   (a regional aggregator)\n\n"
    "TLS is required unless --insecure is given. Enrollment tokens are required\n"
    "when a server secret is configured (--secret_file or $EDGEFL_SERVER_SECRET).";

void DefineServerFlags(FlagSet* flags, ServerFlags* f) {
  flags->String("config", &f->config, "experiment config (JSON of edgefl.proto.ExperimentConfig)");
  flags->Repeated(
      "set", &f->sets,
      "override one config field, e.g. --set client.lr=0.02; wins over the other flags");
  flags->Int("rounds", &f->rounds, "number of rounds (config 'rounds'; 0 = config or 10)");
  flags->String("model", &f->model, "model name: fedavg_cnn, small_cnn, mlp (config 'model')");
  flags->String("listen", &f->listen, "address to serve on (port 0 picks a free port)");
  flags->String("out", &f->out,
                "output folder (default runs/<timestamp>; with --resume, the run "
                "to continue, default the newest under runs/)");
  flags->Bool("resume", &f->resume, "continue the run in --out from its last completed round");
  flags->Bool("resume_if_present", &f->resume_if_present,
              "for restartable pods: resume the run in --out when it holds a checkpoint, else "
              "start it fresh (--config is read only then)");
  flags->String("data_dir", &f->data_dir,
                "folder with the Fashion-MNIST .gz files (config 'data_dir', default "
                "/usr/share/datasets/fashion-mnist)");
  flags->String("init_weights", &f->init_weights,
                "raw float32 initial weights (config 'init_weights'; default seeded init)");
  flags->Int64("seed", &f->seed, "seed for init and sampling (config 'seed'; -1 = config or 0)");
  flags->Int("min_clients", &f->min_clients, "config sampling.min_clients (0 = config or 2)");
  flags->Double("fraction", &f->fraction, "config sampling.fraction (0 = config or 1.0)");
  flags->Double("deadline", &f->deadline, "round deadline in seconds (0 = config or 300)");
  flags->Int("eval_samples", &f->eval_samples,
             "evaluate on the first N test images (-1 = config, 0 = all 10,000)");
  flags->Int("eval_threads", &f->eval_threads, "torch threads for evaluation (0 = config or 1)");
  flags->Double("lease_seconds", &f->lease_seconds, "a client unseen this long is dropped");
  flags->Double("poll_seconds", &f->poll_seconds, "how long a CheckIn long poll is held");
  flags->Double("finish_grace_seconds", &f->finish_grace_seconds,
                "after the last round, how long to keep telling clients the run is over");
  flags->String("after_finish", &f->after_finish,
                "once every round is done: exit (after --finish_grace_seconds), or serve (keep "
                "serving the finished run until SIGTERM: CheckIn answers finished, health SERVING, "
                "metrics up; for a Kubernetes Deployment, which restarts a container that exits)");
  flags->String("port_file", &f->port_file, "write the bound port to this file once serving");
  flags->String("health_listen", &f->health_listen,
                "also serve grpc.health.v1.Health alone, in plaintext, on this host:port (for "
                "Kubernetes gRPC probes, which cannot use TLS); empty = off");
  flags->String("metrics_listen", &f->metrics_listen,
                "serve Prometheus metrics (rounds, clients, bytes, rejections, evaluation, "
                "process RSS/CPU) on http://host:port/metrics; empty = off");
  flags->Double("metrics_linger_seconds", &f->metrics_linger_seconds,
                "with --metrics_listen: keep serving the final metrics this long after the run "
                "(so that a scraper sees the last round)");
  flags->Int("max_message_mb", &f->max_message_mb, "gRPC message size limit, both directions");
  flags->String("tls_cert", &f->tls_cert, "server certificate chain (PEM)");
  flags->String("tls_key", &f->tls_key,
                "server private key (PEM; refused if group/other can read it)");
  flags->String("client_ca", &f->client_ca,
                "CA bundle (PEM) for mutual TLS: clients must present a certificate it signed, "
                "and their client id is taken from it (first SAN, else CN)");
  flags->Bool("insecure", &f->insecure,
              "serve plaintext (no TLS): only on a trusted network, never in production");
  flags->String("secret_file", &f->secret_file,
                "server secret for enrollment and session tokens (default $EDGEFL_SERVER_SECRET); "
                "with a secret, a first Join needs an enrollment token");
  flags->String("token_uses", &f->token_uses,
                "file of enrollment-token use counts, kept across restarts (default "
                "<out>/token_uses; share it between runs to keep single-use tokens single-use)");
  flags->String("revoked", &f->revoked,
                "revocation list (token ids, fl-server token revoke), re-read when it changes "
                "(default <out>/revoked_tokens)");
  flags->String("session_ttl", &f->session_ttl,
                "lifetime of a session token; clients renew it by joining again");
  flags->Int("max_concurrent_uploads", &f->max_concurrent_uploads,
             "updates received at once; another is refused RESOURCE_EXHAUSTED with a "
             "retry-after-ms hint (devices retry within the round), so memory does not grow with "
             "the fleet");
  flags->Int("max_evaluation_backlog", &f->max_evaluation_backlog,
             "rounds closed but not yet evaluated (evaluation runs at low priority beside the "
             "next rounds; each waiting round holds a copy of the model) before the next round "
             "waits for the evaluation to catch up; 0 = no bound");
  flags->Double("upload_stall_seconds", &f->upload_stall_seconds,
                "cancel an upload that sends nothing for this long (counted report_stalled)");
  flags->Int("max_transport_mb", &f->max_transport_mb,
             "memory gRPC may hold for all connections' buffers, MiB (0 = unbounded); bounds the "
             "server's memory under a fleet-wide burst of uploads");
  flags->Double("join_per_minute", &f->join_per_minute,
                "Join calls allowed per peer address (per certificate under mutual TLS) and "
                "minute, also the burst; 0 = no limit");
  flags->Double("checkin_per_minute", &f->checkin_per_minute,
                "CheckIn calls allowed per client and minute (burst: the same number, at most "
                "30); 0 = no limit");
  flags->Int64("max_update_bytes_per_round", &f->max_update_bytes_per_round,
               "update bytes a client may announce per round over all its Report attempts "
               "(0 = 4 x the dense model size + 1 MiB)");
  flags->String("upstream", &f->upstream,
                "host:port of an upstream coordinator: run as its regional aggregator (rounds, "
                "client settings and evaluation come from upstream; this server's devices train "
                "each upstream task and their sample-weighted mean goes upstream as one update)");
  flags->String("upstream_ca", &f->upstream_ca,
                "CA certificate (PEM) that signed the upstream's certificate ('system' = system "
                "roots); required with --upstream unless --upstream_insecure");
  flags->String("upstream_tls_cert", &f->upstream_tls_cert,
                "this aggregator's certificate (PEM) for mutual TLS with the upstream");
  flags->String("upstream_tls_key", &f->upstream_tls_key, "its private key (PEM)");
  flags->String("upstream_server_name", &f->upstream_server_name,
                "name to verify the upstream's certificate against instead of its host");
  flags->Bool("upstream_insecure", &f->upstream_insecure,
              "talk plaintext to the upstream (trusted network only)");
  flags->String("upstream_token_file", &f->upstream_token_file,
                "file with this aggregator's enrollment token for the upstream (default "
                "$EDGEFL_UPSTREAM_TOKEN)");
  flags->Double("upstream_margin_seconds", &f->upstream_margin_seconds,
                "close each regional round this long before the upstream deadline (at most half "
                "the time left), leaving the upload that long");
  flags->Double("upstream_retry_max_seconds", &f->upstream_retry_max_seconds,
                "cap of the backoff between retries when the upstream refuses or cannot be "
                "reached (the aggregator never gives up)");
  flags->Double("upstream_min_download_kib_per_second",
                &f->upstream_min_download_kib_per_second,
                "slowest acceptable download of the upstream model: each CheckIn's deadline is "
                "the upstream's long poll + 15 s + the model's dense size at this rate (128: "
                "+51 s for fedavg_cnn)");
}

namespace {

// Flags that are sugar for --set, applied before the explicit --set list.
std::vector<std::string> SugarOverrides(const ServerFlags& f) {
  std::vector<std::string> out;
  if (f.rounds > 0) out.push_back(absl::StrCat("rounds=", f.rounds));
  if (!f.model.empty()) out.push_back(absl::StrCat("model=", f.model));
  if (!f.data_dir.empty()) out.push_back(absl::StrCat("data_dir=", f.data_dir));
  if (!f.init_weights.empty()) out.push_back(absl::StrCat("init_weights=", f.init_weights));
  if (f.seed >= 0) out.push_back(absl::StrCat("seed=", f.seed));
  if (f.min_clients > 0) out.push_back(absl::StrCat("sampling.min_clients=", f.min_clients));
  if (f.fraction > 0) out.push_back(absl::StrCat("sampling.fraction=", f.fraction));
  if (f.deadline > 0) out.push_back(absl::StrCat("deadline_seconds=", f.deadline));
  if (f.eval_samples >= 0) out.push_back(absl::StrCat("evaluation.max_samples=", f.eval_samples));
  if (f.eval_threads > 0) out.push_back(absl::StrCat("evaluation.threads=", f.eval_threads));
  out.insert(out.end(), f.sets.begin(), f.sets.end());
  return out;
}

}  // namespace

ServerOptions ToServerOptions(const ServerFlags& f) {
  ServerOptions o;
  o.run.out = f.out;
  o.run.resume = f.resume;
  o.run.resume_if_present = f.resume_if_present;
  o.run.config_file = f.config;
  o.run.overrides = SugarOverrides(f);
  o.transport = {f.tls_cert, f.tls_key, f.client_ca, f.insecure};
  o.listen = f.listen;
  o.max_message_mb = f.max_message_mb;
  o.port_file = f.port_file;
  o.health_listen = f.health_listen;
  o.metrics_listen = f.metrics_listen;
  o.metrics_linger_seconds = f.metrics_linger_seconds;
  o.lease_seconds = f.lease_seconds;
  o.poll_seconds = f.poll_seconds;
  o.finish_grace_seconds = f.finish_grace_seconds;
  o.after_finish = f.after_finish;
  o.secret_file = f.secret_file;
  o.token_uses = f.token_uses;
  o.revoked = f.revoked;
  o.session_ttl = f.session_ttl;
  o.join_per_minute = f.join_per_minute;
  o.checkin_per_minute = f.checkin_per_minute;
  o.max_update_bytes_per_round = f.max_update_bytes_per_round;
  o.max_concurrent_uploads = f.max_concurrent_uploads;
  o.max_evaluation_backlog = f.max_evaluation_backlog;
  o.upload_stall_seconds = f.upload_stall_seconds;
  o.max_transport_mb = f.max_transport_mb;
  o.upstream.address = f.upstream;
  o.upstream.ca_cert = f.upstream_ca;
  o.upstream.tls_cert = f.upstream_tls_cert;
  o.upstream.tls_key = f.upstream_tls_key;
  o.upstream.tls_server_name = f.upstream_server_name;
  o.upstream.insecure = f.upstream_insecure;
  o.upstream.token_file = f.upstream_token_file;
  o.upstream.margin_seconds = f.upstream_margin_seconds;
  o.upstream.retry_max_seconds = f.upstream_retry_max_seconds;
  o.upstream.min_download_kib_per_second = f.upstream_min_download_kib_per_second;
  return o;
}

}  // namespace edgefl::server
