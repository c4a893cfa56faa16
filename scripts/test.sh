#!/usr/bin/env bash
# Runs everything CI checks: formatting, clippy, every test of the workspace, the quickstart.
# Works on a fresh machine as root or as a user with a Rust toolchain. The servers the
# tests need (ZooKeeper, etcd, Redis, chromedriver for the admin dashboard) are installed
# from Debian's packages if missing, started on
# 127.0.0.1 ports picked now, and stopped by PID at exit (scripts/servers.sh).
set -Eeuo pipefail

cd "$(dirname "$0")/.."
trap 'echo "scripts/test.sh: failed at line $LINENO: $BASH_COMMAND" >&2' ERR
source scripts/servers.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/rpc-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
# A run builds each crate once: incremental state would only fill the disk.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
# Keep the 2-core CI box responsive and the run deterministic in output.
export RUST_BACKTRACE=1

step() { printf '\n== %s (%s)\n' "$1" "$(date +%H:%M:%S)"; }

step "build prerequisites"
# etcd-client compiles etcd's .proto files with protoc at build time.
install_packages protobuf-compiler

step "toolchain"
cargo --version
rustc --version

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (all targets, -D warnings)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "servers for the tests"
start_zookeeper RPC_TEST_ZOOKEEPER
start_zookeeper RPC_TEST_ZOOKEEPER_OUTAGE
start_etcd RPC_TEST_ETCD
start_etcd RPC_TEST_ETCD_OUTAGE
start_redis RPC_TEST_REDIS
start_redis RPC_TEST_REDIS_OUTAGE
start_chromedriver RPC_TEST_CHROMEDRIVER
python_grpc_venv RPC_TEST_GRPC_PYTHON

step "cargo test (workspace: unit, integration, trybuild, doc tests)"
cargo test --workspace --locked --no-fail-fast

step "cargo doc (no broken links, -D warnings)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked

step "quickstart (scripts/quickstart.sh, the README's main command)"
scripts/quickstart.sh

step "fault suite, short (scripts/chaos.sh --short: 3-member ZooKeeper and etcd, real processes)"
scripts/chaos.sh --short

step "done"
