"""The Faust ceiling: an agent that only takes micro-batches of raw events and does nothing.

`greenlane bench` runs it on the same backlog so the report separates what Faust's per-event
hand-off costs from what greenlane's own work costs. Run as
``python -m greenlane.streams.devtools.faust_ceiling BOOTSTRAP GROUP EXPECTED BATCH WITHIN
TOPIC...``; prints one JSON line when EXPECTED events were taken.

``GREENLANE_CEILING_HANDOFF=bulk`` measures the alternative to ``take_events`` that issue #11
asked about: the agent takes everything the conductor has already queued for it in one step,
without Faust's wait per event. On this machine it was 4-30% faster than ``take_events``
(14.8-16.8k/s against 14.3-14.8k/s in three runs), a few µs per filing of a worker that
spends ~600: the worker keeps Faust's API (docs/faust-internals.md).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
import time

import faust
import uvloop

from greenlane.streams.runtime.admin import broker_credentials
from greenlane.streams.settings import settings


def main(argv: list[str]) -> None:
    bootstrap, group, expected, batch, within, *topics = argv
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    options = {
        "broker_max_poll_records": int(batch),
        "stream_buffer_maxsize": max(4096, 2 * int(batch)),
        # for experiments: extra faust.App settings as a JSON object
        **json.loads(os.environ.get("GREENLANE_CEILING_APP_OPTIONS", "{}")),
    }
    app = faust.App(
        group,
        broker=f"kafka://{bootstrap}",
        broker_credentials=broker_credentials(settings(), settings().kafka.admin_username),
        web_enabled=False,
        datadir=tempfile.mkdtemp(prefix="faust-ceiling-"),
        consumer_auto_offset_reset="earliest",
        **options,
    )
    channel = app.topic(*topics, key_serializer="raw", value_serializer="raw")
    seen = {"n": 0, "start": 0.0}

    async def bulk(stream):
        """The experiment: everything the conductor has already queued for the agent's
        channel, in one step (one wait per batch, not one per event)."""
        queue = stream.channel.queue
        while True:
            events = [await queue.get()]
            while len(events) < int(batch) and not queue.empty():
                events.append(queue.get_nowait())
            yield events
            for event in events:
                await stream.ack(event)

    handoff = os.environ.get("GREENLANE_CEILING_HANDOFF", "take_events")

    @app.agent(channel)
    async def take(stream):
        taken = (
            bulk(stream)
            if handoff == "bulk"
            else stream.take_events(int(batch), within=float(within))
        )
        async for events in taken:
            if not seen["n"]:
                seen["start"] = time.perf_counter()
            seen["n"] += len(events)
            if seen["n"] >= int(expected):
                elapsed = time.perf_counter() - seen["start"]
                # sys.__stdout__: the Faust worker redirects sys.stdout into its logger
                sys.__stdout__.write(
                    json.dumps(
                        {
                            "events": seen["n"],
                            "seconds": round(elapsed, 3),
                            "throughput_per_s": round(seen["n"] / elapsed, 1),
                            "handoff": handoff,
                        }
                    )
                    + "\n"
                )
                sys.__stdout__.flush()
                os._exit(0)  # a measurement probe: nothing to clean up but its consumer group

    worker = faust.Worker(app, loglevel="error", quiet=True)
    worker.spinner = None
    worker.execute_from_commandline()


if __name__ == "__main__":
    main(sys.argv[1:])
