#!/usr/bin/env bash
# The fault suite: real provider and consumer processes (examples' `provider` and
# `loadcheck`) against a 3-member ZooKeeper ensemble and a 3-member etcd cluster on
# 127.0.0.1, while providers are killed, frozen and restarted and the registries go away.
#
#   scripts/chaos.sh            full run, release build (about 15 minutes; add --soak for the
#                               10-minute soak on top)
#   scripts/chaos.sh --short    a few seconds per scenario, debug build (scripts/test.sh runs this)
#   scripts/chaos.sh --only kill9-zookeeper,churn   a subset
#
# Prints one line per scenario:
#   scenario=NAME calls=N failed=N lost=N p99_ms=N result=pass|fail [what was checked]
# and exits non-zero if any scenario failed. docs/reliability.md explains each one.
set -Eeuo pipefail

cd "$(dirname "$0")/.."
trap 'echo "scripts/chaos.sh: failed at line $LINENO: $BASH_COMMAND" >&2' ERR
source scripts/servers.sh
source scripts/ensembles.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/rpc-target}"

SHORT=0 SOAK=0 ONLY=""
while [ $# -gt 0 ]; do
    case "$1" in
    --short) SHORT=1 ;;
    --soak) SOAK=1 ;;
    --only) ONLY="$2"; shift ;;
    *) echo "usage: scripts/chaos.sh [--short] [--soak] [--only NAME,NAME]" >&2; exit 2 ;;
    esac
    shift
done

if [ "$SHORT" = 1 ]; then
    PROFILE=debug RATE=300 LOAD_SECONDS=6 OUTAGE_SECONDS=5 CHURN=200
else
    PROFILE=release RATE=2000 LOAD_SECONDS=20 OUTAGE_SECONDS=30 CHURN=1000
fi
# Session and lease timeouts of the providers' registrations: short, so that a dead or
# frozen provider leaves the lists within seconds.
SESSION_MS=4000
case "$PROFILE" in
release) cargo build --release --locked -q -p examples --bin provider --bin loadcheck --bin relay ;;
debug) cargo build --locked -q -p examples --bin provider --bin loadcheck --bin relay ;;
esac
BIN="$CARGO_TARGET_DIR/$PROFILE"
WORK="$(mktemp -d /tmp/rpc-chaos.XXXXXX)"
FAILED=0
declare -A PROVIDER_PID PROVIDER_ADDR

now_ms() { date +%s%3N; }

wanted() { [ -z "$ONLY" ] || [[ ",$ONLY," == *",$1,"* ]]; }

# start_provider NAME REGISTRY_URL: a provider on a free port; waits until it registered.
start_provider() {
    local name="$1" url="$2" log="$WORK/$1.log"
    : >"$log"
    "$BIN/provider" --listen 127.0.0.1:0 --name "$name" --registry "$url" >>"$log" 2>&1 &
    PROVIDER_PID[$name]=$!
    SERVER_PIDS+=("$!")
    local i
    for i in $(seq 1 200); do
        if grep -q "registered in" "$log"; then
            PROVIDER_ADDR[$name]="$(sed -n 's/^listening on \([^ ]*\).*/\1/p' "$log" | tail -1)"
            return 0
        fi
        kill -0 "${PROVIDER_PID[$name]}" 2>/dev/null || break
        sleep 0.1
    done
    echo "error: provider $name did not start:" >&2
    tail -20 "$log" >&2
    return 1
}

# stop_provider NAME [SIGNAL]: default TERM, a graceful stop; waits for the process.
stop_provider() {
    local pid="${PROVIDER_PID[$1]:-}"
    [ -n "$pid" ] || return 0
    kill "-${2:-TERM}" "$pid" 2>/dev/null || true
    if [ "${2:-TERM}" != STOP ]; then
        wait "$pid" 2>/dev/null || true
        unset "PROVIDER_PID[$1]"
    fi
}

# Between scenarios: graceful stops, so no registration outlives its scenario.
stop_all_providers() {
    local name
    for name in "${!PROVIDER_PID[@]}"; do
        kill -CONT "${PROVIDER_PID[$name]}" 2>/dev/null || true
        stop_provider "$name" TERM
    done
}

# start_load NAME REGISTRY_URL SECONDS [loadcheck flags...]: loadcheck in the background.
start_load() {
    local name="$1" url="$2" seconds="$3"
    shift 3
    "$BIN/loadcheck" --registry "$url" --rate "$RATE" --seconds "$seconds" "$@" \
        >"$WORK/$name.out" 2>"$WORK/$name.err" &
    LOAD_PID=$!
}

