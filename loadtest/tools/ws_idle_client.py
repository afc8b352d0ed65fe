"""Opens N WebSocket upgrades through a proxy, keeps them idle, and reports the proxy's RSS,
open fds and threads before and after (read from /proc). Prints one line of key=value pairs."""
import asyncio
import os
import re
import sys

N, PID, PORT = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
PIDS = [int(p) for p in sys.argv[4].split(",")] if len(sys.argv) > 4 else [PID]
REQ = (b"GET /ws HTTP/1.1\r\nHost: bench\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
       b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")


def rss_kb():
    return sum(int(re.search(r"VmRSS:\s+(\d+)", open(f"/proc/{p}/status").read()).group(1)) for p in PIDS)


def fds():
    return sum(len(os.listdir(f"/proc/{p}/fd")) for p in PIDS)


def threads():
    return sum(len(os.listdir(f"/proc/{p}/task")) for p in PIDS)


async def main():
    conns, failed = [], 0
    sem = asyncio.Semaphore(int(os.environ.get("CONC", "20")))

    async def one():
        nonlocal failed
        async with sem:
            try:
                r, w = await asyncio.open_connection("127.0.0.1", PORT)
                w.write(REQ)
                await w.drain()
                head = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), 10)
                if not head.startswith(b"HTTP/1.1 101"):
                    failed += 1
                    w.close()
                    return
                conns.append(w)
            except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError):
                failed += 1

    await one()  # warm-up connection, part of the baseline
    await asyncio.sleep(1)
    r0, f0, t0 = rss_kb(), fds(), threads()
    await asyncio.gather(*[one() for _ in range(N)])
    await asyncio.sleep(float(os.environ.get("SETTLE", "3")))
    r1, f1, t1 = rss_kb(), fds(), threads()
    opened = len(conns) - 1
    per = (r1 - r0) * 1024 / max(opened, 1)
    print(f"opened={opened} failed={failed} rss_kb={r0}->{r1} rss_per_conn_bytes={per:.0f} "
          f"fds_per_conn={(f1 - f0) / max(opened, 1):.2f} threads={t0}->{t1}")
    for w in conns:
        w.close()


asyncio.run(main())
