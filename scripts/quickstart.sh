#!/usr/bin/env bash
# The main job on a fresh machine: installs what the build needs (protoc, which the etcd
# client's build compiles etcd's .proto files with) if it is missing, then runs the
# quickstart (in-process registry, no server to start).
set -Eeuo pipefail
cd "$(dirname "$0")/.."
if ! command -v protoc >/dev/null 2>&1; then
    sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    echo "installing protobuf-compiler"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends protobuf-compiler >/dev/null
fi
exec cargo run --locked -p examples --bin quickstart
