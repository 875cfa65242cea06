#!/usr/bin/env bash
# Browser test of the dashboard: starts the demo (broker, gateway with its hot tier, a
# simulated Hanoi fleet), loads the dashboard in Debian's headless Chromium through
# playwright-core, checks that the overview shows stations in AQI colours and that a
# chart drew data, that the Alerts panel lists the alerts of two rules that fire on
# this data (one station's PM2.5, one district's reporting count) and the map marks
# that station and district, and that the panel's empty state and resolved history
# render (from answers the test substitutes), and saves a screenshot to
# artifacts/dashboard.png. The gateway forwards to a VictoriaMetrics the script starts;
# the same page is then loaded once more from a query-only node (`gateway serve`) that
# answers from that store, with the same checks but the alerts' (a query-only node
# evaluates no rules: its Alerts panel shows the empty state), saving
# artifacts/dashboard-store.png.
#
# Installs what it needs when missing: `chromium` (apt-get) and playwright-core (npm, in
# tests/browser/). Bounded: the whole run is cut after BROWSER_TEST_TIMEOUT seconds
# (default 600), and every process it started is stopped on exit, pass or fail.
#
#   bash scripts/browser-test.sh            # what scripts/test.sh runs
#   KEEP=1 bash scripts/browser-test.sh     # keep the temp dir (logs, hot tier)

set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD

export DEBIAN_FRONTEND=noninteractive
readonly LIMIT="${BROWSER_TEST_TIMEOUT:-600}"
readonly CHROMIUM=/usr/bin/chromium

note() { printf '  - %s\n' "$*"; }
die() { printf 'browser-test: error: %s\n' "$*" >&2; exit 1; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"
    elif command -v sudo >/dev/null 2>&1; then sudo -n "$@"
    else die "need root to run: $* (install Debian's chromium package by hand)"; fi
}

# Re-run under a hard time limit, once. `timeout` sends TERM to this script, whose trap
# then stops the demo.
if [ -z "${BROWSER_TEST_BOUNDED:-}" ]; then
    export BROWSER_TEST_BOUNDED=1
    exec timeout --kill-after=20 "$LIMIT" bash "$0" "$@"
fi

# --- what it needs -------------------------------------------------------------------
if [ ! -x "$CHROMIUM" ]; then
    command -v apt-get >/dev/null 2>&1 || die "$CHROMIUM missing and no apt-get: install Debian's chromium package"
    note "installing chromium (apt-get)"
    as_root apt-get update -q </dev/null >/dev/null
    as_root apt-get install -y -q --no-install-recommends chromium </dev/null >/dev/null
fi
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    command -v apt-get >/dev/null 2>&1 || die "node/npm missing and no apt-get: install Node.js 20+"
    note "installing nodejs and npm (apt-get)"
    as_root apt-get update -q </dev/null >/dev/null
    as_root apt-get install -y -q --no-install-recommends nodejs npm </dev/null >/dev/null
fi
MOSQUITTO=/usr/sbin/mosquitto
VICTORIA=/usr/bin/victoria-metrics
[ -x "$VICTORIA" ] || die "$VICTORIA missing: apt-get install victoria-metrics"
if [ ! -d tests/browser/node_modules/playwright-core ]; then
    note "npm ci in tests/browser (playwright-core)"
    (cd tests/browser && npm ci --no-audit --no-fund --loglevel=error)
fi

note "building gateway and simulators"
cargo build -q -p gateway --bin gateway
# Where cargo put them: CARGO_TARGET_DIR when set, as cargo itself does.
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
SIMULATORS=""
if cargo build -q -p simulators --bin simulators 2>/dev/null; then
    SIMULATORS="$TARGET_DIR/debug/simulators"
fi
GATEWAY="$TARGET_DIR/debug/gateway"

