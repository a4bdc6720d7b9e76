"""``python -m bench.sse_clients URL N``: N event-stream clients, in their own process.

Each client reads ``URL`` until the server ends the stream, and notes for every event that
carries ``at`` (the source event's unix time) how long after it the frame arrived. Prints one
JSON object: ``{"connected": N, "samples": [[at, latency_s], ...], "frames": n}``. Prints
``ready`` on stderr once every client has its response headers.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

import aiohttp


async def client(
    session: aiohttp.ClientSession, url: str, samples: list[list[float]], ready: asyncio.Event
) -> int:
    frames = 0
    async with session.get(url, timeout=aiohttp.ClientTimeout(total=None)) as resp:
        if resp.status != 200:
            raise RuntimeError(f"{url}: {resp.status}")
        ready.set()
        async for raw in resp.content:
            if raw.startswith(b"data: "):
                got = time.time()
                data = json.loads(raw[6:])
                frames += 1
                at = data.get("at")
                if isinstance(at, int | float):
                    samples.append([at, got - at])
    return frames


async def main(url: str, n: int) -> None:
    samples: list[list[float]] = []
    readies = [asyncio.Event() for _ in range(n)]
    async with aiohttp.ClientSession() as session:
        tasks = [asyncio.create_task(client(session, url, samples, r)) for r in readies]
        await asyncio.gather(*(r.wait() for r in readies))
        print("ready", file=sys.stderr, flush=True)
        frames = await asyncio.gather(*tasks)
    out = {"connected": n, "frames": sum(frames), "samples": samples, "cpu_s": time.process_time()}
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
