"""Python worker side of pythia-cli/tests/python_interop.rs: a real pythia-framework Worker
consumes what a Rust `pythia produce --wire pythia-py` wrote and prints each message as one JSON
line `RECEIVED {"body", "headers", "message_id"}`; it exits after N messages (the 1.0.1 Worker never stops
by itself, and ignores SIGTERM).

    python consume.py PORT list|stream QUEUE N
"""

import asyncio
import json
import os
import sys

from pythia import Worker
from pythia.brokers.redis import RedisListConsumer, RedisStreamsConsumer
from pythia.config.redis import RedisConfig


def main() -> None:
    port, kind, queue, n = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
    config = RedisConfig(host="127.0.0.1", port=port)
    if kind == "list":
        source = RedisListConsumer(queue, config=config)
    else:
        source = RedisStreamsConsumer(queue, consumer_group="pythia-group", config=config)
    seen = []

    class Collector(Worker):
        async def process(self, message):
            body = message.body
            if not isinstance(body, str):
                body = json.dumps(body)
            seen.append(1)
            line = {"body": body, "headers": message.headers, "message_id": message.message_id}
            # The framework logs to stdout too: received messages are the lines marked so.
            sys.stdout.write("RECEIVED " + json.dumps(line, ensure_ascii=False) + "\n")
            sys.stdout.flush()
            if len(seen) >= n:
                os._exit(0)

    Collector.source = source
    asyncio.run(Collector().run())


if __name__ == "__main__":
    main()
