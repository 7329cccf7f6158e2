#!/usr/bin/env bash
# Builds the compression libFuzzer target directly with clang++ (no CMake), and optionally runs
# it for a bounded time on a scratch copy of the seed corpus (the committed corpus is never
# modified).
#
#   compression/build_fuzzer.sh OUT             # build only, e.g. build/fuzz/compression_fuzz_decode
#   compression/build_fuzzer.sh OUT SECONDS     # build, then fuzz for SECONDS; exit 1 on a finding
#
# Needs clang++ (Debian clang 14) and libabsl-dev (its pkg-config files).
set -euo pipefail

if [[ $# -lt 1 || $# -gt 2 ]]; then
  echo "usage: $0 OUTPUT_BINARY [SECONDS]" >&2
  exit 2
fi
out="$1"
seconds="${2:-}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
cxx="${CXX_FUZZ:-clang++}"

mkdir -p "$(dirname "$out")"
# shellcheck disable=SC2046
"$cxx" -std=c++17 -g -O1 -ffp-contract=off \
  -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
  -I"$root" \
  "$here/fuzz_decode.cc" \
  "$here/chain.cc" "$here/error_feedback.cc" "$here/quantize.cc" "$here/sparsify.cc" \
  "$here/update_codec.cc" \
  $(pkg-config --cflags --libs absl_status absl_statusor absl_strings absl_span) \
  -o "$out"
echo "built $out"

if [[ -n "$seconds" ]]; then
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  mkdir -p "$work/corpus" "$work/artifacts"
  cp "$here"/fuzz_corpus/* "$work/corpus/"
  # libFuzzer exits non-zero when it finds a crash, leak, timeout or sanitizer report.
  if ! "$out" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
      -artifact_prefix="$work/artifacts/" "$work/corpus" 2>"$work/log"; then
    tail -50 "$work/log" >&2
    mkdir -p "$(dirname "$out")/fuzz-artifacts"
    cp "$work"/artifacts/* "$(dirname "$out")/fuzz-artifacts/" 2>/dev/null || true
    echo "fuzzer found a problem; reproducer(s) in $(dirname "$out")/fuzz-artifacts/" >&2
    exit 1
  fi
  grep -E "^Done|^#[0-9]+.*DONE" "$work/log" | tail -2
fi
