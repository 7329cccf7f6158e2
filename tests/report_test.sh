#!/usr/bin/env bash
# ctest `report`: a short real federation (mlp, 2 rounds, 2 fl-client processes, the models
# averaged from round 1 (the legend says so), so round 2's result (g1 + g2) / 2 differs from its global model g2) ends with
# runs/R/report.html; `fl-server report R` writes it again. Headless Chromium (Debian's) renders
# it to a PNG whose plot areas are not blank (the series' colours are on it, decoded with zlib),
# and the SVG's axis labels carry the run's own numbers from metrics.jsonl.
#
#   tests/report_test.sh SOURCE_DIR BUILD_DIR
set -euo pipefail
src=$(readlink -f "$1") build=$(readlink -f "$2")
fail() { echo "FAILED: $*" >&2; exit 1; }
CHROMIUM=${CHROMIUM:-$(command -v chromium || true)}
[[ -n "$CHROMIUM" ]] || fail "chromium is missing (scripts/setup installs Debian's chromium)"
dir=$(mktemp -d /tmp/edgefl-report.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; rm -rf "$dir"; }
trap cleanup EXIT
"$build/bin/fl-server" --insecure --listen=127.0.0.1:0 --port_file="$dir/port" --model=mlp --rounds=2 \
  --min_clients=2 --eval_samples=500 --deadline=60 --seed=3 --finish_grace_seconds=5 \
  --set=aggregation.averaging.from_round=1 --out="$dir/run" >"$dir/server.log" 2>&1 &
server=$!
pids+=($server)
for _ in $(seq 1 100); do [[ -s "$dir/port" ]] && break; sleep 0.1; done
[[ -s "$dir/port" ]] || fail "fl-server did not start: $(cat "$dir/server.log")"
for i in 0 1; do
  "$build/bin/fl-client" --insecure --server="127.0.0.1:$(cat "$dir/port")" --partition=iid \
    --num_partitions=60 --client_index=$i --seed=3 --state_dir="$dir/state-$i" --progress=never \
    >"$dir/client-$i.log" 2>&1 &
  pids+=($!)
done
timeout 300 tail --pid=$server -f /dev/null || fail "the federation did not finish in 300 s"
wait $server || fail "fl-server exited $?: $(tail -5 "$dir/server.log")"
[[ -s "$dir/run/report.html" ]] || fail "no report.html at the end of the run"
mv "$dir/run/report.html" "$dir/end-of-run.html"
out=$("$build/bin/fl-server" report "$dir/run") || fail "fl-server report: $out"
[[ "$out" == "$dir/run/report.html" ]] || fail "fl-server report printed '$out'"
cmp -s "$dir/end-of-run.html" "$dir/run/report.html" || fail "the two reports differ"
rc=0; err=$("$build/bin/fl-server" report "$dir/nothing" 2>&1) || rc=$?
[[ $rc == 2 && "$err" == "fl-server report: no metrics.jsonl in $dir/nothing" ]] || fail "missing run: exit $rc: $err"
grep -q '<script' "$dir/run/report.html" && fail "the report has scripts"
grep -Eq '(src|href)="http' "$dir/run/report.html" && fail "the report loads external files"

# The axis labels carry the run's numbers (the same "%.4g" the page uses).
python3 - "$dir/run/metrics.jsonl" "$dir/run/report.html" <<'PY' || fail "axis labels"
import json, re, sys
lines = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
html = open(sys.argv[2]).read()
def number(t):
    scale = {"k": 1e3, "M": 1e6, "G": 1e9}.get(t[-1], 1)
    return float(t[:-1] if scale != 1 else t) * scale
yticks = [number(t) for t in re.findall(r'class="ytick"[^>]*>([^<]+)<', html)]
xticks = re.findall(r'class="xtick"[^>]*>([^<]+)<', html)
def labelled(v, what):
    assert any(abs(t - v) <= 6e-4 * max(1.0, abs(v)) for t in yticks), f"{what} {v} not among the y labels {yticks}"
assert all("global_test_accuracy" in l for l in lines), lines
# The run's result (averaged from round 1, the config's from_round) and the global model's figures
# are both drawn: the axes span both series.
acc = [l[k] for l in lines for k in ("test_accuracy", "global_test_accuracy")]
loss = [l[k] for l in lines for k in ("test_loss", "global_test_loss")]
for legend in ("result (averaged from round 1)", "global model"):
    assert html.count(f">{legend}</text>") == 2, f"legend {legend!r} not on the accuracy and loss plots"
for what, vals in (("accuracy", acc), ("loss", loss)):
    labelled(min(vals), what); labelled(max(vals), what)
labelled(max(max(l["bytes_up"], l["bytes_down"]) for l in lines), "bytes")
assert {"1", "2"} <= set(xticks), f"rounds not on the x axis: {xticks}"
assert re.search(r'&quot;rounds&quot;: *2\b', html), "resolved config missing"
print(f"axis labels carry accuracy {min(acc)}..{max(acc)}, loss {min(loss)}..{max(loss)}")
PY

"$CHROMIUM" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --user-data-dir="$dir/chromium" --window-size=1000,1100 --screenshot="$dir/shot.png" \
  "file://$dir/run/report.html" >"$dir/chromium.log" 2>&1 || fail "chromium: $(tail -3 "$dir/chromium.log")"
python3 - "$dir/shot.png" <<'PY' || fail "the screenshot's plots are blank"
import struct, sys, zlib
data = open(sys.argv[1], "rb").read()
assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
pos, idat, w = 8, b"", 0
while pos < len(data):
    n, kind = struct.unpack(">I4s", data[pos:pos + 8])
    body = data[pos + 8:pos + 8 + n]
    if kind == b"IHDR":
        w, h, depth, ctype = struct.unpack(">IIBB", body[:10])
        assert depth == 8 and ctype in (2, 6), (depth, ctype)
        bpp = 3 if ctype == 2 else 4
    elif kind == b"IDAT":
        idat += body
    pos += 12 + n
raw, stride = zlib.decompress(idat), w * bpp
rows, prev, i = [], bytearray(stride), 0
for _ in range(h):
    f, line = raw[i], bytearray(raw[i + 1:i + 1 + stride]); i += 1 + stride
    for x in range(stride):
        a = line[x - bpp] if x >= bpp else 0
        b, c = prev[x], (prev[x - bpp] if x >= bpp else 0)
        if f == 1: line[x] = (line[x] + a) & 255
        elif f == 2: line[x] = (line[x] + b) & 255
        elif f == 3: line[x] = (line[x] + (a + b) // 2) & 255
        elif f == 4:
            p = a + b - c; pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
    rows.append(line); prev = line
def count(rgb, tol=40):
    return sum(1 for r in rows for x in range(0, stride, bpp) if all(abs(r[x + k] - rgb[k]) < tol for k in range(3)))
blue, red, area = count((0x1f, 0x77, 0xb4)), count((0xd6, 0x27, 0x28)), count((0xf6, 0xf8, 0xfa), 3)
print(f"screenshot {w}x{h}: {blue} blue and {red} red series pixels, {area} plot-area pixels")
assert area > 20000, "no plot areas"
assert blue > 300 and red > 300, "plot areas hold no series"
PY
echo PASSED
