// The gRPC connection settings both ends must agree on, in one place. Header-only and free of
// gRPC includes so that common/ stays gRPC-free: server/ and client/ apply these numbers to
// grpc::ServerBuilder / grpc::ChannelArguments under the GRPC_ARG_* names given beside each.
#ifndef EDGEFL_COMMON_CHANNEL_ARGS_H_
#define EDGEFL_COMMON_CHANNEL_ARGS_H_

namespace edgefl::channel_args {

// GRPC_ARG_KEEPALIVE_TIME_MS, both ends: an HTTP/2 PING after 30 s without traffic. A device's
// long-poll CheckIn is silent for up to --poll_seconds, and NAT boxes and K3s/Traefik TCP proxies
// drop idle flows after 60-350 s; 30 s keeps the flow alive and notices a dead peer within
// kKeepaliveTimeMs + kKeepaliveTimeoutMs instead of at the RPC deadline.
inline constexpr int kKeepaliveTimeMs = 30000;
// GRPC_ARG_KEEPALIVE_TIMEOUT_MS, both ends: the PING's answer may take 10 s (a Pi on a congested
// uplink) before the connection is declared dead.
inline constexpr int kKeepaliveTimeoutMs = 10000;
// GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, both ends: keep pinging between RPCs (a device
// backing off between CheckIns holds an idle channel it will use again).
inline constexpr int kKeepalivePermitWithoutCalls = 1;
// GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, server: accept a client's PING as often
// as every 10 s. Must be <= kKeepaliveTimeMs, or the server answers the clients' keepalive
// pings with GOAWAY "too_many_pings" and every idle device reconnects.
inline constexpr int kServerMinPingIntervalMs = 10000;
// GRPC_ARG_HTTP2_MAX_PING_STRIKES, server: 0 = never punish pings (the interval above is the
// policy; strikes would close connections of clients whose clocks run fast).
inline constexpr int kServerMaxPingStrikes = 0;
// GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS / GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, client: after a
// coordinator restart the channel retries its TCP connect after 0.2 s, doubling to at most 2 s
// (gRPC's own default grows to 120 s, which would idle a device for minutes after the server
// pod is rescheduled). The device loop's own backoff (client/backoff.h) sits above this.
inline constexpr int kClientInitialReconnectBackoffMs = 200;
inline constexpr int kClientMaxReconnectBackoffMs = 2000;
// Default message limit in MiB for both ends (--max_message_mb): gRPC's default is 4 MiB; models
// and updates travel in 1 MiB chunks, so 16 MiB leaves room for a chunk plus its envelope while
// still bounding what one malformed message can make the receiver allocate.
inline constexpr int kDefaultMaxMessageMb = 16;

static_assert(kServerMinPingIntervalMs <= kKeepaliveTimeMs,
              "the server must accept the clients' keepalive pings");

}  // namespace edgefl::channel_args

#endif  // EDGEFL_COMMON_CHANNEL_ARGS_H_
