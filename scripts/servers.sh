# Starts the servers the tests need, on 127.0.0.1 only, on ports picked now, as plain
# background processes stopped by PID when the calling script exits. Sourced by
# scripts/test.sh; usable by hand:
#
#   source scripts/servers.sh && start_zookeeper && start_etcd && cargo test -p registry
#
# Each start function takes the name of the variable to export (host:port), and exports
# its pid as VAR_PID too, so a test can stop (SIGSTOP) a server of its own for outage
# scenarios. The tests read RPC_TEST_ZOOKEEPER, RPC_TEST_ETCD, RPC_TEST_REDIS and their
# *_OUTAGE twins.
# A server that does not start fails the run: no test is skipped because its server is
# missing.

# A directory made here is removed when the run passes (the servers' data and logs, about
# 200 MB), and kept, for its logs, when it fails.
if [ -z "${SERVERS_DIR:-}" ]; then
    SERVERS_DIR="$(mktemp -d /tmp/rpc-servers.XXXXXX)"
    SERVERS_DIR_MADE=1
fi
SERVER_PIDS=()

stop_servers() {
    local status=$? pid
    for pid in "${SERVER_PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${SERVER_PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    SERVER_PIDS=()
    if [ "$status" -eq 0 ] && [ -n "${SERVERS_DIR_MADE:-}" ]; then
        rm -rf "$SERVERS_DIR"
    fi
}
trap stop_servers EXIT

# Installs Debian packages that are missing (as root, or through sudo).
install_packages() {
    local missing=()
    local package
    for package in "$@"; do
        dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
    done
    [ "${#missing[@]}" -eq 0 ] && return 0
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    echo "installing ${missing[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# A TCP port free on 127.0.0.1 right now (the OS picks it).
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# Waits until `check` succeeds, or fails naming the server and showing its log.
wait_until() {
    local name="$1" log="$2" check="$3" pid="$4"
    local i
    for i in $(seq 1 120); do
        if eval "$check" >/dev/null 2>&1; then
            echo "$name is up"
            return 0
        fi
        if ! kill -0 "$pid" 2>/dev/null; then
            break
        fi
        sleep 0.5
    done
    echo "error: $name did not start; its log:" >&2
    tail -50 "$log" >&2
    return 1
}

# Answers "imok" to ZooKeeper's four-letter "ruok" on host:port.
zookeeper_ok() {
    python3 - "$1" <<'PY'
import socket, sys
host, port = sys.argv[1].rsplit(":", 1)
s = socket.create_connection((host, int(port)), timeout=2)
s.sendall(b"ruok")
sys.exit(0 if s.recv(4) == b"imok" else 1)
PY
}

# The ZooKeeper server's class path from Debian's packages; jars a version lacks are left out.
zookeeper_classpath() {
    local classpath="/etc/zookeeper/conf" jar
    for jar in zookeeper zookeeper-jute slf4j-api slf4j-simple netty-handler netty-common \
        netty-buffer netty-transport netty-resolver netty-codec netty-transport-native-epoll \
        netty-transport-native-unix-common metrics-core commons-cli commons-io jline \
        audience-annotations snappy-java; do
        if [ -f "/usr/share/java/$jar.jar" ]; then
            classpath="$classpath:/usr/share/java/$jar.jar"
        fi
    done
    echo "$classpath"
}

# start_zookeeper [VAR]: one standalone ZooKeeper; exports VAR (default RPC_TEST_ZOOKEEPER).
start_zookeeper() {
    install_packages zookeeper default-jre-headless
    local var="${1:-RPC_TEST_ZOOKEEPER}"
    local dir="$SERVERS_DIR/$var"
    local port
    port="$(free_port)"
    mkdir -p "$dir/data"
    cat >"$dir/zoo.cfg" <<CFG
tickTime=500
initLimit=10
syncLimit=5
dataDir=$dir/data
clientPort=$port
clientPortAddress=127.0.0.1
maxClientCnxns=0
minSessionTimeout=1000
maxSessionTimeout=60000
4lw.commands.whitelist=ruok,stat,cons
admin.enableServer=false
CFG
    local classpath
    classpath="$(zookeeper_classpath)"
    java -cp "$classpath" -Dzookeeper.log.dir="$dir" -Dzookeeper.4lw.commands.whitelist=ruok,stat,cons \
        org.apache.zookeeper.server.quorum.QuorumPeerMain "$dir/zoo.cfg" >"$dir/log" 2>&1 &
    local pid=$!
    SERVER_PIDS+=("$pid")
    wait_until "ZooKeeper on 127.0.0.1:$port" "$dir/log" "zookeeper_ok 127.0.0.1:$port" "$pid" || return 1
    export "$var=127.0.0.1:$port"
    export "${var}_PID=$pid"
}

# start_etcd [VAR]: one single-member etcd; exports VAR (default RPC_TEST_ETCD).
start_etcd() {
    install_packages etcd-server
    local var="${1:-RPC_TEST_ETCD}"
    local name="etcd"
    local dir="$SERVERS_DIR/$var"
    local client peer
    client="$(free_port)"
    peer="$(free_port)"
    mkdir -p "$dir"
    etcd --name "$name" --data-dir "$dir/data" \
        --listen-client-urls "http://127.0.0.1:$client" --advertise-client-urls "http://127.0.0.1:$client" \
        --listen-peer-urls "http://127.0.0.1:$peer" --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
        --initial-cluster "$name=http://127.0.0.1:$peer" --initial-cluster-state new \
        >"$dir/log" 2>&1 &
    local pid=$!
    SERVER_PIDS+=("$pid")
    wait_until "etcd on 127.0.0.1:$client" "$dir/log" \
        "python3 -c 'import urllib.request,sys; sys.exit(0 if b\"true\" in urllib.request.urlopen(\"http://127.0.0.1:$client/health\", timeout=2).read() else 1)'" "$pid" || return 1
    export "$var=127.0.0.1:$client"
    export "${var}_PID=$pid"
}

# Answers "+PONG" to a Redis PING on host:port.
redis_ok() {
    python3 - "$1" <<'PY'
import socket, sys
host, port = sys.argv[1].rsplit(":", 1)
s = socket.create_connection((host, int(port)), timeout=2)
s.sendall(b"PING\r\n")
sys.exit(0 if s.recv(7).startswith(b"+PONG") else 1)
PY
}

# start_redis [VAR]: one redis-server with no persistence; exports VAR (default RPC_TEST_REDIS).
start_redis() {
    install_packages redis-server
    local var="${1:-RPC_TEST_REDIS}"
    local dir="$SERVERS_DIR/$var"
    local port
    port="$(free_port)"
    mkdir -p "$dir"
    redis-server --bind 127.0.0.1 --port "$port" --save "" --appendonly no --dir "$dir" \
        --daemonize no >"$dir/log" 2>&1 &
    local pid=$!
    SERVER_PIDS+=("$pid")
    wait_until "Redis on 127.0.0.1:$port" "$dir/log" "redis_ok 127.0.0.1:$port" "$pid" || return 1
    export "$var=127.0.0.1:$port"
    export "${var}_PID=$pid"
}

# Answers 200 on http://host:port/status (a WebDriver server that is ready).
webdriver_ok() {
    python3 - "$1" <<'PY'
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1] + "/status", timeout=2) as r:
    sys.exit(0 if r.status == 200 else 1)
