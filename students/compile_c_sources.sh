#!/bin/sh
# compile_c_sources.sh CC "CFLAGS" FILE...: compiles each FILE with `CC CFLAGS -c` (the objects
# are discarded) and fails on the first error. Exits 77 (ctest SKIP_RETURN_CODE) with the reason
# when CC is not installed.
cc=$1
flags=$2
shift 2
if ! command -v "$cc" >/dev/null 2>&1; then
  echo "skipped: $cc is not installed (apt-get install gcc-arm-none-eabi for the Cortex-M4 build)"
  exit 77
fi
"$cc" --version | head -n 1
for f in "$@"; do
  echo "$cc $flags -c $f"
  # shellcheck disable=SC2086  # CFLAGS is a list of words
  "$cc" $flags -c "$f" -o /dev/null || exit 1
done
