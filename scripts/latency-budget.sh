#!/usr/bin/env bash
# Latency budget of this gateway (issue 7, item 4): at a steady 2,000 Tasmota
# messages/s, publish-to-committed p99 (hot tier) and publish-to-stored p99
# (VictoriaMetrics), and the batch-size histogram from the gateway's /metrics at
# that light load and under the 200,000-message burst, which shows that batching
# adapts (one message per commit when traffic is light, large batches under load).
#
#   scripts/latency-budget.sh          # writes bench/results/latency-budget.{md,png,json}
#
# The same harness as scripts/bench-peers.sh (same recorded traffic, fresh
# Mosquitto and VictoriaMetrics, timing proxy, commit probe), with the gateway only.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
exec scripts/bench-peers.sh --scenarios steady,burst --peers gateway --out latency-budget "$@"
