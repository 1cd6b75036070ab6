"""Python producer side of pythia-cli/tests/python_interop.rs: the real pythia-framework
producers write N messages that a Rust `pythia run` worker must receive with body and headers.

    python produce.py PORT list|stream QUEUE N

Message i: body "py-<i> é", headers {"tenant": "acme", "seq": "<i>"}, and on a list the
message_id "py-id-<i>".
"""

import asyncio
import sys

from pythia.brokers.redis import RedisListProducer, RedisStreamsProducer
from pythia.config.redis import RedisConfig


async def main() -> None:
    port, kind, queue, n = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
    config = RedisConfig(host="127.0.0.1", port=port)
    if kind == "list":
        producer = RedisListProducer(queue, config=config)
    else:
        producer = RedisStreamsProducer(queue, config=config)
    await producer.connect()
    for i in range(n):
        headers = {"tenant": "acme", "seq": str(i)}
        body = f"py-{i} é"
        if kind == "list":
            try:
                await producer.send(body, headers=headers, message_id=f"py-id-{i}")
            except AttributeError:
                # pythia-framework 1.0.1: send() RPUSHes, then reads a config field that does not
                # exist (max_list_length) and raises. The message is on the list.
                pass
        else:
            await producer.send(body, headers=headers)
    await producer.disconnect()


if __name__ == "__main__":
    asyncio.run(main())
