#!/usr/bin/env bash
# deploy/systemd/fl-client.service passes `systemd-analyze verify` with no message at all (unknown
# keys and bad values are only warnings there, so any output fails), against the fl-client binary
# this build made, and its offline security exposure stays at most 2.5 ("OK").
# Usage: systemd_unit_test.sh <source dir> <fl-client binary>
set -euo pipefail
src=$1 client=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
unit=$tmp/fl-client.service
sed "s#/usr/local/bin/fl-client#$client#" "$src/deploy/systemd/fl-client.service" > "$unit"
grep -q "^ExecStart=$client " "$unit" || { echo "FAIL: ExecStart does not name /usr/local/bin/fl-client"; exit 1; }
out=$(systemd-analyze verify "$unit" 2>&1) || { echo "FAIL: systemd-analyze verify: $out"; exit 1; }
if [[ -n $out ]]; then
  echo "FAIL: systemd-analyze verify printed:"; echo "$out"; exit 1
fi
for want in "User=edgefl" "Restart=on-failure" "RestartPreventExitStatus=2" "StateDirectory=edgefl" \
            "NoNewPrivileges=yes" "ProtectSystem=strict"; do
  grep -qx "$want" "$unit" || { echo "FAIL: the unit lacks $want"; exit 1; }
done
# The user the unit runs as is the one the sysusers file creates.
grep -q '^u edgefl ' "$src/deploy/systemd/edgefl.sysusers" || { echo "FAIL: no edgefl user in edgefl.sysusers"; exit 1; }
sec=$(systemd-analyze security --offline=true "$unit" 2>&1) || { echo "FAIL: $sec"; exit 1; }
level=$(sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p' <<<"$sec")
[[ -n $level ]] || { echo "FAIL: no exposure level in: $sec"; exit 1; }
awk -v l="$level" 'BEGIN { exit !(l <= 2.5) }' || { echo "FAIL: exposure level $level > 2.5"; exit 1; }
echo "fl-client.service: verify clean, exposure level $level"