# wait_load NAME: waits for loadcheck and sets CALLS FAILED LOST P99 from its summary.
wait_load() {
    wait "$LOAD_PID" || true
    local line
    line="$(grep '^calls=' "$WORK/$1.out" | tail -1 || true)"
    if [ -z "$line" ]; then
        echo "error: loadcheck $1 printed no summary:" >&2
        tail -20 "$WORK/$1.err" >&2
        CALLS=0 FAILED_CALLS=0 LOST=-1 P99=0 TIMEOUTS=0
        return 0
    fi
    CALLS="$(sed 's/.*calls=\([0-9]*\).*/\1/' <<<"$line")"
    FAILED_CALLS="$(sed 's/.*failed=\([0-9]*\).*/\1/' <<<"$line")"
    LOST="$(sed 's/.*lost=\([0-9-]*\).*/\1/' <<<"$line")"
    P99="$(sed 's/.*p99_ms=\([0-9.]*\).*/\1/' <<<"$line")"
    # Failures that are the caller's deadline passing (the only kind a hung or frozen
    # provider may cause).
    TIMEOUTS="$(awk '/^error count=/ && /timed out|timeout/ {split($2, c, "="); n += c[2]} END {print n + 0}' "$WORK/$1.out")"
}

# When the provider list of loadcheck NAME first had COUNT providers at or after AT_MS.
list_count_at() {
    awk -v at="$2" -v count="$3" '/^providers at_ms=/ {
        split($2, t, "="); split($3, c, "=");
        if (t[2] >= at && c[2] == count) { print t[2]; exit } }' "$WORK/$1.out"
}

# report NAME PASS DETAIL
report() {
    local result=pass
    if [ "$2" != 1 ]; then
        result=fail
        FAILED=1
    fi
    echo "scenario=$1 calls=$CALLS failed=$FAILED_CALLS lost=$LOST p99_ms=$P99 result=$result $3"
    if [ "$result" = fail ]; then
        grep '^error ' "$WORK/$1.out" 2>/dev/null | head -5 | sed 's/^/    /' >&2 || true
    fi
}

registry_url() {
    case "$1" in
    zookeeper) echo "zookeeper://$CHAOS_ZOOKEEPER?session_timeout_ms=$SESSION_MS" ;;
    etcd) echo "etcd://$CHAOS_ETCD?lease_ttl_ms=$SESSION_MS" ;;
    esac
}

# 1. A provider killed with SIGKILL under load: failover hides it, and it leaves the list
#    within the session/lease timeout.
scenario_kill9() {
    local kind="$1" name="kill9-$1" url
    url="$(registry_url "$kind")"
    start_provider p1 "$url" && start_provider p2 "$url" && start_provider p3 "$url"
    # The load outlasts the kill by the session timeout plus the 3 s allowed, so the
    # consumer is still watching when the dead provider's node goes (the short run's 6 s
    # left only 4 s after the kill: a session expiring late under load was never seen).
    start_load "$name" "$url" "$((LOAD_SECONDS + SESSION_MS / 1000 + 3))" --method add
    sleep "$((LOAD_SECONDS / 3))"
    local killed
    killed="$(now_ms)"
    stop_provider p3 KILL
    wait_load "$name"
    local left
    left="$(list_count_at "$name" "$killed" 2)"
    local gone_ms=$(( ${left:-99999999999999} - killed ))
    local ok=0
    [ "$FAILED_CALLS" = 0 ] && [ "$LOST" = 0 ] && [ "$CALLS" -gt 0 ] && [ -n "$left" ] &&
        [ "$gone_ms" -le $((SESSION_MS + 3000)) ] && ok=1
    report "$name" "$ok" "left_list_after_ms=${left:+$gone_ms}"
    stop_all_providers
}

# 2. Every provider restarted in turn with a graceful stop: not one call fails, for a
#    method that is not idempotent.
scenario_rolling() {
    local name="rolling-restart" url
    url="$(registry_url zookeeper)"
    start_provider p1 "$url" && start_provider p2 "$url" && start_provider p3 "$url"
    start_load "$name" "$url" "$((LOAD_SECONDS + 6))" --method greet
    sleep 2
    local p
    for p in p1 p2 p3; do
        stop_provider "$p" TERM
        start_provider "$p" "$url"
        sleep "$((LOAD_SECONDS / 6 + 1))"
    done
    wait_load "$name"
    local ok=0
    [ "$FAILED_CALLS" = 0 ] && [ "$LOST" = 0 ] && [ "$CALLS" -gt 0 ] && ok=1
    report "$name" "$ok" "method=greet(not idempotent)"
    stop_all_providers
}

