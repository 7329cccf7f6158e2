# CMake toolchain for aarch64 Linux (Raspberry Pi 4/5, Jetson) with Debian's g++-aarch64-linux-gnu
# and an arm64 Debian sysroot (scripts/build-arm64 makes one and passes EDGEFL_ARM64_SYSROOT).
#   cmake -S . -B build-arm64 -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake \
#         -DEDGEFL_ARM64_SYSROOT=/var/cache/edgefl/arm64-sysroot/<key>
# Code generators run on the build machine: protoc and grpc_cpp_plugin are the host's
# (EDGEFL_HOST_PROTOC / EDGEFL_HOST_GRPC_CPP_PLUGIN, see protos/CMakeLists.txt).
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_LIBRARY_ARCHITECTURE aarch64-linux-gnu)

if(NOT EDGEFL_ARM64_SYSROOT AND DEFINED ENV{EDGEFL_ARM64_SYSROOT})
  set(EDGEFL_ARM64_SYSROOT $ENV{EDGEFL_ARM64_SYSROOT})
endif()
if(NOT EDGEFL_ARM64_SYSROOT OR NOT EXISTS "${EDGEFL_ARM64_SYSROOT}/usr/include")
  message(FATAL_ERROR "EDGEFL_ARM64_SYSROOT must name an arm64 sysroot (scripts/build-arm64 makes one)")
endif()
# try_compile projects re-read this file: hand the sysroot down to them.
list(APPEND CMAKE_TRY_COMPILE_PLATFORM_VARIABLES EDGEFL_ARM64_SYSROOT)

set(CMAKE_SYSROOT ${EDGEFL_ARM64_SYSROOT})
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)

# Libraries, headers and CMake packages from the sysroot only; programs from the host.
set(CMAKE_FIND_ROOT_PATH ${EDGEFL_ARM64_SYSROOT})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)
# pkg-config (gRPC's config finds re2 and OpenSSL through it) reads the sysroot's .pc files, not
# the host's, and prefixes their paths with the sysroot.
set(ENV{PKG_CONFIG_DIR} "")
set(ENV{PKG_CONFIG_LIBDIR}
    "${EDGEFL_ARM64_SYSROOT}/usr/lib/aarch64-linux-gnu/pkgconfig:${EDGEFL_ARM64_SYSROOT}/usr/share/pkgconfig")
set(ENV{PKG_CONFIG_SYSROOT_DIR} ${EDGEFL_ARM64_SYSROOT})

set(EDGEFL_HOST_PROTOC /usr/bin/protoc CACHE FILEPATH "protoc that runs on the build machine")
set(EDGEFL_HOST_GRPC_CPP_PLUGIN /usr/bin/grpc_cpp_plugin CACHE FILEPATH
    "grpc_cpp_plugin that runs on the build machine")
# Tests run under user-mode emulation with the sysroot as the library root.
set(CMAKE_CROSSCOMPILING_EMULATOR qemu-aarch64-static -L ${EDGEFL_ARM64_SYSROOT})
