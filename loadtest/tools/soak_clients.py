"""Hostile and short-lived clients for the soak test, all at once for DURATION seconds:
new connections (one request each, Connection: close), slowloris connections trickling a head a
byte a second (reopened when the proxy closes them), and clients that abort mid-download and
mid-upload. Prints one line of key=value counters at the end.

usage: soak_clients.py PORT DURATION [NEWCONN] [SLOWLORIS] [ABORTERS]
"""
import asyncio
import sys
import time

PORT, DURATION = int(sys.argv[1]), float(sys.argv[2])
NEWCONN = int(sys.argv[3]) if len(sys.argv) > 3 else 8
SLOWLORIS = int(sys.argv[4]) if len(sys.argv) > 4 else 200
ABORTERS = int(sys.argv[5]) if len(sys.argv) > 5 else 4
END = time.monotonic() + DURATION
counts = {"new_ok": 0, "new_err": 0, "slow_closed": 0, "slow_408": 0, "abort_down": 0,
          "abort_up": 0, "abort_err": 0}


async def new_connections():
    req = b"GET /new HTTP/1.1\r\nHost: soak\r\nConnection: close\r\n\r\n"
    while time.monotonic() < END:
        try:
            r, w = await asyncio.open_connection("127.0.0.1", PORT)
            w.write(req)
            data = await asyncio.wait_for(r.read(-1), 10)
            w.close()
            counts["new_ok" if data.startswith(b"HTTP/1.1 200") else "new_err"] += 1
        except (OSError, asyncio.TimeoutError):
            counts["new_err"] += 1
            await asyncio.sleep(0.1)


async def slowloris(i):
    head = b"GET /slow HTTP/1.1\r\nHost: soak\r\nX-Slow: " + b"a" * 4096
    await asyncio.sleep(i % 10 / 10)  # spread the trickle over the second
    while time.monotonic() < END:
        try:
            r, w = await asyncio.open_connection("127.0.0.1", PORT)
        except OSError:
            await asyncio.sleep(1)
            continue
        got = b""
        try:
            for b in head:
                if time.monotonic() >= END:
                    break
                w.write(bytes([b]))
                await w.drain()
                try:
                    got += await asyncio.wait_for(r.read(4096), 1)
                    if r.at_eof() or got:
                        break
                except asyncio.TimeoutError:
                    pass
        except OSError:
            pass
        counts["slow_closed"] += 1
        counts["slow_408"] += got.startswith(b"HTTP/1.1 408")
        w.close()


async def aborter(i):
    while time.monotonic() < END:
        try:
            r, w = await asyncio.open_connection("127.0.0.1", PORT)
            if i % 2 == 0:
                # Mid-download: read a little of a large body, then leave.
                w.write(b"GET /big HTTP/1.1\r\nHost: soak\r\n\r\n")
                await asyncio.wait_for(r.readexactly(64 * 1024), 10)
                counts["abort_down"] += 1
            else:
                # Mid-upload: promise a megabyte, send 64 KiB, leave.
                w.write(b"POST /upload HTTP/1.1\r\nHost: soak\r\nContent-Length: 1048576\r\n\r\n")
                w.write(b"u" * 65536)
                await asyncio.wait_for(w.drain(), 10)
                counts["abort_up"] += 1
            w.transport.abort()
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError):
            counts["abort_err"] += 1
        await asyncio.sleep(0.05)


async def main():
    tasks = [new_connections() for _ in range(NEWCONN)]
    tasks += [slowloris(i) for i in range(SLOWLORIS)]
    tasks += [aborter(i) for i in range(ABORTERS)]
    await asyncio.gather(*tasks)
    print(" ".join(f"{k}={v}" for k, v in counts.items()))


asyncio.run(main())
