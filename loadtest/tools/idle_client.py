"""Opens N keep-alive connections through a proxy, sends one small request on each and reads
its response, keeps them all idle, reports the proxy's RSS growth per connection (from /proc),
then closes them all at once and samples the proxy's RSS every INTERVAL s for AFTER s.
Prints one line of key=value pairs; `after_kb` is the comma-separated samples after closing.

    idle_client.py N PORT PIDS [tls|h2]

h2: TLS with ALPN h2 only; one GET stream per connection (frames written here, HPACK literals).

Env: CONC (connections opened at once, 20), SETTLE (s before measuring, 3), INTERVAL (0.5),
AFTER (15)."""
import asyncio
import os
import re
import ssl
import sys
import time

N, PORT = int(sys.argv[1]), int(sys.argv[2])
PIDS = [int(p) for p in sys.argv[3].split(",")]
MODE = sys.argv[4] if len(sys.argv) > 4 else "plain"
TLS = MODE in ("tls", "h2")
REQ = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"
INTERVAL = float(os.environ.get("INTERVAL", "0.5"))
AFTER = float(os.environ.get("AFTER", "15"))


def rss_kb():
    return sum(int(re.search(r"VmRSS:\s+(\d+)", open(f"/proc/{p}/status").read()).group(1)) for p in PIDS)


def context():
    if not TLS:
        return None
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    if MODE == "h2":
        ctx.set_alpn_protocols(["h2"])
    return ctx


def frame(kind, flags, stream, payload=b""):
    return len(payload).to_bytes(3, "big") + bytes([kind, flags]) + stream.to_bytes(4, "big") + payload


# GET https://bench/ on stream 1: static-table :method GET, :scheme https, :path /, and
# :authority as a literal with the static name (RFC 7541 §6.2.2).
H2_GET = frame(1, 0x5, 1, b"\x82\x87\x84\x01\x05bench")
H2_START = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(4, 0, 0) + H2_GET


async def h2_exchange(r, w):
    """One GET; True once stream 1 ended with a 200 (`:status: 200` is static index 8)."""
    w.write(H2_START)
    await w.drain()
    status = None
    while True:
        head = await asyncio.wait_for(r.readexactly(9), 10)
        n, kind, flags = int.from_bytes(head[:3], "big"), head[3], head[4]
        stream = int.from_bytes(head[5:9], "big") & 0x7FFFFFFF
        payload = await asyncio.wait_for(r.readexactly(n), 10)
        if kind == 4 and not flags & 1:
            w.write(frame(4, 1, 0))  # SETTINGS ack
        elif kind == 7:
            return False  # GOAWAY
        elif stream == 1 and kind == 1 and status is None:
            status = payload[:1] == b"\x88"
        if stream == 1 and kind in (0, 1) and flags & 1:
            await w.drain()
            return bool(status)


async def main():
    conns, failed = [], 0
    sem = asyncio.Semaphore(int(os.environ.get("CONC", "20")))
    ctx = context()

    async def one():
        nonlocal failed
        async with sem:
            try:
                r, w = await asyncio.open_connection("127.0.0.1", PORT, ssl=ctx)
                if MODE == "h2":
                    if await h2_exchange(r, w):
                        conns.append(w)
                    else:
                        failed += 1
                        w.close()
                    return
                w.write(REQ)
                await w.drain()
                head = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), 10)
                m = re.search(rb"(?i)content-length:\s*(\d+)", head)
                if not head.startswith(b"HTTP/1.1 200") or not m:
                    failed += 1
                    w.close()
                    return
                await asyncio.wait_for(r.readexactly(int(m.group(1))), 10)
                conns.append(w)
            except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ssl.SSLError):
                failed += 1

    await one()  # warm-up connection, part of the baseline
    await asyncio.sleep(1)
    r0 = rss_kb()
    await asyncio.gather(*[one() for _ in range(N)])
    await asyncio.sleep(float(os.environ.get("SETTLE", "3")))
    r1 = rss_kb()
    opened = len(conns) - 1
    per = (r1 - r0) * 1024 / max(opened, 1)
    for w in conns:
        w.transport.abort()
    start = time.monotonic()
    samples = []
    while (t := time.monotonic() - start) <= AFTER + 1e-6:
        samples.append(rss_kb())
        await asyncio.sleep(max(0.0, INTERVAL * len(samples) - (time.monotonic() - start)))
    print(f"opened={opened} failed={failed} base_kb={r0} peak_kb={r1} rss_per_conn_bytes={per:.0f} "
          f"after_kb={','.join(map(str, samples))}")


asyncio.run(main())
