"""Timing proxy in front of the store: forwards every HTTP request to
VictoriaMetrics unchanged and, for each line of a successful
`POST /api/v2/write`, records when the store acknowledged it. This gives
publish-to-stored latency for any peer, without trusting the peer's own
figures. Keep-alive, Content-Length and chunked bodies, gzip.

Usage: proxy.py LISTEN_PORT UPSTREAM_PORT OUT_CSV   (writes OUT_CSV on SIGTERM)
Output rows: device,metric,ts_ms,ack_ns (first acknowledgement of each point).
"""

import asyncio
import gzip
import signal
import sys
import time
from urllib.parse import parse_qs, urlsplit

LISTEN, UPSTREAM, OUT = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
SCALE_TO_MS = {"ns": 1e-6, "us": 1e-3, "ms": 1.0, "s": 1000.0}
acks = []
raw = []


async def read_message(reader):
    """(start line, headers list, body) of one HTTP/1.1 message, or None at EOF."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head[:-4].split(b"\r\n")
    headers = [tuple(h.split(b":", 1)) for h in lines[1:] if b":" in h]
    hmap = {k.strip().lower(): v.strip() for k, v in headers}
    body = b""
    if hmap.get(b"transfer-encoding", b"").lower() == b"chunked":
        parts = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                break
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)
        body = b"".join(parts)
    elif b"content-length" in hmap:
        body = await reader.readexactly(int(hmap[b"content-length"]))
    return lines[0], headers, hmap, body


def rebuild(start, headers, body):
    keep = [
        (k, v)
        for k, v in headers
        if k.strip().lower() not in (b"transfer-encoding", b"content-length")
    ]
    out = [start] + [k + b":" + v for k, v in keep] + [b"Content-Length: %d" % len(body)]
    return b"\r\n".join(out) + b"\r\n\r\n" + body


def record(path, encoding, body, ack_ns):
    url = urlsplit(path.decode())
    if not url.path.startswith("/api/v2/write"):
        return
    precision = parse_qs(url.query).get("precision", ["ns"])[0]
    scale = SCALE_TO_MS.get(precision, 1e-6)
    if encoding.lower() == b"gzip":
        body = gzip.decompress(body)
    for line in body.split(b"\n"):
        if not line:
            continue
        try:
            series, _fields, ts = line.rsplit(b" ", 2)
            parts = series.split(b",")
            device = next(p[7:] for p in parts[1:] if p.startswith(b"device="))
            acks.append((device.decode(), parts[0].decode(), round(int(ts) * scale), ack_ns))
        except (ValueError, StopIteration):
            continue


async def handle(reader, writer):
    up_reader = up_writer = None
    try:
        while True:
            try:
                req = await read_message(reader)
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            start, headers, hmap, body = req
            if up_writer is None:
                up_reader, up_writer = await asyncio.open_connection("127.0.0.1", UPSTREAM)
            up_writer.write(rebuild(start, headers, body))
            await up_writer.drain()
            rstart, rheaders, rhmap, rbody = await read_message(up_reader)
            ack_ns = time.time_ns()
            writer.write(rebuild(rstart, rheaders, rbody))
            await writer.drain()
            if rstart.split(b" ")[1].startswith(b"2"):
                # Parsed at exit: the hot path only keeps the bytes.
                raw.append((start.split(b" ")[1], hmap.get(b"content-encoding", b""), body, ack_ns))
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()
        if up_writer is not None:
            up_writer.close()


def dump(*_):
    for r in raw:
        record(*r)
    seen = set()
    with open(OUT, "w") as f:
        f.write("device,metric,ts_ms,ack_ns\n")
        for device, metric, ts, ack in acks:
            if (device, metric, ts) not in seen:
                seen.add((device, metric, ts))
                f.write(f"{device},{metric},{ts},{ack}\n")
    sys.exit(0)


async def main():
    signal.signal(signal.SIGTERM, dump)
    server = await asyncio.start_server(handle, "127.0.0.1", LISTEN, backlog=4096)
    async with server:
        await server.serve_forever()


asyncio.run(main())