# --- the demo ------------------------------------------------------------------------
WORK=$(mktemp -d /tmp/browser-test.XXXXXX)
PIDS=()
cleanup() {
    local rc=$?
    # Stop what this script started, newest first, by process id.
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
        kill -TERM "${PIDS[i]}" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if [ "$rc" -ne 0 ]; then
        for log in "$WORK"/*.log; do
            [ -f "$log" ] || continue
            printf '\n----- %s (last 30 lines) -----\n' "$(basename "$log")"
            tail -n 30 "$log"
        done
    fi
    if [ -n "${KEEP:-}" ]; then note "kept $WORK"; else rm -rf "$WORK"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Only bash and node are assumed (no python, no curl on a fresh Debian).
free_port() {
    node -e 'const s = require("net").createServer().listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close(); });'
}
http_ok() ( # port path: true when GET answers 200 (a subshell: a refused connection only fails it)
    exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
    printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' "$2" >&3
    IFS= read -r -t 5 line <&3 || true
    [[ "$line" == *" 200 "* ]]
) 2>/dev/null
wait_http() { # port path seconds pid
    for _ in $(seq $(($3 * 10))); do
        http_ok "$1" "$2" && return 0
        kill -0 "$4" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

MQTT_PORT=$(free_port)
HTTP_PORT=$(free_port)
VM_PORT=$(free_port)
SERVE_PORT=$(free_port)
URL="http://127.0.0.1:$HTTP_PORT"
STORE="http://127.0.0.1:$VM_PORT"
export GATEWAY_LOG_FORMAT=text

note "VictoriaMetrics on 127.0.0.1:$VM_PORT"
"$VICTORIA" -storageDataPath="$WORK/vm" -httpListenAddr="127.0.0.1:$VM_PORT" \
    -retentionPeriod=100y -search.latencyOffset=0s >"$WORK/victoria-metrics.log" 2>&1 &
PIDS+=($!)
wait_http "$VM_PORT" /health 60 "${PIDS[-1]}" || die "VictoriaMetrics did not start (see victoria-metrics.log)"

# Alert rules that fire at once on the simulated fleet: one station's PM2.5 above 0,
# and one district with fewer than 1000 air-quality stations reporting. The page must
# list both and mark that station (a ring) and that district (an outline) on its map.
ALERT_DEVICE=aq-0001
ALERT_DISTRICT=hoan-kiem
cat >"$WORK/alerts.toml" <<EOF
[alerts]
interval_s = 2

[[alerts.rules]]
name = "browser-test-station"
type = "metric"
metric = "pm25"
device = "$ALERT_DEVICE"
above = 0

[[alerts.rules]]
name = "browser-test-district"
type = "district-reporting"
district = "$ALERT_DISTRICT"
kind = "airquality"
at_least = 1000
EOF

# The gateway's embedded broker when this build has one; else Mosquitto.
note "gateway with the embedded broker on 127.0.0.1:$MQTT_PORT (alert rules: $WORK/alerts.toml)"
"$GATEWAY" run --config "$WORK/alerts.toml" --embedded-broker "127.0.0.1:$MQTT_PORT" \
    --http "127.0.0.1:$HTTP_PORT" --data-dir "$WORK/data" --store "$STORE" >"$WORK/gateway.log" 2>&1 &
PIDS+=($!)
if ! wait_http "$HTTP_PORT" /health/live 30 "${PIDS[-1]}"; then
    wait "${PIDS[-1]}" 2>/dev/null || true
    unset 'PIDS[-1]'
    [ -x "$MOSQUITTO" ] || die "no embedded broker in this build and $MOSQUITTO missing: apt-get install mosquitto"
    note "no embedded broker in this build: Mosquitto on 127.0.0.1:$MQTT_PORT"
    printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\nlog_type error\nlog_type warning\nmax_queued_messages 0\n' "$MQTT_PORT" >"$WORK/mosquitto.conf"
    "$MOSQUITTO" -c "$WORK/mosquitto.conf" >"$WORK/mosquitto.log" 2>&1 &
    PIDS+=($!)
    sleep 0.5
    "$GATEWAY" run --config "$WORK/alerts.toml" --mqtt "mqtt://127.0.0.1:$MQTT_PORT" \
        --http "127.0.0.1:$HTTP_PORT" --data-dir "$WORK/data" --store "$STORE" >"$WORK/gateway.log" 2>&1 &
    PIDS+=($!)
    wait_http "$HTTP_PORT" /health/live 30 "${PIDS[-1]}" || die "the gateway did not start (see gateway.log)"
fi

if [ -n "$SIMULATORS" ]; then
    # Three hours of a small Hanoi fleet, sent as fast as possible, so that the hourly
    # NowCast has hours to work on; then the same fleet live, every 5 s.
    START=$(date -u -d '-3 hours' +%Y-%m-%dT%H:%M:%SZ)
    note "simulators fleet: 3 h of history for 60 air-quality stations and 40 other devices"
    "$SIMULATORS" fleet --broker "127.0.0.1:$MQTT_PORT" --air 60 --weather 12 --noise 12 --wifi 16 \
        --speed max --start "$START" --duration 3h --quiet >"$WORK/history.log" 2>&1
    "$SIMULATORS" fleet --broker "127.0.0.1:$MQTT_PORT" --air 60 --weather 12 --noise 12 --wifi 16 \
        --period 5s --quiet >"$WORK/fleet.log" 2>&1 &
    PIDS+=($!)
else
    # gateway bench's devices are not the fleet's: no rule names them, the page must
    # show the Alerts panel's empty state instead.
    ALERT_DEVICE=""
    ALERT_DISTRICT=""
    note "no simulators binary: publishing 600 packs with gateway bench"
    "$GATEWAY" bench --mqtt "mqtt://127.0.0.1:$MQTT_PORT" --messages 600 --format senml \
        --devices 60 >"$WORK/bench.log" 2>&1 || true
fi

# --- the browser ---------------------------------------------------------------------
mkdir -p artifacts
note "loading $URL/ in headless Chromium"
# In the background and waited for, so that a TERM (the time limit) reaches the trap at
# once and the trap stops the browser too.
DASHBOARD_URL="$URL/" SCREENSHOT="$ROOT/artifacts/dashboard.png" CHROMIUM_PATH="$CHROMIUM" \
    ALERT_DEVICE="$ALERT_DEVICE" ALERT_DISTRICT="$ALERT_DISTRICT" \
    node tests/browser/dashboard.test.mjs &
PIDS+=($!)
wait "${PIDS[-1]}"
note "screenshot: artifacts/dashboard.png"

# --- the same page from a query-only node over the store -------------------------------
note "gateway serve (query-only) on 127.0.0.1:$SERVE_PORT, answering from $STORE"
"$GATEWAY" serve --store "$STORE" --http "127.0.0.1:$SERVE_PORT" >"$WORK/serve.log" 2>&1 &
PIDS+=($!)
wait_http "$SERVE_PORT" /health/ready 30 "${PIDS[-1]}" || die "gateway serve did not start (see serve.log)"
note "loading http://127.0.0.1:$SERVE_PORT/ in headless Chromium"
DASHBOARD_URL="http://127.0.0.1:$SERVE_PORT/" SCREENSHOT="$ROOT/artifacts/dashboard-store.png" \
    CHROMIUM_PATH="$CHROMIUM" ALERT_DEVICE="" ALERT_DISTRICT="" \
    node tests/browser/dashboard.test.mjs &
PIDS+=($!)
wait "${PIDS[-1]}"
note "screenshot: artifacts/dashboard-store.png"