PY
}

# start_chromedriver [VAR]: Debian's chromedriver (driving Debian's chromium, headless,
# as the admin dashboard test asks for it); exports VAR (default RPC_TEST_CHROMEDRIVER)
# as http://127.0.0.1:PORT.
start_chromedriver() {
    install_packages chromium chromium-driver
    local var="${1:-RPC_TEST_CHROMEDRIVER}"
    local dir="$SERVERS_DIR/$var"
    mkdir -p "$dir"
    local port
    port="$(free_port)"
    chromedriver --port="$port" --allowed-ips=127.0.0.1 --log-path="$dir/chromedriver.log" \
        >"$dir/stdout.log" 2>&1 &
    local pid=$!
    SERVER_PIDS+=("$pid")
    wait_until chromedriver "$dir/stdout.log" "webdriver_ok http://127.0.0.1:$port" "$pid"
    export "$var=http://127.0.0.1:$port"
    export "${var}_PID=$pid"
}

# A Python virtualenv with grpcio and grpcio-tools (a stock gRPC implementation for the
# HTTP/2 interop tests), made once and kept in $RPC_GRPC_VENV (default
# ~/.cache/rpc-grpc-venv); exports its python as $1
# (default RPC_TEST_GRPC_PYTHON). Fails the run if it cannot be made.
python_grpc_venv() {
    local var="${1:-RPC_TEST_GRPC_PYTHON}"
    local venv="${RPC_GRPC_VENV:-$HOME/.cache/rpc-grpc-venv}"
    python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || install_packages python3-venv
    if ! "$venv/bin/python" -c 'import grpc, grpc_tools' >/dev/null 2>&1; then
        python3 -m venv "$venv"
        "$venv/bin/pip" install -q --disable-pip-version-check grpcio grpcio-tools
    fi
    "$venv/bin/python" -c 'import grpc, grpc_tools; print("grpcio", grpc.__version__)'
    export "$var=$venv/bin/python"
}
