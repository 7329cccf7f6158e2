#!/usr/bin/env bash
# Makes a private copy of Debian's libtorch_cpu without the DT_NEEDED entries of libraries that
# only caffe2's legacy image/video/database operators use (OpenCV, FFmpeg, OpenCL, ZeroMQ, LMDB,
# LevelDB, Snappy, ONNX protos). edgefl never calls those operators, and loading the ~250 shared
# libraries they drag in costs every process ~70 MiB of resident memory at start-up.
# Usage: trim_libtorch.sh <patchelf> <source libtorch_cpu.so.X> <output file>
set -euo pipefail
patchelf=$1 src=$2 out=$3
tmp="$out.tmp.$$"
cp "$src" "$tmp"
for lib in $("$patchelf" --print-needed "$tmp" |
             grep -E '^lib(opencv_|avcodec|avformat|avutil|swscale|swresample|OpenCL|zmq|lmdb|leveldb|snappy|onnx_proto)'); do
  "$patchelf" --remove-needed "$lib" "$tmp"
done
mv "$tmp" "$out"