# 3. The whole registry down under load: calls go on from the consumer's list; a consumer
#    started during the outage calls from its cache file; once the registry is back, a new
#    provider is seen quickly.
scenario_outage() {
    local kind="$1" name="outage-$1" url cache="$WORK/outage-$1.cache"
    url="$(registry_url "$kind")"
    start_provider p1 "$url" && start_provider p2 "$url" && start_provider p3 "$url"
    start_load "$name" "$url" "$((OUTAGE_SECONDS + 14))" --method add --cache "$cache"
    local main_load=$LOAD_PID
    sleep 3
    ensemble_stop "$kind"
    sleep 1
    # A consumer that starts now finds no registry: only its cache file knows providers.
    local cold_ok=0
    "$BIN/loadcheck" --registry "$url" --rate 100 --seconds 3 --method add --cache "$cache" \
        >"$WORK/$name-cold.out" 2>"$WORK/$name-cold.err" || true
    grep -q '^calls=[1-9][0-9]* ok=[1-9][0-9]* failed=0 lost=0' "$WORK/$name-cold.out" && cold_ok=1
    sleep "$((OUTAGE_SECONDS > 4 ? OUTAGE_SECONDS - 4 : 1))"
    ensemble_start "$kind"
    local back
    back="$(now_ms)"
    start_provider p4 "$url"
    LOAD_PID=$main_load
    wait_load "$name"
    local seen
    seen="$(list_count_at "$name" "$back" 4)"
    # From the registry answering again and the new provider starting, to the consumer
    # calling it.
    local seen_ms=$(( ${seen:-99999999999999} - back ))
    local ok=0
    [ "$FAILED_CALLS" = 0 ] && [ "$LOST" = 0 ] && [ "$CALLS" -gt 0 ] && [ "$cold_ok" = 1 ] &&
        [ -n "$seen" ] && [ "$seen_ms" -le 2000 ] && ok=1
    report "$name" "$ok" "cold_consumer_from_cache=$cold_ok new_provider_seen_after_ms=${seen:+$seen_ms}"
    stop_all_providers
}

# 4. The registry's leader killed under load: registrations and watches survive.
scenario_leader() {
    local kind="$1" name="leader-loss-$1" url
    url="$(registry_url "$kind")"
    start_provider p1 "$url" && start_provider p2 "$url" && start_provider p3 "$url"
    # Long enough after the election for the new provider to register (a client whose
    # first endpoint is the dead member takes a retry or two to connect) and be seen.
    start_load "$name" "$url" "$((LOAD_SECONDS + 8))" --method add
    sleep 2
    local leader
    leader="$(ensemble_leader "$kind")"
    member_stop "$kind" "$leader" KILL
    sleep 2
    # Watches survived when a provider registered after the election reaches the consumer.
    local after
    after="$(now_ms)"
    start_provider p4 "$url"
    wait_load "$name"
    local seen
    seen="$(list_count_at "$name" "$after" 4)"
    local ok=0
    [ "$FAILED_CALLS" = 0 ] && [ "$LOST" = 0 ] && [ "$CALLS" -gt 0 ] && [ -n "$seen" ] && ok=1
    report "$name" "$ok" "killed_member=$leader new_provider_seen=${seen:+yes}"
    member_start "$kind" "$leader"
    stop_all_providers
}

# 5. A provider frozen past its session timeout: its node goes, comes back by itself when it
#    resumes, and it is called again; meanwhile calls went elsewhere (those already sent to
#    it may time out: nothing else may fail).
scenario_session_expiry() {
    local name="session-expiry" url
    url="$(registry_url zookeeper)"
    start_provider p1 "$url" && start_provider p2 "$url" && start_provider p3 "$url"
    start_load "$name" "$url" "$((LOAD_SECONDS + SESSION_MS / 1000 * 2 + 6))" --method add
    sleep 2
    local frozen
    frozen="$(now_ms)"
    stop_provider p3 STOP
    sleep "$((SESSION_MS / 1000 * 2 + 2))"
    kill -CONT "${PROVIDER_PID[p3]}"
    local resumed
    resumed="$(now_ms)"
    wait_load "$name"
    local gone back
    gone="$(list_count_at "$name" "$frozen" 2)"
    back="$(list_count_at "$name" "$resumed" 3)"
    local ok=0
    [ "$LOST" = 0 ] && [ "$FAILED_CALLS" = "$TIMEOUTS" ] && [ "$CALLS" -gt 0 ] &&
        [ -n "$gone" ] && [ -n "$back" ] && ok=1
    report "$name" "$ok" "left_list=${gone:+yes} back_after_resume_ms=${back:+$((back - resumed))} timeouts=$TIMEOUTS"
    stop_all_providers
}

