#!/usr/bin/env bash
# ctest `arm64_image` (labels arm64, containers): the arm64 fl-client image the k3s-edge overlay
# runs on Raspberry Pi / Jetson nodes. scripts/images --arch arm64 builds it from build-arm64's
# cross-built fl-client (the arm64_build fixture; nothing is built twice). Checks: the image is
# arm64 (its config and the ELF machine of the binary inside), and the arm64 fl-client in it runs:
# it joins a real fl-server on this machine (amd64, plaintext on loopback) and trains a round,
# under qemu-aarch64-static. This machine has no binfmt_misc handler for arm64 (and the test does
# not register one: that is host-wide state), so the container's entrypoint is the host's static
# qemu-aarch64, bind-mounted read-only, which runs the image's /opt/edgefl/bin/fl-client with the
# image's own arm64 libraries. On an arm64 node the same image runs natively.
#
#   tests/arm64_image_test.sh SOURCE_DIR BUILD_DIR ARM64_BUILD_DIR
# Exits 77 (ctest: skipped) only where it cannot run at all: not root, or podman or
# qemu-aarch64-static absent.
set -euo pipefail
src=$1 build=$(readlink -f "$2") arm64_build=$(readlink -f "$3")
skip() { echo "SKIPPED: $*"; exit 77; }
fail() { echo "FAILED: $*" >&2; exit 1; }
[[ $(id -u) -eq 0 ]] || skip "rootful podman needs root (this test runs as uid $(id -u))"
command -v podman >/dev/null || skip "podman is not installed (scripts/setup installs it)"
command -v qemu-aarch64-static >/dev/null || skip "qemu-aarch64-static is not installed (scripts/setup installs it)"
TAG=$(cat "$src/deploy/images/VERSION")
IMAGE=localhost/edgefl/fl-client:$TAG-arm64
P=(podman --runtime runc --cgroup-manager cgroupfs)
t0=$SECONDS
ARM64_BUILD_DIR=$arm64_build BUILD_DIR=$build "$src/scripts/images" --arch arm64 ||
  fail "scripts/images --arch arm64 failed"
echo "arm64 image ready in $((SECONDS - t0)) s"

# ---- it is an arm64 image --------------------------------------------------------------------------
arch=$("${P[@]}" image inspect --format '{{.Os}}/{{.Architecture}}' "$IMAGE")
[[ $arch == linux/arm64 ]] || fail "$IMAGE is $arch, want linux/arm64"
mnt=$("${P[@]}" image mount "$IMAGE")
machine=$(readelf -h "$mnt/opt/edgefl/bin/fl-client" | awk -F: '/Machine:/{gsub(/^ +/,"",$2); print $2}')
loader_ok=0; [[ -e $mnt/lib/ld-linux-aarch64.so.1 ]] && loader_ok=1
"${P[@]}" image unmount "$IMAGE" >/dev/null
[[ $machine == AArch64 ]] || fail "/opt/edgefl/bin/fl-client in $IMAGE is '$machine', want AArch64"
((loader_ok)) || fail "$IMAGE has no /lib/ld-linux-aarch64.so.1"
echo "image: $arch, fl-client ELF machine $machine, size $("${P[@]}" image inspect --format '{{.Size}}' "$IMAGE") bytes"

dir=$(mktemp -d /tmp/edgefl-arm64-image.XXXXXX)
name="edgefl-arm64-$$"
server_pid=""
cleanup() {
  "${P[@]}" rm -f -t 0 "$name" >/dev/null 2>&1 || true
  [[ -n $server_pid ]] && kill "$server_pid" 2>/dev/null || true
}
trap cleanup EXIT
# As the DaemonSet runs it: non-root, read-only root filesystem, no capabilities, host network.
RUN=("${P[@]}" run --arch arm64 --ulimit nofile=20000:20000 --ulimit nproc=4096:4096 --network host
     --read-only --cap-drop ALL --security-opt no-new-privileges --user 65532:65532
     -v /usr/bin/qemu-aarch64-static:/usr/bin/qemu-aarch64-static:ro
     --entrypoint /usr/bin/qemu-aarch64-static)
out=$("${RUN[@]}" --rm "$IMAGE" /opt/edgefl/bin/fl-client --help 2>&1) ||
  fail "the arm64 fl-client --help failed: $out"
[[ $out == *"--after_finish"* ]] || fail "unexpected --help: $out"

# ---- it takes part in a federation -----------------------------------------------------------------
"$build/bin/fl-server" --insecure --model=mlp --rounds=1 --min_clients=1 --eval_samples=200 \
  --deadline=600 --listen=127.0.0.1:0 --port_file="$dir/port" --out="$dir/run" >"$dir/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 200); do [[ -s $dir/port ]] && break; sleep 0.1; done
[[ -s $dir/port ]] || fail "fl-server did not start: $(cat "$dir/server.log")"
port=$(<"$dir/port")
mkdir -p "$dir/client" && chown 65532:65532 "$dir/client"
"${RUN[@]}" -d --name "$name" \
  -v /usr/share/datasets/fashion-mnist:/usr/share/datasets/fashion-mnist:ro \
  -v "$dir/client:/var/lib/edgefl-client" \
  "$IMAGE" /opt/edgefl/bin/fl-client --server="127.0.0.1:$port" --insecure \
  --partition=iid --num_partitions=60 --client_index=0 --seed=1 --max_retry_seconds=120 \
  --state_dir=/var/lib/edgefl-client/state >/dev/null
rc=0
timeout 600 tail --pid="$server_pid" -f /dev/null || rc=$?
[[ $rc == 0 ]] || fail "fl-server still running after 600 s: $(tail -20 "$dir/server.log")"
wait "$server_pid" || fail "fl-server exit $?: $(tail -20 "$dir/server.log")"
server_pid=""
client_rc=$("${P[@]}" wait "$name")
logs=$("${P[@]}" logs "$name" 2>&1 | tail -20)
[[ $client_rc == 0 ]] || fail "the arm64 client exited $client_rc: $logs"
[[ $logs == *"took part in 1 rounds"* ]] || fail "the arm64 client did not train the round: $logs"
python3 - "$dir/run/metrics.jsonl" <<'PY' || fail "metrics.jsonl: $(cat "$dir/run/metrics.jsonl")"
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
assert [int(l["round"]) for l in lines] == [1], lines
assert int(lines[0]["clients_reported"]) == 1, lines
assert lines[0]["test_accuracy"] > 0.3, lines
PY
joined=$(grep -m1 "joined from" "$dir/server.log" || true)
[[ $joined == *"(aarch64,"* ]] || fail "the server did not see an aarch64 client: $joined"
echo "federation: ${joined#*] }; $(grep -m1 "round 1/1:" "$dir/server.log" | sed 's/.*] //')"
rm -rf "$dir"
echo "PASSED in $((SECONDS - t0)) s"
