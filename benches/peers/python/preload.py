"""The Python pythia-framework on the peers' workload (benches/peers/run.sh).

`python preload.py PORT N list|stream` queues N messages whose body is a 100-byte string, in
the framework's wire format: on a list, the JSON its RedisListProducer.send writes
({"body", "headers", "message_id"}; its send_batch always raises, so redis-py pipelines the
RPUSHes); on a stream, an entry with a `body` field, as RedisStreamsProducer.send writes.
"""

import json
import sys

import redis


def main() -> None:
    port, n, kind = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    r = redis.Redis(host="127.0.0.1", port=port)
    body = "x" * 100
    item = json.dumps({"body": body, "headers": {}, "message_id": None})
    for start in range(0, n, 10_000):
        pipe = r.pipeline(transaction=False)
        for _ in range(min(10_000, n - start)):
            if kind == "list":
                pipe.rpush("peer", item)
            else:
                pipe.xadd("peer", {"body": body})
        pipe.execute()


if __name__ == "__main__":
    main()
