// fl-server's command line: every flag, its help text and default, and the ServerOptions it
// stands for.
#ifndef EDGEFL_SERVER_SERVER_FLAGS_H_
#define EDGEFL_SERVER_SERVER_FLAGS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "common/channel_args.h"
#include "common/flags.h"
#include "server/fl_server.h"

namespace edgefl::server {

inline constexpr char kServerProgram[] = "fl-server";
// The description --help prints above the flags.
extern const char kServerDescription[];

// The flags as typed; defaults are those --help shows.
struct ServerFlags {
  std::string config;
  std::vector<std::string> sets;
  int rounds = 0;
  std::string model;
  std::string listen = "0.0.0.0:50051";
  std::string out;
  bool resume = false;
  bool resume_if_present = false;
  std::string data_dir;
  std::string init_weights;
  int64_t seed = -1;
  int min_clients = 0;
  double fraction = 0;
  double deadline = 0;
  int eval_samples = -1;
  int eval_threads = 0;
  double lease_seconds = 300;
  double poll_seconds = 20;
  double finish_grace_seconds = 10;
  std::string after_finish = "exit";
  std::string port_file;
  std::string health_listen;
  std::string metrics_listen;
  double metrics_linger_seconds = 0;
  int max_message_mb = channel_args::kDefaultMaxMessageMb;
  // Transport security.
  std::string tls_cert;
  std::string tls_key;
  std::string client_ca;
  bool insecure = false;
  // Client identity and limits.
  std::string secret_file;
  std::string token_uses;
  std::string revoked;
  std::string session_ttl = "24h";
  double join_per_minute = 30;
  double checkin_per_minute = 60;
  int64_t max_update_bytes_per_round = 0;
  int max_concurrent_uploads = 4;
  int max_evaluation_backlog = 16;
  double upload_stall_seconds = 30;
  int max_transport_mb = 64;
  // Regional aggregator (server/upstream_link.h).
  std::string upstream;
  std::string upstream_ca;
  std::string upstream_tls_cert;
  std::string upstream_tls_key;
  std::string upstream_server_name;
  bool upstream_insecure = false;
  std::string upstream_token_file;
  double upstream_margin_seconds = 10;
  double upstream_retry_max_seconds = 60;
  double upstream_min_download_kib_per_second = 128;
};

// Registers every fl-server flag on `flags`, bound to the fields of `f` (which must outlive it).
void DefineServerFlags(FlagSet* flags, ServerFlags* f);

// The options the flags stand for. The flags that are sugar for a config field (--rounds,
// --model, --data_dir, --init_weights, --seed, --min_clients, --fraction, --deadline,
// --eval_samples, --eval_threads) become overrides ahead of the explicit --set list, which wins.
ServerOptions ToServerOptions(const ServerFlags& f);

}  // namespace edgefl::server

#endif  // EDGEFL_SERVER_SERVER_FLAGS_H_
