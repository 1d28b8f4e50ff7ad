#!/usr/bin/env bash
# Runs R replicas of `model-manager serve` on this machine behind HAProxy, all on 127.0.0.1:
#
#     deploy/fleet/run-local.sh R [serve options...]
#
# The replicas share one SQLite registry (WAL mode lets several processes use it) and one
# store folder under $MM_FLEET_DATA; HAProxy (deploy/haproxy/haproxy.cfg, with one `server` line
# per replica added) listens on $MM_FLEET_PORT and routes each model to one replica. The script
# waits until every replica and HAProxy answer, prints the entry URL, and runs until Ctrl-C or
# SIGTERM, which stops every process it started. It exits early, stopping the rest, if HAProxy
# dies; a replica that dies is left out by HAProxy's health checks.
#
# Environment:
#   MM_FLEET_PORT     HAProxy's port (default 8080)
#   MM_FLEET_DATA     registry, store, each replica's data dir, logs, the HAProxy config and
#                     the `replicas` file ("name url pid grpc-address" a line) (default
#                     ./var/fleet); HAProxy routes HTTP only, each replica's gRPC port is its own
#   MM_BUDGET         each replica's --memory-budget, e.g. 1GiB (default: serve's)
#   MM_FLEET_BALANCE  replaces the model backend's `balance` line, e.g. roundrobin to compare
#   MODEL_MANAGER     the model-manager command (default: from PATH)
#   HAPROXY           the haproxy command (default: from PATH)
set -euo pipefail

usage() { echo "usage: $0 REPLICAS [serve options...]" >&2; exit 2; }
[[ $# -ge 1 && $1 =~ ^[1-9][0-9]*$ ]] || usage
replicas=$1
shift

model_manager=${MODEL_MANAGER:-model-manager}
haproxy=${HAPROXY:-haproxy}
export MM_FLEET_PORT=${MM_FLEET_PORT:-8080}
data=${MM_FLEET_DATA:-./var/fleet}
template="$(cd "$(dirname "${BASH_SOURCE[0]}")/../haproxy" && pwd)/haproxy.cfg"
mkdir -p "$data"
data=$(cd "$data" && pwd)

pids=()
stopping=0

# Whether process $1 runs (a zombie, ended but not yet waited for, does not).
alive() { local state; state=$(ps -o stat= -p "$1") && [[ $state != Z* ]]; }

# TERM to every process started, KILL to any still there after the replicas' shutdown timeout.
stop() {
    [[ $stopping == 1 ]] && return
    stopping=1
    local pid deadline=$((SECONDS + 35))
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do
        while alive "$pid" && ((SECONDS < deadline)); do sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
    done
    wait 2>/dev/null || true
}
trap 'stop; exit 130' INT
trap 'stop; exit 143' TERM
trap stop EXIT

taken=" $MM_FLEET_PORT "
is_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
# Ports are drawn below the kernel's ephemeral range, which it hands out to every bind(0) and
# outgoing connection: a port drawn here and bound a moment later is then not taken meanwhile.
read -r ephemeral _ < /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || ephemeral=32768
(( ephemeral > 12000 )) || ephemeral=32768
free_port() {
    local port
    while :; do
        port=$((10000 + RANDOM % (ephemeral - 10000)))
        if [[ $taken != *" $port "* ]] && is_free "$port"; then
            taken+="$port "
            echo "$port"
            return
        fi
    done
}

# Waits until $2 answers 200, while process $1 lives; fails after 60 s.
wait_ready() {
    local pid=$1 url=$2 deadline=$((SECONDS + 60))
    until curl -sf -o /dev/null --max-time 1 "$url"; do
        alive "$pid" || { echo "exited before answering $url" >&2; return 1; }
        ((SECONDS < deadline)) || { echo "no answer from $url within 60 s" >&2; return 1; }
        sleep 0.1
    done
}

: > "$data/replicas"
servers=""
for i in $(seq 1 "$replicas"); do
    port=$(free_port)
    grpc_port=$(free_port)
    mkdir -p "$data/r$i"
    "$model_manager" serve --host 127.0.0.1 --port "$port" --grpc-port "$grpc_port" \
        --data-dir "$data/r$i" --db-url "sqlite:///$data/registry.db" --store-url "$data/store" \
        ${MM_BUDGET:+--memory-budget "$MM_BUDGET"} "$@" > "$data/r$i.log" 2>&1 &
    pids+=($!)
    echo "r$i http://127.0.0.1:$port $! 127.0.0.1:$grpc_port" >> "$data/replicas"
    servers+="    server r$i 127.0.0.1:$port\n"
done

while read -r name url pid _; do
    wait_ready "$pid" "$url/v2/health/ready" || { tail -n 20 "$data/$name.log" >&2; exit 1; }
done < "$data/replicas"

awk -v servers="$servers" -v balance="${MM_FLEET_BALANCE:-}" '
    balance != "" && $1 == "balance" && $2 == "uri" { print "    balance " balance; next }
    { print }
    $1 == "#" && $2 == "servers" && NF == 2 { printf "%s", servers }
' "$template" > "$data/haproxy.cfg"
"$haproxy" -c -q -f "$data/haproxy.cfg"
"$haproxy" -db -f "$data/haproxy.cfg" > "$data/haproxy.log" 2>&1 &
haproxy_pid=$!
pids+=("$haproxy_pid")
wait_ready "$haproxy_pid" "http://127.0.0.1:$MM_FLEET_PORT/v2/health/ready" \
    || { cat "$data/haproxy.log" >&2; exit 1; }

echo "$replicas replicas behind http://127.0.0.1:$MM_FLEET_PORT"
echo "(registry, store, logs and haproxy.cfg in $data; Ctrl-C stops everything)"
wait "$haproxy_pid" || true
echo "haproxy exited; stopping the replicas" >&2
exit 1
