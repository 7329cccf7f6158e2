#!/usr/bin/env bash
# ctest `containers`: edgefl's images run as the Kubernetes manifests run them, with podman on this
# machine. fl-server and 3 fl-client containers on host loopback, mutual TLS with the certificates
# mounted as files the way a Secret volume mounts them (root-owned, group-readable by fsGroup,
# 0440), the experiment config mounted as a file (the ConfigMap), read-only root filesystems, the
# run folder on a volume. The federation runs 2 of 3 rounds, the server container is killed
# (SIGKILL) and a new one, same arguments, same volume, resumes it (--resume_if_present) and the
# clients reconnect and finish round 3. Then the bad-input cases of a pod: a missing config file
# and a missing secret file exit 2 with one line naming the file, a read-only run volume exits
# with a clear error and leaves the checkpoint byte for byte as it was.
#
#   tests/containers_test.sh SOURCE_DIR BUILD_DIR
# Builds the images first when they are missing or stale (scripts/images, cached under
# /var/cache/edgefl/images). Exits 77 (ctest: skipped) only where podman cannot run containers
# at all: not root, or podman absent.
set -euo pipefail
src=$1 build=$2
skip() { echo "SKIPPED: $*"; exit 77; }
fail() { echo "FAILED: $*" >&2; exit 1; }
[[ $(id -u) -eq 0 ]] || skip "rootful podman needs root (this test runs as uid $(id -u))"
command -v podman >/dev/null || skip "podman is not installed (scripts/setup installs it)"

TAG=$(cat "$src/deploy/images/VERSION")
SERVER_IMAGE=localhost/edgefl/fl-server:$TAG
CLIENT_IMAGE=localhost/edgefl/fl-client:$TAG
P=(podman --runtime runc --cgroup-manager cgroupfs)
RUN=("${P[@]}" run --ulimit nofile=20000:20000 --ulimit nproc=4096:4096 --network host
     --read-only --cap-drop ALL --security-opt no-new-privileges)

t0=$SECONDS
BUILD_DIR=$(readlink -f "$build") "$src/scripts/images" >/dev/null || fail "scripts/images failed"
echo "images ready in $((SECONDS - t0)) s"
probe=$("${RUN[@]}" --rm --entrypoint /bin/true "$SERVER_IMAGE" 2>&1) ||
  fail "podman cannot run a container here: $probe"

dir=$(mktemp -d /tmp/edgefl-containers.XXXXXX)
tag="edgefl-ct-$$"
containers=()
cleanup() {
  for c in "${containers[@]}"; do "${P[@]}" rm -f -t 0 "$c" >/dev/null 2>&1 || true; done
}
trap cleanup EXIT
uid=65532

