#!/usr/bin/env bash
# ctest `prometheus`: a real Prometheus (Debian's) on loopback scrapes fl-server --metrics_listen
# every second during a short federation (3 rounds, 2 fl-client processes); the values read back
# through Prometheus' HTTP query API must agree with the run's metrics.jsonl (rounds, bytes,
# clients, test accuracy of the last evaluated round, rejections) and the process figures must be
# plausible. The models are averaged from round 2 (aggregation.averaging), so the global model's
# accuracy is exported beside the averaged one from then on.
#
#   tests/prometheus_test.sh SOURCE_DIR BUILD_DIR
set -euo pipefail
src=$(readlink -f "$1") build=$(readlink -f "$2")
fail() { echo "FAILED: $*" >&2; [[ -n "${dir:-}" ]] && tail -n 5 "$dir"/*.log >&2; exit 1; }
PROMETHEUS=${PROMETHEUS:-$(command -v prometheus || true)}
[[ -n "$PROMETHEUS" ]] || fail "prometheus is missing (scripts/setup installs Debian's prometheus)"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
dir=$(mktemp -d /tmp/edgefl-prom.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; rm -rf "$dir"; }
trap cleanup EXIT

wait_until() {  # SECONDS COMMAND...
  local end=$((SECONDS + $1)); shift
  until "$@"; do ((SECONDS < end)) || return 1; sleep 0.5; done
}
# fl-server picks both of its ports (no race with other processes for a port chosen here); it
# logs the metrics port before it writes --port_file.
"$build/bin/fl-server" --insecure --listen=127.0.0.1:0 --port_file="$dir/port" --metrics_listen=127.0.0.1:0 \
  --model=small_cnn --rounds=3 --min_clients=2 --eval_samples=500 --deadline=120 --seed=1 \
  --finish_grace_seconds=5 --metrics_linger_seconds=5 --set=aggregation.averaging.from_round=2 \
  --out="$dir/run" >"$dir/server.log" 2>&1 &
pids+=($!)
serving() { [[ -s "$dir/port" ]] || { kill -0 "${pids[0]}" 2>/dev/null || fail "fl-server exited before serving"; return 1; }; }
wait_until 60 serving || fail "fl-server did not write --port_file in 60 s"
grpc_port=$(cat "$dir/port")
metrics_port=$(sed -n 's#.*Prometheus metrics on http://[^/]*:\([0-9]*\)/metrics.*#\1#p' "$dir/server.log" | head -1)
[[ -n "$metrics_port" ]] || fail "fl-server did not log its metrics port"
prom_port=$(free_port)  # Prometheus' own: it cannot report a port it picked
cat >"$dir/prometheus.yml" <<YML
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: fl-server
    static_configs:
      - targets: ["127.0.0.1:$metrics_port"]
YML
"$PROMETHEUS" --config.file="$dir/prometheus.yml" --storage.tsdb.path="$dir/tsdb" \
  --web.listen-address="127.0.0.1:$prom_port" >"$dir/prometheus.log" 2>&1 &
pids+=($!)
query() {  # PROMQL: prints the value of the first sample, or nothing
  curl -sf --max-time 5 "http://127.0.0.1:$prom_port/api/v1/query" --data-urlencode "query=$1" |
    python3 -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; print(r[0]["value"][1] if r else "")' 2>/dev/null || true
}
prom_up() { [[ "$(query 'up{job="fl-server"}')" == 1 ]]; }
wait_until 60 prom_up || fail "Prometheus never scraped fl-server"
for i in 0 1; do
  "$build/bin/fl-client" --insecure --server="127.0.0.1:$grpc_port" --partition=iid --num_partitions=60 \
    --client_index=$i --seed=1 --state_dir="$dir/state-$i" --progress=never >"$dir/client-$i.log" 2>&1 &
  pids+=($!)
done
# While the federation runs: Prometheus has seen the clients register.
registered() { [[ "$(query 'max_over_time(edgefl_server_clients_registered[5m])')" == 2 ]]; }
wait_until 120 registered || fail "Prometheus never saw 2 registered clients"
server_pid=${pids[0]}
wait_until 300 eval '! kill -0 '"$server_pid"' 2>/dev/null' || fail "the federation did not finish in 300 s"
wait "$server_pid" || fail "fl-server exited $?"
# After the run: the last scraped values (last_over_time skips the staleness marker).
last() { query "last_over_time($1[10m])"; }
closed=$(last edgefl_server_round) evaluated=$(last edgefl_server_evaluated_round)
[[ -n "$closed" && "$closed" -ge 1 ]] || fail "no closed round in Prometheus ('$closed')"
[[ -n "$evaluated" && "$evaluated" -ge 1 ]] || fail "no evaluated round in Prometheus ('$evaluated')"
python3 - "$dir/run/metrics.jsonl" "$closed" "$evaluated" \
  "$(last edgefl_server_test_accuracy)" "$(last edgefl_server_test_loss)" \
  "$(last 'edgefl_server_bytes_total{direction="up"}')" "$(last 'edgefl_server_bytes_total{direction="down"}')" \
  "$(last 'edgefl_server_clients_total{state="reported"}')" "$(last 'edgefl_server_clients_total{state="selected"}')" \
  "$(last edgefl_server_rounds_closed_total)" "$(last edgefl_server_round_duration_seconds_count)" \
  "$(last edgefl_server_rounds_total)" "$(last process_resident_memory_bytes)" "$(last process_cpu_seconds_total)" \
  "$(query 'max_over_time(edgefl_server_evaluation_lag_rounds[10m])')" \
  "$(last edgefl_server_global_test_accuracy)" "$(last edgefl_server_global_test_loss)" <<'PY' || fail "Prometheus and metrics.jsonl disagree"
import json, sys
lines = {int(l["round"]): l for l in map(json.loads, filter(str.strip, open(sys.argv[1])))}
(closed, evaluated, acc, loss, up, down, reported, selected, nclosed, nhist, total, rss, cpu, lag,
 global_acc, global_loss) = sys.argv[2:]
closed, evaluated = int(closed), int(evaluated)
def close(a, b, what, tol=1e-6):
    if abs(float(a) - float(b)) > tol * max(1.0, abs(float(b))):
        sys.exit(f"{what}: Prometheus {a}, metrics.jsonl {b}")
upto = [lines[r] for r in range(1, closed + 1)]
close(acc, lines[evaluated]["test_accuracy"], f"test_accuracy of round {evaluated}")
close(loss, lines[evaluated]["test_loss"], f"test_loss of round {evaluated}")
if evaluated >= 2:  # averaged rounds: the global model's figures beside the average's
    close(global_acc, lines[evaluated]["global_test_accuracy"], f"global_test_accuracy of round {evaluated}")
    close(global_loss, lines[evaluated]["global_test_loss"], f"global_test_loss of round {evaluated}")
else:
    assert global_acc == "" and global_loss == "", f"a global model gauge before averaging: {global_acc}"
close(up, sum(float(l["bytes_up"]) for l in upto), f"bytes up over rounds 1..{closed}")
close(down, sum(float(l["bytes_down"]) for l in upto), f"bytes down over rounds 1..{closed}")
close(reported, sum(float(l["clients_reported"]) for l in upto), "clients reported")
close(selected, sum(float(l["clients_selected"]) for l in upto), "clients selected")
close(nclosed, closed, "rounds closed"); close(nhist, closed, "round duration samples")
close(total, 3, "configured rounds")
assert 50e6 < float(rss) < 4e9, f"RSS {rss}"
assert 0 < float(cpu) < 3600, f"CPU {cpu}"
assert lag != "" and 0 <= float(lag) <= 3, f"lag {lag}"
print(f"Prometheus agrees with metrics.jsonl: rounds closed {closed}, evaluated {evaluated}, "
      f"accuracy {float(acc):.4f}, bytes up {float(up):.0f} down {float(down):.0f}, RSS {float(rss)/2**20:.0f} MiB")
PY
# Every series the Grafana dashboard (deploy/grafana) queries is one Prometheus has scraped, except
# the rejection counter, which has no sample until an update is refused.
curl -sf --max-time 5 "http://127.0.0.1:$prom_port/api/v1/label/__name__/values" >"$dir/names.json" ||
  fail "Prometheus' metric names"
python3 - "$src/deploy/grafana/edgefl-dashboard.json" "$dir/names.json" <<'PY' || fail "the dashboard queries series fl-server does not export"
import json, re, sys
used = set(re.findall(r"\b(?:edgefl|process)_[a-z_]+", open(sys.argv[1]).read()))
seen = set(json.load(open(sys.argv[2]))["data"])
missing = sorted(used - seen - {"edgefl_server_updates_rejected_total"})
assert len(used) >= 10 and not missing, f"not exported: {missing}"
print(f"the dashboard's {len(used)} series are all exported")
PY
[[ "$closed" == 3 ]] || echo "note: the last scrape before exit saw round $closed of 3"
echo PASSED
