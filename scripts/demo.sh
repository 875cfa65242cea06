#!/usr/bin/env bash
# The one-command demo: the whole pipeline on this machine.
#
#   ./scripts/demo.sh                 # build, start, print the dashboard address; Ctrl-C stops
#
# It builds the release binaries, starts the gateway with its bundled broker and hot tier,
# fills six hours of history for a simulated Hanoi fleet (so that charts and hourly AQI
# have data at once), keeps the same fleet reporting live every 10 s, prints the
# dashboard address, and prints live counts until Ctrl-C, which stops everything cleanly.
# The gateway runs the alert rules of scripts/demo-alerts.toml, and the live fleet has
# Wi-Fi outages and a few garbled packs, so that alerts fire and resolve on the
# dashboard's Alerts panel within minutes.
#
# Settings (environment variables):
#   DEMO_MQTT_PORT   broker port            (default 1883, or a free one when taken)
#   DEMO_HTTP_PORT   dashboard/API port     (default 8080, or a free one when taken)
#   DEMO_DATA_DIR    gateway state          (default ./demo-data; kept between runs)
#   DEMO_AIR, DEMO_WEATHER, DEMO_NOISE, DEMO_WIFI   devices per kind (60, 12, 20, 40)
#   DEMO_HISTORY     simulated history      (default 6h; 0 to skip)
#   DEMO_CONFIG      gateway configuration  (default scripts/demo-alerts.toml: alert rules)
#   DEMO_FAULTS      live fleet's faults    (default outage=0.001,malformed=0.001; none for a healthy fleet)
#
# Needs Rust (cargo) and, for the bundled broker, Debian's `mosquitto` package, which
# this script installs with apt-get when it is missing (see README: Design changes).

set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD

export DEBIAN_FRONTEND=noninteractive
DATA_DIR=${DEMO_DATA_DIR:-$ROOT/demo-data}
HISTORY=${DEMO_HISTORY:-6h}
CONFIG=${DEMO_CONFIG:-$ROOT/scripts/demo-alerts.toml}
FAULTS=${DEMO_FAULTS:-outage=0.001,malformed=0.001}
FLEET=(--air "${DEMO_AIR:-60}" --weather "${DEMO_WEATHER:-12}" --noise "${DEMO_NOISE:-20}"
    --wifi "${DEMO_WIFI:-40}" --mix tasmota=0.1,esphome=0.05,ultralight=0.05,line=0.05 --seed 7)

say() { printf '\033[1m%s\033[0m\n' "$*"; }
die() { printf 'demo: error: %s\n' "$*" >&2; exit 1; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"
    elif command -v sudo >/dev/null 2>&1; then sudo "$@"
    else die "need root to run: $*"; fi
}

# Whether something accepts connections on a local TCP port.
port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# The wanted port if it is free, else the first free one above it.
pick_port() {
    local p=$1
    while port_in_use "$p"; do p=$((p + 1)); done
    echo "$p"
}

command -v cargo >/dev/null 2>&1 || die "cargo not found: install Rust with rustup (https://rustup.rs)"
if [ ! -x /usr/sbin/mosquitto ] && [ -z "${GATEWAY_MOSQUITTO_BIN:-}" ]; then
    command -v apt-get >/dev/null 2>&1 || die "the bundled broker needs Mosquitto: install it (package mosquitto)"
    say "Installing Mosquitto for the bundled broker (apt-get install mosquitto)"
    as_root apt-get update -q </dev/null >/dev/null
    as_root apt-get install -y -q --no-install-recommends mosquitto </dev/null >/dev/null
fi

say "Building the gateway and the simulators (release)"
cargo build --release -q -p gateway -p simulators
# Where cargo put them: CARGO_TARGET_DIR when set, as cargo itself does.
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
GATEWAY=$TARGET_DIR/release/gateway
SIMULATORS=$TARGET_DIR/release/simulators

MQTT_PORT=$(pick_port "${DEMO_MQTT_PORT:-1883}")
HTTP_PORT=$(pick_port "${DEMO_HTTP_PORT:-8080}")
URL="http://127.0.0.1:$HTTP_PORT"
mkdir -p "$DATA_DIR"
LOGS=$DATA_DIR/logs
mkdir -p "$LOGS"

