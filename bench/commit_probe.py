"""Watches the gateway's hot tier (read-only) and writes, for every commit it
sees, how many messages of each device it added and when: the timestamps that
give publish-to-committed latency (the hot tier has no commit-time column).
SQLite's data_version changes on every commit by another connection; between
commits the probe only runs that pragma, about every half millisecond.

Usage: commit_probe.py DATA_DIR OUT_CSV   (writes OUT_CSV on SIGTERM)
"""

import signal
import sqlite3
import sys
import time
from pathlib import Path

data_dir, out = Path(sys.argv[1]), sys.argv[2]
rows = []


def dump(*_):
    with open(out, "w") as f:
        f.write("device,messages,seen_ns\n")
        for r in rows:
            f.write(f"{r[0]},{r[1]},{r[2]}\n")
    sys.exit(0)


signal.signal(signal.SIGTERM, dump)
db = data_dir / "ingest.sqlite3"
while not db.exists():
    time.sleep(0.05)
conn = None
while conn is None:
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, isolation_level=None)
        conn.execute("SELECT 1 FROM devices LIMIT 1")
    except sqlite3.OperationalError:
        conn = None
        time.sleep(0.05)
counts = {}
version = None
while True:
    try:
        v = conn.execute("PRAGMA data_version").fetchone()[0]
        if v != version:
            seen = time.time_ns()
            version = v
            for device, messages in conn.execute("SELECT device, messages FROM devices"):
                delta = messages - counts.get(device, 0)
                if delta > 0:
                    rows.append((device, delta, seen))
                    counts[device] = messages
    except sqlite3.OperationalError:
        pass
    time.sleep(0.0005)