# ---- certificates, config, volumes ---------------------------------------------------------------
"$src/deploy/certs/make-dev-certs.sh" "$dir/certs" 3 >/dev/null 2>&1
# As a Secret volume with fsGroup mounts them for a non-root pod: root-owned, mode 0440, group fsGroup.
chown root:$uid "$dir"/certs/*
chmod 0440 "$dir"/certs/*
# Round 3 trains 20 epochs, so that it is still running when the server is killed after round 2
# (on an idle machine the first two rounds take seconds).
cat >"$dir/experiment.json" <<'EOF'
{
  "model": "small_cnn",
  "rounds": 3,
  "seed": 1,
  "deadline_seconds": 120,
  "sampling": {"min_clients": 3, "fraction": 1.0},
  "evaluation": {"max_samples": 500},
  "schedule": [{"from_round": 3, "client": {"epochs": 20}}]
}
EOF
chmod 0644 "$dir/experiment.json"
mkdir -p "$dir/run-volume" "$dir/client-0" "$dir/client-1" "$dir/client-2"
chown $uid:$uid "$dir/run-volume" "$dir"/client-*
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

server_mounts=(-v "$dir/run-volume:/var/lib/edgefl"
  -v "$dir/certs/server.pem:/etc/edgefl/tls/tls.crt:ro" -v "$dir/certs/server.key:/etc/edgefl/tls/tls.key:ro"
  -v "$dir/certs/ca.pem:/etc/edgefl/client-ca/ca.crt:ro"
  -v "$dir/experiment.json:/etc/edgefl/config/experiment.json:ro")
server_args=(--listen="127.0.0.1:$port" --out=/var/lib/edgefl/run --resume_if_present
  --config=/etc/edgefl/config/experiment.json
  --tls_cert=/etc/edgefl/tls/tls.crt --tls_key=/etc/edgefl/tls/tls.key --client_ca=/etc/edgefl/client-ca/ca.crt
  --eval_threads=1 --finish_grace_seconds=30 --lease_seconds=120 --poll_seconds=5)

start_server() {  # NAME
  containers+=("$1")
  "${RUN[@]}" -d --name "$1" --user $uid:$uid "${server_mounts[@]}" "$SERVER_IMAGE" "${server_args[@]}" >/dev/null
}
wait_for() {  # SECONDS DESCRIPTION COMMAND...: polls COMMAND every 0.5 s, fails after SECONDS
  local limit=$1 what=$2
  shift 2
  local end=$((SECONDS + limit))
  until "$@"; do
    ((SECONDS < end)) || return 1
    sleep 0.5
  done
}
metrics_lines() { [[ -f "$dir/run-volume/run/metrics.jsonl" ]] && wc -l <"$dir/run-volume/run/metrics.jsonl" || echo 0; }
has_lines() { (($(metrics_lines) >= $1)); }
running() { [[ $("${P[@]}" inspect --format '{{.State.Running}}' "$1" 2>/dev/null) == true ]]; }
exited() { ! running "$1"; }
exit_code() { "${P[@]}" inspect --format '{{.State.ExitCode}}' "$1"; }
logs() { "${P[@]}" logs "$1" 2>&1 | tail -${2:-40}; }

# ---- a federation in containers ------------------------------------------------------------------
start_server "$tag-server-1"
for i in 0 1 2; do
  containers+=("$tag-client-$i")
  "${RUN[@]}" -d --name "$tag-client-$i" --user $uid:$uid \
    -v /usr/share/datasets/fashion-mnist:/usr/share/datasets/fashion-mnist:ro \
    -v "$dir/client-$i:/var/lib/edgefl-client" \
    -v "$dir/certs/ca.pem:/etc/edgefl/ca/ca.crt:ro" \
    -v "$dir/certs/client-$i.pem:/etc/edgefl/tls/tls.crt:ro" -v "$dir/certs/client-$i.key:/etc/edgefl/tls/tls.key:ro" \
    "$CLIENT_IMAGE" --server="localhost:$port" --ca_cert=/etc/edgefl/ca/ca.crt \
    --tls_cert=/etc/edgefl/tls/tls.crt --tls_key=/etc/edgefl/tls/tls.key \
    --partition=iid --num_partitions=60 --client_index=$i --seed=1 --max_retry_seconds=120 \
    --state_dir=/var/lib/edgefl-client/state >/dev/null
done
wait_for 240 "2 rounds" has_lines 2 || fail "no 2 rounds in 240 s; server: $(logs "$tag-server-1")"
echo "2 rounds in $((SECONDS - t0)) s"
"${P[@]}" kill -s KILL "$tag-server-1" >/dev/null
wait_for 30 "the server container to die" exited "$tag-server-1" || fail "SIGKILL did not stop the server"

# A new pod on the same volume: same arguments, resumes.
start_server "$tag-server-2"
wait_for 240 "the resumed server to finish" exited "$tag-server-2" ||
  fail "the resumed server did not finish in 240 s: $(logs "$tag-server-2")"
[[ $(exit_code "$tag-server-2") == 0 ]] || fail "resumed server exit $(exit_code "$tag-server-2"): $(logs "$tag-server-2")"
logs "$tag-server-2" 200 | grep -q "holds a checkpoint, resuming it" || fail "server 2 did not resume: $(logs "$tag-server-2")"
for i in 0 1 2; do
  wait_for 60 "client $i to finish" exited "$tag-client-$i" || fail "client $i still running: $(logs "$tag-client-$i")"
  [[ $(exit_code "$tag-client-$i") == 0 ]] || fail "client $i exit $(exit_code "$tag-client-$i"): $(logs "$tag-client-$i")"
done
run="$dir/run-volume/run"
rounds=$(python3 - "$run/metrics.jsonl" <<'EOF'
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
print(" ".join(str(int(l["round"])) for l in lines))
last = lines[-1]
assert "test_accuracy" in last, last
assert last["test_accuracy"] > 0.3, last
assert all(int(l["clients_reported"]) == 3 for l in lines), lines
EOF
) || fail "metrics.jsonl: $(cat "$run/metrics.jsonl")"
[[ "$rounds" == "1 2 3" ]] || fail "rounds in metrics.jsonl: '$rounds', want '1 2 3'"
[[ -s "$run/model_final.f32" ]] || fail "no final model"
echo "federation: rounds $rounds, killed after round 2 and resumed, in $((SECONDS - t0)) s"

# ---- bad input of a pod ----------------------------------------------------------------------------
one_line_exit_2() {  # NAME WANT_IN_MESSAGE ARGS...: a container that must exit 2 with one line
  local name=$1 want=$2
  shift 2
  containers+=("$name")
  local out rc=0
  out=$("${RUN[@]}" --name "$name" --user $uid:$uid "$@" 2>&1) || rc=$?
  [[ $rc == 2 ]] || fail "$name: exit $rc, want 2: $out"
  # Info lines may come first; the error is one line, the last, naming the file.
  local err
  err=$(printf '%s\n' "$out" | grep '^fl-server: ' || true)
  [[ $(printf '%s\n' "$err" | grep -c .) == 1 ]] || fail "$name: want one error line, got: $out"
  [[ "$(printf '%s\n' "$out" | tail -1)" == "$err" ]] || fail "$name: the error is not the last line: $out"
  [[ "$err" == *"$want"* ]] || fail "$name: '$err' does not name $want"
  echo "$name: exit 2: $err"
}
mkdir -p "$dir/empty-volume" && chown $uid:$uid "$dir/empty-volume"
one_line_exit_2 "$tag-no-config" /etc/edgefl/config/experiment.json \
  -v "$dir/empty-volume:/var/lib/edgefl" -v "$dir/certs/server.pem:/etc/edgefl/tls/tls.crt:ro" \
  -v "$dir/certs/server.key:/etc/edgefl/tls/tls.key:ro" "$SERVER_IMAGE" \
  --out=/var/lib/edgefl/run --resume_if_present --config=/etc/edgefl/config/experiment.json \
  --tls_cert=/etc/edgefl/tls/tls.crt --tls_key=/etc/edgefl/tls/tls.key --listen=127.0.0.1:0
one_line_exit_2 "$tag-no-secret" /etc/edgefl/secret/server-secret \
  -v "$dir/empty-volume:/var/lib/edgefl" -v "$dir/certs/server.pem:/etc/edgefl/tls/tls.crt:ro" \
  -v "$dir/certs/server.key:/etc/edgefl/tls/tls.key:ro" "$SERVER_IMAGE" \
  --out=/var/lib/edgefl/run --resume_if_present --secret_file=/etc/edgefl/secret/server-secret \
  --tls_cert=/etc/edgefl/tls/tls.crt --tls_key=/etc/edgefl/tls/tls.key --listen=127.0.0.1:0
one_line_exit_2 "$tag-no-tls-key" /etc/edgefl/tls/tls.key \
  -v "$dir/empty-volume:/var/lib/edgefl" -v "$dir/certs/server.pem:/etc/edgefl/tls/tls.crt:ro" \
  "$SERVER_IMAGE" --out=/var/lib/edgefl/run --resume_if_present \
  --tls_cert=/etc/edgefl/tls/tls.crt --tls_key=/etc/edgefl/tls/tls.key --listen=127.0.0.1:0

# A read-only run volume (over the finished run, with more rounds asked for): a clear error, the
# checkpoint untouched.
before=$(sha256sum "$run/checkpoint.pb" "$run/metrics.jsonl")
containers+=("$tag-ro-volume")
rc=0
out=$("${RUN[@]}" --name "$tag-ro-volume" --user $uid:$uid \
  -v "$dir/run-volume:/var/lib/edgefl:ro" "${server_mounts[@]:2}" "$SERVER_IMAGE" "${server_args[@]}" \
  --rounds=4 2>&1) || rc=$?
[[ $rc != 0 ]] || fail "a server on a read-only volume exited 0: $out"
[[ "$out" == *"Read-only file system"* ]] || fail "no clear read-only error: $out"
[[ "$(sha256sum "$run/checkpoint.pb" "$run/metrics.jsonl")" == "$before" ]] || fail "the checkpoint changed"
echo "read-only volume: exit $rc: $(printf '%s\n' "$out" | grep 'Read-only' | head -1)"
rm -rf "$dir"
echo "PASSED in $((SECONDS - t0)) s"
