#!/usr/bin/env bash
# A multi-node Ray cluster on this machine (a head and N worker nodes, each its own set of Ray
# processes) with token auth on and the dashboard on 127.0.0.1. Use it to try `taggant submit`
# without a real cluster.
#
#   cluster/local-cluster.sh start [WORKERS]   # default 2 worker nodes of WORKER_CPUS CPUs each
#   export RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH=/tmp/taggant-local/auth_token  # `start` prints
#   taggant submit SPEC --address http://127.0.0.1:8290   # these two lines (the mode: `ray job`)
#   cluster/local-cluster.sh node I             # (re)start worker node I, e.g. after it was killed
#   cluster/local-cluster.sh stop
#
# Run it with the project's environment on PATH (e.g. `. .venv/bin/activate`): jobs run the
# `python` that sits beside `ray`. `stop` ends only the processes of the nodes that `start` and
# `node` launched, by session id. `ray stop` would end every Ray instance on the machine.
# Settings (environment): TAGGANT_LOCAL_CLUSTER (state folder, default /tmp/taggant-local; keep it
# short, because Ray's socket paths are limited), GCS_PORT (6390), DASHBOARD_PORT (8290),
# CLIENT_PORT (10390), AGENT_PORT (52390; node i uses AGENT_PORT+i), WORKER_CPUS (1),
# START_TIMEOUT_S (90), SETTLE_S (5: how long a new node must stay up to count as started).
set -euo pipefail

ROOT=${TAGGANT_LOCAL_CLUSTER:-/tmp/taggant-local}
GCS_PORT=${GCS_PORT:-6390}
DASHBOARD_PORT=${DASHBOARD_PORT:-8290}
CLIENT_PORT=${CLIENT_PORT:-10390}
AGENT_PORT=${AGENT_PORT:-52390}
WORKER_CPUS=${WORKER_CPUS:-1}
START_TIMEOUT_S=${START_TIMEOUT_S:-90}
SETTLE_S=${SETTLE_S:-5}

die() { echo "local-cluster: $*" >&2; exit 1; }

# Start one Ray node in its own session, record its pid (the session's id), and wait until it is
# up. `--block` keeps `ray start` in the foreground as the session leader, which is what lets
# `stop` find the node's processes. Ray gives a node's processes 30 s to register with the GCS;
# on a loaded machine one can miss that and the node dies, so a node that dies while starting is
# started again (three tries).
start_node() {
    local name=$1; shift
    local attempt
    for attempt in 1 2 3; do
        setsid ray start --block --min-worker-port 0 --max-worker-port 0 --disable-usage-stats "$@" \
            >"$ROOT/$name.log" 2>&1 </dev/null &
        echo $! >>"$ROOT/pids"
        node_up "$name" "$!" && return
        kill_session "$!"
        echo "local-cluster: $name died while starting (try $attempt of 3)" >&2
    done
    die "$name did not start: $(tail -n 20 "$ROOT/$name.log")"
}

# Whether node $1 (session $2) came up: it said it blocks and still runs SETTLE_S seconds later.
node_up() {
    local waited=0
    until grep -qs "block forever" "$ROOT/$1.log"; do
        kill -0 "$2" 2>/dev/null || return 1
        ((waited++ < START_TIMEOUT_S * 2)) || die "$1 not up after ${START_TIMEOUT_S} s: see $ROOT/$1.log"
        sleep 0.5
    done
    sleep "$SETTLE_S"
    kill -0 "$2" 2>/dev/null
}

# Every process of the node whose session is $1 (raylet, workers, job drivers), even those the
# session leader left behind.
session() { ps -o pid= -s "$1" || true; }

# End the processes of session $1: TERM, then KILL what is left after 20 s.
kill_session() {
    local pids=($(session "$1")) waited=0
    ((${#pids[@]})) || return 0
    kill -TERM "${pids[@]}" 2>/dev/null || true
    while kill -0 "${pids[@]}" 2>/dev/null && ((waited++ < 40)); do sleep 0.5; done
    kill -KILL "${pids[@]}" 2>/dev/null || true
}

# Every process gets the mode and the token from the environment. The user's ~/.ray/auth_token
# is never read or written.
node_env() {
    command -v ray >/dev/null || die "ray is not on PATH: activate the project's environment"
    export RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH=$ROOT/auth_token RAY_USAGE_STATS_ENABLED=0
    export PATH="$(dirname "$(command -v ray)"):$PATH"
    unset RAY_ADDRESS
}

# A temp dir per node: nodes sharing one would share runtime_resources/, and one node's
# runtime-env cleanup would delete the unpacked job packages another node's job runs in.
start_worker() {
    start_node "worker$1" --address "127.0.0.1:$GCS_PORT" --num-cpus "$WORKER_CPUS" \
        --dashboard-agent-listen-port $((AGENT_PORT + $1)) --temp-dir "$ROOT/ray-w$1"
}

start() {
    local workers=${1:-2}
    [[ -e $ROOT/pids ]] && die "already started (state in $ROOT); run '$0 stop' first"
    mkdir -p "$ROOT"
    node_env
    python -c 'import secrets; print(secrets.token_hex(32))' >"$ROOT/auth_token"
    chmod 600 "$ROOT/auth_token"
    start_node head --head --port "$GCS_PORT" --num-cpus 0 --include-dashboard true \
        --dashboard-host 127.0.0.1 --dashboard-port "$DASHBOARD_PORT" \
        --ray-client-server-port "$CLIENT_PORT" --dashboard-agent-listen-port "$AGENT_PORT" \
        --temp-dir "$ROOT/ray"
    local i
    for ((i = 1; i <= workers; i++)); do start_worker "$i"; done
    echo "Ray: a head (0 CPUs) and $workers worker node(s) of $WORKER_CPUS CPU(s); logs in $ROOT"
    # Ray's CLI (`ray job logs|status|stop`) sends the token only with the mode set as well.
    echo "export RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH=$ROOT/auth_token"
    echo "taggant submit SPEC --address http://127.0.0.1:$DASHBOARD_PORT"
}

# Start worker node I again (its processes died: a crash, a test's kill) with the same settings.
node() {
    local i=${1:-}
    [[ $i =~ ^[1-9][0-9]*$ ]] || die "usage: $0 node I (a worker number, 1 or more)"
    [[ -e $ROOT/pids ]] || die "not started (no $ROOT/pids)"
    pgrep -f -- "--temp-dir $ROOT/ray-w$i( |\$)" >/dev/null && die "worker $i is still running"
    node_env
    start_worker "$i"
    echo "worker $i started"
}

stop() {
    [[ -e $ROOT/pids ]] || die "not started (no $ROOT/pids)"
    local pid
    for pid in $(tac "$ROOT/pids"); do kill_session "$pid"; done  # workers before the head
    rm -rf "$ROOT"
    echo "stopped"
}

case ${1:-} in
    start) shift; start "$@" ;;
    node) shift; node "$@" ;;
    stop) stop ;;
    *) die "usage: $0 start [WORKERS] | node I | stop" ;;
esac