# 6. A provider that accepts but never answers (frozen, inside its session timeout): callers
#    see timeouts only, within their deadline; least-active soon sends it almost nothing.
scenario_hung() {
    local name="hung-provider" url
    # A long session: the frozen provider stays listed, as a hung process would.
    url="zookeeper://$CHAOS_ZOOKEEPER?session_timeout_ms=60000"
    start_provider p1 "$url" && start_provider p2 "$url" && start_provider p3 "$url"
    start_load "$name" "$url" "$LOAD_SECONDS" --method add --balancer leastactive --timeout-ms 500
    sleep 1
    stop_provider p3 STOP
    wait_load "$name"
    kill -CONT "${PROVIDER_PID[p3]}"
    local share
    share="$(awk -v f="$FAILED_CALLS" -v c="$CALLS" 'BEGIN { printf "%.2f", c ? 100 * f / c : 100 }')"
    local ok=0
    # Timeouts only, and few: least-active stops sending to a provider whose calls pile up.
    [ "$LOST" = 0 ] && [ "$FAILED_CALLS" = "$TIMEOUTS" ] && [ "$CALLS" -gt 0 ] &&
        awk -v s="$share" 'BEGIN { exit !(s < 5) }' && ok=1
    report "$name" "$ok" "timeouts=$TIMEOUTS share_of_calls_failed_pct=$share"
    stop_all_providers
}

# 7. Connection churn: many clients connect, call and go; the provider's descriptors and
#    memory return to where they were.
scenario_churn() {
    local name="churn" url
    url="$(registry_url zookeeper)"
    start_provider p1 "$url"
    local pid="${PROVIDER_PID[p1]}" addr="${PROVIDER_ADDR[p1]}"
    # A first round warms the allocator and the runtime up.
    "$BIN/loadcheck" --churn 100 --connect "$addr" >"$WORK/$name-warm.out" 2>&1
    sleep 1
    local fds_before rss_before
    fds_before="$(ls "/proc/$pid/fd" | wc -l)"
    rss_before="$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status")"
    "$BIN/loadcheck" --churn "$CHURN" --connect "$addr" >"$WORK/$name.out" 2>"$WORK/$name.err" || true
    sleep 2
    local fds_after rss_after
    fds_after="$(ls "/proc/$pid/fd" | wc -l)"
    rss_after="$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status")"
    local line
    line="$(grep '^calls=' "$WORK/$name.out" | tail -1 || true)"
    CALLS="$(sed -n 's/.*calls=\([0-9]*\).*/\1/p' <<<"$line")"
    FAILED_CALLS="$(sed -n 's/.*failed=\([0-9]*\).*/\1/p' <<<"$line")"
    LOST="$(sed -n 's/.*lost=\([0-9-]*\).*/\1/p' <<<"$line")"
    P99="$(sed -n 's/.*p99_ms=\([0-9.]*\).*/\1/p' <<<"$line")"
    local ok=0
    [ "${FAILED_CALLS:-1}" = 0 ] && [ "${LOST:-1}" = 0 ] && [ "$fds_after" -le $((fds_before + 2)) ] &&
        [ "$rss_after" -le $((rss_before * 110 / 100)) ] && ok=1
    report "$name" "$ok" "cycles=$CHURN fds=$fds_before->$fds_after rss_kb=$rss_before->$rss_after"
    stop_all_providers
}

# 8. Soak: a steady rate for SOAK_SECONDS while providers restart in turn every minute; the
#    consumer's memory after the first minute grows less than 10 %, and no call is lost.
scenario_soak() {
    local name="soak" url seconds="${SOAK_SECONDS:-600}"
    url="$(registry_url zookeeper)"
    start_provider p1 "$url" && start_provider p2 "$url" && start_provider p3 "$url"
    RATE=500 start_load "$name" "$url" "$seconds" --method add
    local load="$LOAD_PID" elapsed=0 turn=0 rss_first="" rss_last=""
    while [ "$elapsed" -lt $((seconds - 10)) ]; do
        sleep 10
        elapsed=$((elapsed + 10))
        local rss
        rss="$(awk '/^VmRSS/ {print $2}' "/proc/$load/status" 2>/dev/null || echo 0)"
        [ "$elapsed" = 60 ] && rss_first="$rss"
        rss_last="$rss"
        if [ $((elapsed % 60)) = 0 ]; then
            local p="p$((turn % 3 + 1))"
            stop_provider "$p" TERM
            start_provider "$p" "$url"
            turn=$((turn + 1))
        fi
    done
    LOAD_PID=$load
    wait_load "$name"
    local ok=0
    [ "$FAILED_CALLS" = 0 ] && [ "$LOST" = 0 ] && [ -n "$rss_first" ] &&
        [ "$rss_last" -le $((rss_first * 110 / 100)) ] && ok=1
    report "$name" "$ok" "seconds=$seconds restarts=$turn consumer_rss_kb=$rss_first->$rss_last"
    stop_all_providers
}

