#!/usr/bin/env bash
# Regression guard for the 64 B echo: runs `loadgen` with `raw` (the bare-tokio ceiling)
# and `rpc` interleaved, and compares the median per-round ratios rpc/raw (QPS, and CPU per
# call) with the ones recorded in benches/guard.txt. Ratios to `raw` from the same run
# cancel most of the machine's speed and noise, which absolute figures never do.
#
#   scripts/perf-guard.sh            check; exit 1 when QPS fell or CPU per call rose > 10 %
#   scripts/perf-guard.sh --record   run and write the ratios as the new baseline
#
# Environment: ROUNDS (default 15), SECS per round (default 2), TOLERANCE (default 0.10).
set -euo pipefail
cd "$(dirname "$0")/.."
baseline=benches/guard.txt
rounds=${ROUNDS:-15}
secs=${SECS:-2}
tolerance=${TOLERANCE:-0.10}

cargo build --release --locked -p benches --bin loadgen >&2
target=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
out=$("$target/release/loadgen" --secs "$secs" --warmup 0.5 --rounds "$rounds" \
    --concurrency 64 --size 64 --systems raw,rpc 2>/dev/null)
line=$(grep '^per-round rpc/raw ' <<<"$out") || {
    echo "perf-guard: loadgen printed no rpc/raw ratio:" >&2
    echo "$out" >&2
    exit 2
}
qps=$(sed -E 's/.* qps median=([0-9.]+)x.*/\1/' <<<"$line")
cpu=$(sed -E 's/.* cpu_per_call median=([0-9.]+)x.*/\1/' <<<"$line")
echo "$line"
echo "now: rpc/raw qps=$qps cpu_per_call=$cpu (${rounds} rounds of ${secs} s)"

if [[ ${1:-} == --record ]]; then
    printf '# rpc/raw median per-round ratios, 64 B echo, 64 in flight, one connection.\n# Written by scripts/perf-guard.sh --record on %s.\nqps %s\ncpu_per_call %s\n' \
        "$(date -u +%Y-%m-%dT%H:%MZ)" "$qps" "$cpu" >"$baseline"
    echo "recorded in $baseline"
    exit 0
fi

base_qps=$(awk '$1 == "qps" {print $2}' "$baseline")
base_cpu=$(awk '$1 == "cpu_per_call" {print $2}' "$baseline")
echo "baseline: rpc/raw qps=$base_qps cpu_per_call=$base_cpu ($baseline)"
python3 - "$qps" "$cpu" "$base_qps" "$base_cpu" "$tolerance" <<'PY'
import sys
qps, cpu, base_qps, base_cpu, tolerance = map(float, sys.argv[1:])
failed = []
if qps < base_qps * (1 - tolerance):
    failed.append(f"QPS relative to raw fell {100 * (1 - qps / base_qps):.0f} % ({base_qps:.2f}x -> {qps:.2f}x)")
if cpu > base_cpu * (1 + tolerance):
    failed.append(f"CPU per call relative to raw rose {100 * (cpu / base_cpu - 1):.0f} % ({base_cpu:.2f}x -> {cpu:.2f}x)")
for reason in failed:
    print(f"REGRESSION: {reason}")
if not failed:
    print(f"ok: within {100 * tolerance:.0f} % of the baseline")
sys.exit(1 if failed else 0)
PY
