"""The peer: APScheduler 3.x in one process, calling the same sink with the nominal time in a header.

Run as its own process (``python -m bench.peer``), as a user would run it, so that it shares no event loop with
the sink. Every job is an interval job anchored at ``--anchor`` plus its offset; the nominal time of a call is the
last grid time at or before the moment APScheduler runs the job (its lag is far below the interval).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from datetime import UTC, datetime, timedelta

import aiohttp
from apscheduler.schedulers.asyncio import AsyncIOScheduler


async def run(url: str, schedules: int, interval: float, anchor: datetime, spread: bool, seconds: float) -> None:
    step = timedelta(seconds=interval)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=200)) as client:

        async def call(first: datetime, marker: str) -> None:
            now = datetime.now(UTC)
            nominal = first + ((now - first) // step) * step
            stamp = nominal.isoformat(timespec="milliseconds").replace("+00:00", "Z")
            headers = {"Chime-Schedule-Id": marker, "Chime-Scheduled-For": stamp}
            async with client.post(url, headers=headers) as response:
                await response.read()

        scheduler = AsyncIOScheduler(timezone=UTC)
        for i in range(schedules):
            offset = timedelta(seconds=i * interval / schedules) if spread else timedelta(0)
            first = anchor + offset
            scheduler.add_job(
                call,
                "interval",
                seconds=interval,
                start_date=first,
                args=(first, f"peer-{i}"),
                misfire_grace_time=None,
                coalesce=False,
                max_instances=1000,
            )
        scheduler.start()
        try:
            await asyncio.sleep(max(0.0, (anchor - datetime.now(UTC)).total_seconds()) + seconds)
        finally:
            # Calls cut short by the shutdown are not the peer's failures: keep them out of the report.
            logging.getLogger("apscheduler.executors").setLevel(logging.CRITICAL)
            scheduler.shutdown(wait=False)
            await asyncio.sleep(1)  # calls still under way finish before the session closes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--schedules", type=int, required=True)
    parser.add_argument("--interval", type=float, required=True)
    parser.add_argument("--anchor", required=True, help="RFC 3339: the first fire of job 0")
    parser.add_argument("--spread", action="store_true", help="spread jobs evenly over the interval")
    parser.add_argument("--seconds", type=float, required=True, help="how long to run after the anchor")
    args = parser.parse_args()
    anchor = datetime.fromisoformat(args.anchor)
    asyncio.run(run(args.url, args.schedules, args.interval, anchor, args.spread, args.seconds))


if __name__ == "__main__":
    main()