# 9. A stalled network path: the consumer reaches one provider through `relay`, which stops
#    forwarding in both directions and keeps the sockets open. The consumer's idle timeout
#    (short here: heartbeat 200 ms, idle timeout 1 s) gives the silent connection up, calls
#    move to the other providers (calls already sent to it may time out: nothing else may
#    fail), and once the relay passes again the provider is reached again.
scenario_netfault() {
    local name="netfault" url log="$WORK/netfault-relay.log"
    url="$(registry_url zookeeper)"
    start_provider p1 "$url" && start_provider p2 "$url" && start_provider p3 "$url"
    : >"$log"
    "$BIN/relay" --listen 127.0.0.1:0 --target "${PROVIDER_ADDR[p3]}" >>"$log" 2>&1 &
    local relay_pid=$!
    SERVER_PIDS+=("$relay_pid")
    local i relay_addr=""
    for i in $(seq 1 100); do
        relay_addr="$(sed -n 's/^listening on \([^ ]*\).*/\1/p' "$log")"
        [ -n "$relay_addr" ] && break
        sleep 0.1
    done
    start_load "$name" "$url" "$LOAD_SECONDS" --method add --balancer leastactive \
        --timeout-ms 1000 --heartbeat-ms 200 --idle-timeout-ms 1000 \
        --addresses "${PROVIDER_ADDR[p1]},${PROVIDER_ADDR[p2]},$relay_addr"
    sleep 1
    local stalled
    stalled="$(now_ms)"
    kill -USR1 "$relay_pid"
    sleep "$((LOAD_SECONDS / 2))"
    local passed
    passed="$(now_ms)"
    kill -USR2 "$relay_pid"
    wait_load "$name"
    kill -TERM "$relay_pid" 2>/dev/null || true
    wait "$relay_pid" 2>/dev/null || true
    # When the consumer closed the stalled connection (the relay saw its client go).
    local detected
    detected="$(awk -v at="$stalled" '/^closed / && / by=client mode=stall / {
        split($NF, t, "="); if (t[2] >= at) { print t[2]; exit } }' "$log")"
    local share
    share="$(awk -v f="$FAILED_CALLS" -v c="$CALLS" 'BEGIN { printf "%.2f", c ? 100 * f / c : 100 }')"
    local ok=0
    [ -n "$relay_addr" ] && [ "$LOST" = 0 ] && [ "$FAILED_CALLS" = "$TIMEOUTS" ] &&
        [ "$CALLS" -gt 0 ] && [ -n "$detected" ] &&
        awk -v s="$share" 'BEGIN { exit !(s < 5) }' && ok=1
    report "$name" "$ok" "stall_detected_after_ms=${detected:+$((detected - stalled))} timeouts=$TIMEOUTS share_of_calls_failed_pct=$share"
    stop_all_providers
}

step() { printf '\n== %s (%s)\n' "$1" "$(date +%H:%M:%S)" >&2; }

step "ensembles"
start_zookeeper_ensemble
start_etcd_cluster
echo "zookeeper: $CHAOS_ZOOKEEPER  etcd: $CHAOS_ETCD" >&2

for kind in zookeeper etcd; do
    wanted "kill9-$kind" && { step "kill9-$kind"; scenario_kill9 "$kind"; }
done
wanted rolling-restart && { step rolling-restart; scenario_rolling; }
for kind in zookeeper etcd; do
    wanted "outage-$kind" && { step "outage-$kind"; scenario_outage "$kind"; }
done
for kind in zookeeper etcd; do
    wanted "leader-loss-$kind" && { step "leader-loss-$kind"; scenario_leader "$kind"; }
done
wanted session-expiry && { step session-expiry; scenario_session_expiry; }
wanted hung-provider && { step hung-provider; scenario_hung; }
wanted churn && { step churn; scenario_churn; }
wanted netfault && { step netfault; scenario_netfault; }
if [ "$SOAK" = 1 ]; then step soak; scenario_soak; fi

if [ "$FAILED" != 0 ]; then
    echo "chaos: some scenarios failed (logs in $WORK)" >&2
    exit 1
fi
echo "chaos: every scenario passed" >&2
