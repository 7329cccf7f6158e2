#!/usr/bin/env bash
# ctest `k8s_manifests`: renders every overlay of deploy/k8s with `kubectl kustomize` and
# validates every object offline with deploy/k8s/validate (pinned Kubernetes OpenAPI schemas,
# strict fields, edgefl's policy). Then shows the check can fail: a typo'd field, a missing probe,
# a :latest image and the server's run folder off its PVC are each refused, naming the problem.
#
#   tests/k8s_manifests_test.sh SOURCE_DIR
# The validator's npm packages (exact versions of package-lock.json) are installed once into
# /var/cache/edgefl/npm/<hash of the lock file> with `npm ci`.
set -euo pipefail
src=$(readlink -f "$1")
fail() { echo "FAILED: $*" >&2; exit 1; }
KUBECTL=${KUBECTL:-$(command -v kubectl || true)}
[[ -n "$KUBECTL" ]] || fail "kubectl is missing (Debian: kubernetes-client)"
command -v node >/dev/null || fail "node is missing"

lock="$src/deploy/k8s/validate/package-lock.json"
cache=${EDGEFL_NPM_CACHE:-/var/cache/edgefl/npm}/$(cat "$lock" "$src/deploy/k8s/validate/package.json" | sha256sum | cut -c1-16)
if [[ ! -f "$cache/.installed" ]]; then
  rm -rf "$cache" && mkdir -p "$cache"
  cp "$src/deploy/k8s/validate/package.json" "$lock" "$cache/"
  (cd "$cache" && npm ci --no-audit --no-fund --loglevel=error >/dev/null) || fail "npm ci of the validator failed"
  touch "$cache/.installed"
fi
cp "$src/deploy/k8s/validate/validate.mjs" "$cache/validate.mjs"
validate() { node "$cache/validate.mjs" "$@"; }

work=$(mktemp -d /tmp/edgefl-k8s.XXXXXX)
trap 'rm -rf "$work"' EXIT
cp -r "$src/deploy/k8s" "$work/k8s"
rm -rf "$work/k8s/overlays/dev/certs"
SERVER_SANS="DNS:fl-server.edgefl.svc,DNS:fl-server.edgefl.svc.cluster.local" \
  "$src/deploy/certs/make-dev-certs.sh" "$work/k8s/overlays/dev/certs" 1 >/dev/null 2>&1

for overlay in k3s-edge dev; do
  "$KUBECTL" kustomize "$work/k8s/overlays/$overlay" >"$work/$overlay.yaml" || fail "kustomize $overlay"
  out=$(validate "$work/$overlay.yaml") || fail "$overlay: $out"
  echo "$overlay: $out"
  # What must be there, by name.
  for want in "kind: Namespace" "kind: ConfigMap" "kind: PersistentVolumeClaim" "kind: Deployment" \
              "kind: DaemonSet" "kind: Service" "kind: NetworkPolicy" "type: Recreate" "grpc:"; do
    grep -q "$want" "$work/$overlay.yaml" || fail "$overlay renders no '$want'"
  done
done
grep -q "storageClassName: local-path" "$work/k3s-edge.yaml" || fail "k3s-edge: no local-path PVC"
grep -q "kubernetes.io/arch: arm64" "$work/k3s-edge.yaml" || fail "k3s-edge: clients not on arm64 nodes"
grep -q "image: localhost/edgefl/fl-client:.*-arm64" "$work/k3s-edge.yaml" || fail "k3s-edge: clients not on the arm64 image"
grep -q "kind: Secret" "$work/dev.yaml" || fail "dev: no generated Secrets"
grep -q "tls.key:" "$work/dev.yaml" || fail "dev: no TLS key in the server Secret"

# A broken manifest is refused: each case changes the valid dev rendering in one place.
refused() {  # NAME WANT SED-SCRIPT [RENDERING]
  local base=$work/${4:-dev}.yaml
  sed "$3" "$base" >"$work/$1.yaml"
  cmp -s "$base" "$work/$1.yaml" && fail "$1: the edit changed nothing"
  local out rc=0
  out=$(validate "$work/$1.yaml") || rc=$?
  [[ $rc == 1 ]] || fail "$1: exit $rc, want 1: $out"
  [[ "$out" == *"$2"* ]] || fail "$1: no '$2' in: $out"
  echo "$1: refused: $(grep -F -- "$2" <<<"$out" | head -1)"
}
refused typo-field "imagePullPolicyy: unknown field" '0,/imagePullPolicy:/s//imagePullPolicyy:/'
refused missing-probe "has no readinessProbe" '0,/readinessProbe:/s//readinessProbeRemoved:/'
refused latest-image "needs a pinned tag" '0,/image: localhost\/edgefl\/fl-server:0.1.0/s//image: localhost\/edgefl\/fl-server:latest/'
refused run-off-pvc "must be on a PersistentVolumeClaim" 's|--out=/var/lib/edgefl/runs/|--out=/tmp/runs/|'
refused no-limits "resources.limits.memory missing" '0,/memory: 1Gi/s//memorx: 1Gi/'
refused root "runs as root" '0,/runAsNonRoot: true/s//runAsNonRoot: false/'
refused schema-type "schema:" '0,/replicas: 1/s//replicas: one/'
refused server-exits "needs --after_finish=serve" 's|--after_finish=serve|--after_finish=exit|'
refused client-exits "needs --after_finish=wait" 's|--after_finish=wait|--after_finish=exit|'
# The edge overlay with the amd64 client image on its arm64 nodes (exec format error on a Pi).
refused amd64-on-pi "built for amd64 but the pods are pinned to arm64" 's|fl-client:0.1.0-arm64|fl-client:0.1.0|' k3s-edge
echo PASSED