PIDS=()
stop_all() {
    trap - INT TERM EXIT
    printf '\n'
    say "Stopping (fleet first, then the gateway, which commits, acks and stops its broker)"
    local i pid
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
        pid=${PIDS[i]}
        kill -TERM "$pid" 2>/dev/null || continue
        for _ in $(seq 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    say "Stopped. State is kept in $DATA_DIR (logs in $LOGS)."
    exit 0
}
trap stop_all INT TERM EXIT

say "Starting the gateway: bundled broker on 127.0.0.1:$MQTT_PORT, HTTP on $URL"
[ -f "$CONFIG" ] || die "no configuration file $CONFIG (DEMO_CONFIG)"
"$GATEWAY" check-config --config "$CONFIG" >/dev/null || die "$CONFIG: not a valid configuration (above)"
"$GATEWAY" run --config "$CONFIG" --embedded-broker "127.0.0.1:$MQTT_PORT" --http "127.0.0.1:$HTTP_PORT" \
    --data-dir "$DATA_DIR" --log-format text >"$LOGS/gateway.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 300); do
    port_in_use "$HTTP_PORT" && port_in_use "$MQTT_PORT" && break
    kill -0 "${PIDS[0]}" 2>/dev/null || { tail -n 30 "$LOGS/gateway.log" >&2; die "the gateway exited (log above)"; }
    sleep 0.1
done
port_in_use "$HTTP_PORT" || die "the gateway did not open $URL in 30 s (see $LOGS/gateway.log)"

if [ "$HISTORY" != "0" ]; then
    START=$(date -u -d "-${HISTORY/h/ hours}" +%Y-%m-%dT%H:%M:%SZ 2>/dev/null || date -u -d '-6 hours' +%Y-%m-%dT%H:%M:%SZ)
    say "Simulating $HISTORY of history for the Hanoi fleet (as fast as the gateway takes it)"
    "$SIMULATORS" fleet --broker "127.0.0.1:$MQTT_PORT" "${FLEET[@]}" --speed max \
        --start "$START" --duration "$HISTORY" >"$LOGS/history.log" 2>&1 \
        || { tail -n 20 "$LOGS/history.log" >&2; die "the history run failed (log above)"; }
fi

LIVE_FAULTS=()
[ "$FAULTS" = none ] || LIVE_FAULTS=(--faults "$FAULTS")
say "Starting the live fleet (every device reports every 10 s; faults: $FAULTS)"
"$SIMULATORS" fleet --broker "127.0.0.1:$MQTT_PORT" "${FLEET[@]}" --period 10s --quiet \
    "${LIVE_FAULTS[@]}" >"$LOGS/fleet.log" 2>&1 &
PIDS+=($!)

cat <<EOF

  Dashboard:   $URL/
  Query API:   $URL/api/devices   (OpenAPI: $URL/api/openapi.json)
  Alerts:      $URL/api/alerts   (rules: $CONFIG)
  Metrics:     $URL/metrics
  MQTT broker: mqtt://127.0.0.1:$MQTT_PORT   (topics city/{district}/{kind}/{device}/up)
  From a terminal:  $GATEWAY query devices --url $URL
                    $GATEWAY query alerts --url $URL

  Press Ctrl-C to stop.

EOF

# Live counts from the gateway's own query API, every 10 s.
while true; do
    for pid in "${PIDS[@]}"; do
        kill -0 "$pid" 2>/dev/null || { tail -n 20 "$LOGS"/*.log >&2; die "a demo process exited (logs above)"; }
    done
    if csv=$("$GATEWAY" query stats --url "$URL" --format csv 2>/dev/null); then
        stat() { printf '%s\n' "$csv" | awk -F, -v k="$1" '$1 == k { print $2 }'; }
        firing=$("$GATEWAY" query alerts --url "$URL" --state firing --limit 1000 --format csv 2>/dev/null \
            | tail -n +2 | grep -c . || true)
        printf '%s  devices online %s/%s  readings/s %s  outbox %s  store lag %ss  dead letters (1 h) %s  alerts firing %s\n' \
            "$(date +%H:%M:%S)" "$(stat devices_online)" "$(stat devices)" "$(stat ingest_rate_per_s)" \
            "$(stat outbox_readings)" "$(stat store_lag_s)" "$(stat dead_letters_last_hour)" "${firing:-?}"
    fi
    sleep 10 &
    wait $! || true
done
