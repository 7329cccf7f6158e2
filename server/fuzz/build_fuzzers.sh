#!/usr/bin/env bash
# Builds the server's libFuzzer targets directly with clang++ (no CMake; ASan + UBSan), and
# optionally runs one of them for a bounded time on a scratch copy of its seed corpus (the
# committed corpus in server/fuzz/corpus/ is never modified).
#
#   server/fuzz/build_fuzzers.sh OUT_DIR                   # build all: OUT_DIR/fuzz_{join,checkin,report,config}
#   server/fuzz/build_fuzzers.sh OUT_DIR TARGET SECONDS    # build, then fuzz TARGET for SECONDS;
#                                                          # exit 1 on a finding (reproducer kept in
#                                                          # OUT_DIR/fuzz-artifacts/)
# TARGET is join, checkin, report or config. Rebuilds only what changed (objects are compared
# with their source and with the headers of the folders they use). Prints libFuzzer's final statistics
# ("Done N runs in S second(s)"). Needs clang++ 14, protoc, and the -dev packages' pkg-config
# files (abseil, protobuf, OpenSSL).
set -euo pipefail

if [[ $# -ne 1 && $# -ne 3 ]]; then
  echo "usage: $0 OUT_DIR [TARGET SECONDS]" >&2
  exit 2
fi
out="$(mkdir -p "$1" && cd "$1" && pwd)"
target="${2:-}"
seconds="${3:-}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cxx="${CXX_FUZZ:-clang++}"
targets=(join checkin report config)
if [[ -n "$target" && ! " ${targets[*]} " =~ " $target " ]]; then
  echo "$0: unknown target '$target' (one of: ${targets[*]})" >&2
  exit 2
fi

mkdir -p "$out/obj" "$out/gen"
# One builder at a time (ctest and bench/fuzz_all may overlap).
exec 9>"$out/.lock"
flock 9

pkgs=(protobuf libcrypto absl_status absl_statusor absl_strings absl_str_format absl_time
  absl_synchronization absl_cord absl_flat_hash_map absl_flat_hash_set absl_hash absl_raw_hash_set
  absl_span)
# shellcheck disable=SC2207
cflags=($(pkg-config --cflags "${pkgs[@]}"))
# shellcheck disable=SC2207
libs=($(pkg-config --libs "${pkgs[@]}") -lpthread)
common_flags=(-std=c++17 -g -O1 -ffp-contract=off -fno-sanitize-recover=undefined
  -I"$root" -I"$out/gen" "${cflags[@]}")

# Generated protobuf code (no gRPC: the fuzzers call the handlers' pure parts).
for p in config edgefl; do
  if [[ ! -f "$out/gen/protos/$p.pb.cc" || "$root/protos/$p.proto" -nt "$out/gen/protos/$p.pb.cc" ]]; then
    protoc -I "$root" --cpp_out="$out/gen" "$root/protos/$p.proto"
  fi
done

sources=(
  "$out/gen/protos/config.pb.cc" "$out/gen/protos/edgefl.pb.cc"
  "$root/common/chunking.cc" "$root/common/clock.cc" "$root/server/config.cc"
  "$root/common/crypto.cc" "$root/common/file_util.cc" "$root/common/log.cc"
  "$root/common/sha256.cc"
  "$root/server/strategy_registry.cc"
  "$root/models/model_spec.cc"
  "$root/server/access_control.cc" "$root/server/client_registry.cc"
  "$root/server/enrollment_ledger.cc" "$root/server/rate_limiter.cc"
  "$root/server/request_validation.cc" "$root/server/tokens.cc"
)

# compression/ and aggregation/ are torch-free libraries whose every .cc but tests, benchmarks and
# fuzz mains is library code: take them all, so that a new file there cannot be forgotten here
# (a hand-written list once missed aggregation/kernels.cc and only the full suite noticed).
for dir in compression aggregation; do
  for src in "$root/$dir"/*.cc; do
    case "$(basename "$src")" in
      *_test.cc | *_benchmark.cc | fuzz_*.cc) ;;
      *) sources+=("$src") ;;
    esac
  done
done

# compile SRC OBJ: (re)compile when the object is missing or older than the source or any header.
compile() {
  local src="$1" obj="$2"
  if [[ -f "$obj" && ! "$src" -nt "$obj" ]] &&
    [[ -z "$(find "$root/common" "$root/compression" "$root/aggregation" "$root/server" \
      "$root/models/model_spec.h" "$out/gen" -name '*.h' -newer "$obj" -print -quit)" ]]; then
    return 0
  fi
  echo "compiling ${src#"$root"/}"
  "$cxx" "${common_flags[@]}" -fsanitize=fuzzer-no-link,address,undefined -c "$src" -o "$obj"
}

objects=()
for src in "${sources[@]}"; do
  name="$(basename "$src" .cc)"
  # The folder in the object's name: two folders may hold a file of the same name.
  if [[ "$src" == "$out/gen/"* ]]; then
    name="gen_$name"
  else
    name="$(basename "$(dirname "$src")")_$name"
  fi
  obj="$out/obj/$name.o"
  compile "$src" "$obj"
  objects+=("$obj")
done

for t in "${targets[@]}"; do
  obj="$out/obj/fuzz_$t.o"
  compile "$here/fuzz_$t.cc" "$obj"
  bin="$out/fuzz_$t"
  relink=0
  [[ -f "$bin" ]] || relink=1
  for o in "$obj" "${objects[@]}"; do
    [[ "$o" -nt "$bin" ]] && relink=1
  done
  if ((relink)); then
    "$cxx" -fsanitize=fuzzer,address,undefined "$obj" "${objects[@]}" "${libs[@]}" -o "$bin"
    echo "built $bin"
  fi
done

[[ -z "$target" ]] && exit 0

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/corpus" "$work/artifacts"
cp "$here/corpus/$target"/* "$work/corpus/"
# libFuzzer exits non-zero when it finds a crash, a leak, a timeout or a sanitizer report.
if ! "$out/fuzz_$target" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$work/artifacts/" "$work/corpus" >"$work/log" 2>&1; then
  tail -60 "$work/log" >&2
  mkdir -p "$out/fuzz-artifacts"
  cp "$work"/artifacts/* "$out/fuzz-artifacts/" 2>/dev/null || true
  echo "fuzz_$target found a problem; reproducer(s) in $out/fuzz-artifacts/" >&2
  exit 1
fi
echo "fuzz_$target: $(grep -E '^#[0-9]+.*DONE' "$work/log" | tail -1)"
grep -E "^Done [0-9]+ runs|stat::number_of_executed_units|stat::peak_rss_mb" "$work/log" | tail -3
