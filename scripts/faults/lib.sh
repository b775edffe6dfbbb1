# Shared by the fault scripts: a breakable TCP proxy (proxy.py) driven from
# the shell. Source it, then:
#     start_proxy LISTEN_PORT UPSTREAM_HOST:PORT CONTROL_FILE   (background; adds to PIDS)
#     proxy_set CONTROL_FILE blackhole|cut|up|"delay MS"      (returns once applied)

FAULTS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

start_proxy() {
    local port=$1 upstream=$2 control=$3
    echo up >"$control"
    rm -f "$control.state"
    python3 "$FAULTS_DIR/proxy.py" "$port" "$upstream" "$control" &
    PIDS="${PIDS:-} $!"
    for _ in $(seq 100); do
        [ -f "$control.state" ] && return 0
        sleep 0.05
    done
    echo "proxy on port $port did not start" >&2
    return 1
}

proxy_set() {
    local control=$1 word=$2
    echo "$word" >"$control"
    for _ in $(seq 200); do
        [ "$(cat "$control.state" 2>/dev/null)" = "$word" ] && return 0
        sleep 0.02
    done
    echo "proxy did not apply '$word'" >&2
    return 1
}
