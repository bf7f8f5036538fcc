#!/usr/bin/env bash
# A multi-node Ray cluster on this machine (a head and N worker nodes, each its own set of Ray
# processes) with token auth on and the dashboard on 127.0.0.1. Use it to try `taggant submit`
# without a real cluster.
#
#   cluster/local-cluster.sh start [WORKERS]   # default 2 worker nodes of WORKER_CPUS CPUs each
#   export RAY_AUTH_TOKEN_PATH=/tmp/taggant-local/auth_token   # `start` prints these two lines
#   taggant submit SPEC --address http://127.0.0.1:8290
#   cluster/local-cluster.sh stop
#
# Run it with the project's environment on PATH (e.g. `. .venv/bin/activate`): jobs run the
# `python` that sits beside `ray`. `stop` ends only the processes that `start` launched, by pid.
# `ray stop` would end every Ray instance on the machine.
# Settings (environment): TAGGANT_LOCAL_CLUSTER (state folder, default /tmp/taggant-local; keep it
# short, because Ray's socket paths are limited), GCS_PORT (6390), DASHBOARD_PORT (8290),
# CLIENT_PORT (10390), AGENT_PORT (52390; node i uses AGENT_PORT+i), WORKER_CPUS (1),
# START_TIMEOUT_S (90).
set -euo pipefail

ROOT=${TAGGANT_LOCAL_CLUSTER:-/tmp/taggant-local}
GCS_PORT=${GCS_PORT:-6390}
DASHBOARD_PORT=${DASHBOARD_PORT:-8290}
CLIENT_PORT=${CLIENT_PORT:-10390}
AGENT_PORT=${AGENT_PORT:-52390}
WORKER_CPUS=${WORKER_CPUS:-1}
START_TIMEOUT_S=${START_TIMEOUT_S:-90}

die() { echo "local-cluster: $*" >&2; exit 1; }

# Start one Ray node in its own session, record its pid, and wait until it reports it is up.
# `--block` keeps `ray start` in the foreground as the parent of the node's processes, which is
# what lets `stop` find them.
start_node() {
    local name=$1; shift
    setsid ray start --block --min-worker-port 0 --max-worker-port 0 --disable-usage-stats "$@" \
        >"$ROOT/$name.log" 2>&1 </dev/null &
    echo $! >>"$ROOT/pids"
    local waited=0
    until grep -qs "block forever" "$ROOT/$name.log"; do
        kill -0 "$!" 2>/dev/null || die "$name did not start: $(tail -n 20 "$ROOT/$name.log")"
        ((waited++ < START_TIMEOUT_S * 2)) || die "$name not up after ${START_TIMEOUT_S} s: see $ROOT/$name.log"
        sleep 0.5
    done
}

# A process and all its descendants (raylet → workers → job drivers), deepest first.
family() {
    local child
    for child in $(ps -o pid= --ppid "$1"); do family "$child"; done
    echo "$1"
}

start() {
    local workers=${1:-2}
    [[ -e $ROOT/pids ]] && die "already started (state in $ROOT); run '$0 stop' first"
    command -v ray >/dev/null || die "ray is not on PATH: activate the project's environment"
    mkdir -p "$ROOT"
    # Every process gets the mode and the token from the environment. The user's ~/.ray/auth_token
    # is never read or written.
    python -c 'import secrets; print(secrets.token_hex(32))' >"$ROOT/auth_token"
    chmod 600 "$ROOT/auth_token"
    export RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH=$ROOT/auth_token RAY_USAGE_STATS_ENABLED=0
    export PATH="$(dirname "$(command -v ray)"):$PATH"
    unset RAY_ADDRESS
    start_node head --head --port "$GCS_PORT" --num-cpus 0 --include-dashboard true \
        --dashboard-host 127.0.0.1 --dashboard-port "$DASHBOARD_PORT" \
        --ray-client-server-port "$CLIENT_PORT" --dashboard-agent-listen-port "$AGENT_PORT" \
        --temp-dir "$ROOT/ray"
    local i
    for ((i = 1; i <= workers; i++)); do
        # A temp dir per node: nodes sharing one would share runtime_resources/, and one node's
        # runtime-env cleanup would delete the unpacked job packages another node's job runs in.
        start_node "worker$i" --address "127.0.0.1:$GCS_PORT" --num-cpus "$WORKER_CPUS" \
            --dashboard-agent-listen-port $((AGENT_PORT + i)) --temp-dir "$ROOT/ray-w$i"
    done
    echo "Ray: a head (0 CPUs) and $workers worker node(s) of $WORKER_CPUS CPU(s); logs in $ROOT"
    echo "export RAY_AUTH_TOKEN_PATH=$ROOT/auth_token"
    echo "taggant submit SPEC --address http://127.0.0.1:$DASHBOARD_PORT"
}

stop() {
    [[ -e $ROOT/pids ]] || die "not started (no $ROOT/pids)"
    local pids=() pid
    for pid in $(tac "$ROOT/pids"); do  # workers before the head
        kill -0 "$pid" 2>/dev/null && pids+=($(family "$pid"))
    done
    ((${#pids[@]})) && kill -TERM "${pids[@]}" 2>/dev/null || true
    local waited=0
    while ((${#pids[@]})) && kill -0 "${pids[@]}" 2>/dev/null && ((waited++ < 40)); do sleep 0.5; done
    ((${#pids[@]})) && kill -KILL "${pids[@]}" 2>/dev/null || true
    rm -rf "$ROOT"
    echo "stopped"
}

case ${1:-} in
    start) shift; start "$@" ;;
    stop) stop ;;
    *) die "usage: $0 start [WORKERS] | stop" ;;
esac
