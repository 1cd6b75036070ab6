# A persistent child handler for `pythia run --exec-persistent`, in Python (stdlib only).
# Run: pythia run --queue jobs --exec-persistent 'python3 examples/persistent_child.py'
# Reads one JSON line per message on stdin and writes one reply line per message on stdout
# (protocol: README, "Persistent child handlers"). handle() returning acks; raising Reject
# dead-letters; raising Retry(reason, after=seconds), or anything else, retries. To use your
# own function: `from persistent_child import serve; serve(my_handle)`.
import base64, json, os, sys


class Retry(Exception):
    def __init__(self, reason="", after=None):
        super().__init__(reason)
        self.after = after


class Reject(Exception):
    pass


def handle(msg):
    """Your work: msg has id, attempt, queue, headers and body (str, or bytes if not UTF-8)."""


def serve(handler=handle):
    out = os.dup(1)  # replies go here; print() now goes to stderr, which pythia passes on
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    loads, dumps, rest = json.loads, json.dumps, b""
    while True:
        chunk = os.read(0, 1 << 16)  # every request that has arrived, up to 64 KiB
        if not chunk:
            return  # stdin closed: pythia is shutting down
        lines = (rest + chunk).split(b"\n")
        rest = lines.pop()
        replies = []
        for line in lines:
            msg = loads(line)
            if "body_base64" in msg:
                msg["body"] = base64.b64decode(msg.pop("body_base64"))
            try:
                handler(msg)
                replies.append('{"id":%s,"outcome":"ack"}' % dumps(msg["id"]))
                continue
            except Reject as e:
                reply = {"id": msg["id"], "outcome": "reject", "reason": str(e)}
            except Retry as e:
                reply = {"id": msg["id"], "outcome": "retry", "reason": str(e), "after": e.after}
            except Exception as e:
                reply = {"id": msg["id"], "outcome": "retry", "reason": repr(e)}
            replies.append(dumps(reply))
        data = ("\n".join(replies) + "\n").encode() if replies else b""
        while data:  # one write for the whole read's replies
            data = data[os.write(out, data):]


if __name__ == "__main__":
    serve()
