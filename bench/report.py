"""Writes bench/results/latest.md (Markdown tables) and latest.png (chart) from
the JSON that run.py wrote.

Usage: report.py RESULTS_JSON
"""

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

src = Path(sys.argv[1])
data = json.loads(src.read_text())
m = data["machine"]
res = data["results"]
NAMES = {"gateway": "this gateway", "gateway-before": "this gateway, before the change (`--before`)", "nodered": "Node-RED + influxdb out", "python": "Python bridge (paho + influxdb-client)"}


def num(v, fmt="{:,.0f}"):
    return "n/a" if v is None else fmt.format(v)


def mib(v):
    return "n/a" if v is None else f"{v / 1048576:,.0f} MiB"


lines = [
    "# Latency budget of the gateway" if src.stem == "latency-budget" else "# Peer benchmark: latest results",
    "",
    f"Machine: {m['nproc']} CPUs ({m['cpu']}), {m['memory_gib']} GiB memory, Linux {m['kernel']}; "
    f"run {m['date_utc']}" + (f" at commit {m['commit']}" if m.get("commit") else "")
    + (f" (release gateway built {m['gateway_built_utc']})" if m.get("gateway_built_utc") else "") + ". One Mosquitto and one VictoriaMetrics on the same machine, fresh for "
    "each run; the same recorded traffic replayed for every peer (`scripts/bench-peers.sh`).",
    "",
]
for scenario, title in (
    ("burst", "Burst: 200,000 Tasmota messages (1,000,000 readings, 1,000 devices), replayed as fast as possible"),
    ("steady", "Steady: 2,000 Tasmota messages/s, replayed with the recorded timing"),
):
    rows = [r for r in res if r["scenario"] == scenario]
    if not rows:
        continue
    lines += [f"## {title}", ""]
    lines += [
        "| peer | readings stored / sent | lost | publish / drain time | sustained readings/s | CPU-s per million readings | peak RSS | publish-to-stored p50 / p99 | publish-to-committed p50 / p99 (hot tier) | receipt-to-durable p50 / p99 (log commit) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lost = r["readings_lost"]
        lost_s = "n/a" if lost is None else f"{lost:,} ({lost / max(r['readings_sent'], 1):.1%})"
        lines.append(
            f"| {NAMES[r['peer']]} | {num(r['readings_stored'])} / {num(r['readings_sent'])} | {lost_s} "
            f"| {num(r.get('publish_seconds'), '{:,.1f}')} s / {num(r['seconds'], '{:,.1f}')} s | {num(r['readings_per_s'])} | {num(r['cpu_s_per_million'], '{:,.2f}')} | {mib(r['peak_rss_bytes'])} "
            f"| {num(r['stored_p50_ms'], '{:,.1f}')} / {num(r['stored_p99_ms'], '{:,.1f}')} ms "
            f"| {num(r['committed_p50_ms'], '{:,.1f}')} / {num(r['committed_p99_ms'], '{:,.1f}')} ms "
            f"| {num(r.get('durable_p50_ms'), '{:,.2f}')} / {num(r.get('durable_p99_ms'), '{:,.2f}')} ms |"
        )
    lines.append("")
    for r in rows:
        h = r.get("batch_size_histogram")
        if h:
            prev = 0.0
            cells = []
            for le, count in h:
                cells.append(f"≤{le}: {count - prev:,.0f}")
                prev = count
            lines += [f"Batch sizes of {NAMES[r['peer']]} (messages per state transaction, from `/metrics` `batch_size`), {scenario}: "
                      + ", ".join(cells), ""]
lines += [
    "Definitions: *publish / drain time* = how long the replay took to publish everything "
    "(QoS 1, one connection: the pace the broker accepts) and how long until the store took the "
    "last point. *Sustained readings/s* = readings stored / seconds from the first publish to the "
    "last point the store took. *CPU-s per million* = user+system CPU of the peer's process only. "
    "*Peak RSS* = VmHWM of the peer's process. *Publish-to-stored* = from the replay handing the "
    "message to its MQTT client to the store acknowledging the HTTP write that held the reading "
    "(a timing proxy in front of VictoriaMetrics). *Publish-to-committed* = to the gateway's SQLite "
    "commit (read-only probe of the hot tier). *Receipt-to-durable* = from the gateway receiving a "
    "message to its log record being synced, the upper bound of the `/metrics` histogram bucket "
    "(builds with the message log only; add the broker's loopback hop for publish-to-durable). "
    "*Lost* = `simulators verify` against VictoriaMetrics.",
    "",
]
src.with_suffix(".md").write_text("\n".join(lines))

fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
for ax, (key, title, scale) in zip(
    axes,
    (
        ("readings_per_s", "Burst: sustained readings/s", 1),
        ("cpu_s_per_million", "Burst: CPU-seconds per million readings", 1),
        ("stored_p99_ms", "Steady 2,000 msg/s: publish-to-stored p99 (ms)", 1),
    ),
):
    scenario = "steady" if key == "stored_p99_ms" else "burst"
    rows = [r for r in res if r["scenario"] == scenario]
    labels = [r["peer"] for r in rows]
    values = [(r[key] or 0) * scale for r in rows]
    bars = ax.bar(labels, values, color=["#2a9d8f", "#e76f51", "#457b9d"][: len(rows)])
    for b, r in zip(bars, rows):
        lost = r["readings_lost"] or 0
        note = f"{b.get_height():,.0f}" if b.get_height() >= 10 else f"{b.get_height():,.2f}"
        if lost:
            note += f"\nlost {lost / max(r['readings_sent'], 1):.0%}"
        ax.annotate(note, (b.get_x() + b.get_width() / 2, b.get_height()), ha="center", va="bottom", fontsize=9)
    ax.set_title(title, fontsize=10, pad=14)
    ax.margins(y=0.2)
    if key != "readings_per_s" and any(v > 0 for v in values):
        ax.set_yscale("log")
fig.suptitle(f"Peer benchmark on {m['nproc']} CPUs ({m['cpu']}), {m['date_utc']}", fontsize=10)
fig.tight_layout()
fig.savefig(src.with_suffix(".png"), dpi=110)
print(src.with_suffix(".md").read_text())
