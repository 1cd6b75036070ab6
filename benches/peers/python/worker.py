"""The Python pythia-framework on the peers' workload (benches/peers/run.sh).

`python worker.py PORT N default|tuned` runs one Worker with a no-op `process` until N messages
were processed, then prints one JSON line {"processed": N, "seconds": S}, S from the first
message processed to the N-th, and exits (its Worker has no way to stop on its own: SIGTERM
does not stop it).

default: RedisListConsumer as it comes (BLPOP, one message per round trip, processed in turn).
tuned: RedisStreamsConsumer reading 100 entries per XREADGROUP (RedisConfig.batch_size=100).
The framework never XACKs a stream entry it processed, so this path does less
Redis work than an at-least-once consumer.
"""

import json
import os
import sys
import time

from pythia import Worker
from pythia.brokers.redis import RedisListConsumer, RedisStreamsConsumer
from pythia.config.redis import RedisConfig


def main() -> None:
    port, n, settings = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    if settings == "default":
        source = RedisListConsumer("peer", host="127.0.0.1", port=port)
    elif settings == "tuned":
        config = RedisConfig(
            host="127.0.0.1", port=port, stream="peer", consumer_group="peer", batch_size=100
        )
        source = RedisStreamsConsumer("peer", "peer", config=config)
    else:
        raise SystemExit("usage: python worker.py PORT N default|tuned")

    state = {"done": 0, "first": None}

    class NoOp(Worker):
        async def process(self, message):
            if state["first"] is None:
                state["first"] = time.perf_counter()
            state["done"] += 1
            if state["done"] == n:
                seconds = time.perf_counter() - state["first"]
                print(json.dumps({"processed": n, "seconds": seconds}), flush=True)
                os._exit(0)

    NoOp.source = source
    NoOp().run_sync()


if __name__ == "__main__":
    main()
