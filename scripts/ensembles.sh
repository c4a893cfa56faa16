# Three-member ZooKeeper and etcd clusters on 127.0.0.1 for scripts/chaos.sh, sourced after
# scripts/servers.sh (whose install_packages, free_port, wait_until and SERVER_PIDS cleanup
# it uses). Every member keeps its start command in $dir/run, so a scenario can stop a
# member, or all of them, and start it again with the same data and ports:
#
#   start_zookeeper_ensemble        exports CHAOS_ZOOKEEPER=h:p,h:p,h:p
#   start_etcd_cluster              exports CHAOS_ETCD=h:p,h:p,h:p
#   member_stop zookeeper 2 [SIG]   stop member 2 (default SIGKILL)
#   member_start zookeeper 2        start it again and wait until it answers
#   ensemble_stop etcd / ensemble_start etcd
#   zookeeper_leader / etcd_leader  print the leader's member number

ENSEMBLE_DIR="$SERVERS_DIR/ensembles"

# Answers 0 when the ZooKeeper member at host:port serves (leader or follower).
zookeeper_serving() {
    python3 - "$1" <<'PY'
import socket, sys
host, port = sys.argv[1].rsplit(":", 1)
s = socket.create_connection((host, int(port)), timeout=2)
s.sendall(b"srvr")
data = b""
while True:
    chunk = s.recv(4096)
    if not chunk:
        break
    data += chunk
sys.exit(0 if b"Mode: leader" in data or b"Mode: follower" in data else 1)
PY
}

zookeeper_is_leader() {
    python3 - "$1" <<'PY'
import socket, sys
host, port = sys.argv[1].rsplit(":", 1)
try:
    s = socket.create_connection((host, int(port)), timeout=2)
    s.sendall(b"srvr")
    data = b""
    while True:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
except OSError:
    sys.exit(1)
sys.exit(0 if b"Mode: leader" in data else 1)
PY
}

# The etcd member at host:port is healthy (it has a leader).
etcd_healthy() {
    python3 -c 'import urllib.request,sys; sys.exit(0 if b"\"health\":\"true\"" in urllib.request.urlopen("http://'"$1"'/health", timeout=2).read() else 1)'
}

etcd_is_leader() {
    python3 - "$1" <<'PY'
import json, sys, urllib.request
try:
    request = urllib.request.Request("http://%s/v3/maintenance/status" % sys.argv[1], data=b"{}",
                                     headers={"Content-Type": "application/json"})
    status = json.load(urllib.request.urlopen(request, timeout=2))
except Exception:
    sys.exit(1)
sys.exit(0 if status.get("leader") == status.get("header", {}).get("member_id") else 1)
PY
}

start_zookeeper_ensemble() {
    install_packages zookeeper default-jre-headless
    local i servers="" clients=() classpath
    classpath="$(zookeeper_classpath)"
    for i in 1 2 3; do
        clients[$i]="$(free_port)"
        servers="${servers}server.$i=127.0.0.1:$(free_port):$(free_port)"$'\n'
    done
    for i in 1 2 3; do
        local dir="$ENSEMBLE_DIR/zookeeper-$i"
        mkdir -p "$dir/data"
        echo "$i" >"$dir/data/myid"
        cat >"$dir/zoo.cfg" <<CFG
tickTime=500
initLimit=20
syncLimit=5
dataDir=$dir/data
clientPort=${clients[$i]}
clientPortAddress=127.0.0.1
maxClientCnxns=0
minSessionTimeout=1000
maxSessionTimeout=60000
4lw.commands.whitelist=ruok,stat,cons,srvr
admin.enableServer=false
$servers
CFG
        echo "127.0.0.1:${clients[$i]}" >"$dir/address"
        cat >"$dir/run" <<RUN
exec java -cp "$classpath" -Dzookeeper.log.dir="$dir" -Dzookeeper.4lw.commands.whitelist=ruok,stat,cons,srvr \
    org.apache.zookeeper.server.quorum.QuorumPeerMain "$dir/zoo.cfg" >>"$dir/log" 2>&1
RUN
    done
    ensemble_start zookeeper
    export CHAOS_ZOOKEEPER="127.0.0.1:${clients[1]},127.0.0.1:${clients[2]},127.0.0.1:${clients[3]}"
}

start_etcd_cluster() {
    install_packages etcd-server
    local i initial="" clients=() peers=()
    for i in 1 2 3; do
        clients[$i]="$(free_port)"
        peers[$i]="$(free_port)"
        initial="${initial:+$initial,}m$i=http://127.0.0.1:${peers[$i]}"
    done
    for i in 1 2 3; do
        local dir="$ENSEMBLE_DIR/etcd-$i"
        mkdir -p "$dir"
        echo "127.0.0.1:${clients[$i]}" >"$dir/address"
        # --initial-cluster-state new only matters on the first start; later starts reuse
        # the data directory.
        cat >"$dir/run" <<RUN
exec etcd --name m$i --data-dir "$dir/data" \
    --listen-client-urls http://127.0.0.1:${clients[$i]} --advertise-client-urls http://127.0.0.1:${clients[$i]} \
    --listen-peer-urls http://127.0.0.1:${peers[$i]} --initial-advertise-peer-urls http://127.0.0.1:${peers[$i]} \
    --initial-cluster "$initial" --initial-cluster-state new --initial-cluster-token chaos \
    --heartbeat-interval 100 --election-timeout 1000 >>"$dir/log" 2>&1
RUN
    done
    ensemble_start etcd
    export CHAOS_ETCD="127.0.0.1:${clients[1]},127.0.0.1:${clients[2]},127.0.0.1:${clients[3]}"
}

member_dir() { echo "$ENSEMBLE_DIR/$1-$2"; }

# member_launch KIND N: starts member N in the background, without waiting.
member_launch() {
    local dir
    dir="$(member_dir "$1" "$2")"
    bash "$dir/run" &
    local pid=$!
    echo "$pid" >"$dir/pid"
    SERVER_PIDS+=("$pid")
}

member_wait() {
    local dir check
    dir="$(member_dir "$1" "$2")"
    case "$1" in
    zookeeper) check="zookeeper_serving $(cat "$dir/address")" ;;
    etcd) check="etcd_healthy $(cat "$dir/address")" ;;
    esac
    wait_until "$1 member $2 on $(cat "$dir/address")" "$dir/log" "$check" "$(cat "$dir/pid")"
}

member_start() {
    member_launch "$1" "$2"
    member_wait "$1" "$2"
}

member_stop() {
    local dir pid
    dir="$(member_dir "$1" "$2")"
    pid="$(cat "$dir/pid" 2>/dev/null || true)"
    [ -n "$pid" ] || return 0
    kill "-${3:-KILL}" "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    rm -f "$dir/pid"
}

# A quorum needs two members up before any answers: launch all three, then wait.
ensemble_start() {
    local i
    for i in 1 2 3; do member_launch "$1" "$i"; done
    for i in 1 2 3; do member_wait "$1" "$i" || return 1; done
}

ensemble_stop() {
    local i
    for i in 1 2 3; do member_stop "$1" "$i" "${2:-KILL}"; done
}

# Prints the number of the member that leads now (waits up to 30 s for an election).
ensemble_leader() {
    local i try
    for try in $(seq 1 60); do
        for i in 1 2 3; do
            if "${1}_is_leader" "$(cat "$(member_dir "$1" "$i")/address")"; then
                echo "$i"
                return 0
            fi
        done
        sleep 0.5
    done
    echo "error: no $1 leader" >&2
    return 1
}
