// A persistent child handler for `pythia run --exec-persistent`, in Node (stdlib only).
// Run: pythia run --queue jobs --exec-persistent 'node examples/persistent_child.js'
// Reads one JSON line per message on stdin and writes one reply line per message on stdout
// (protocol: README, "Persistent child handlers"). handle() returning (or its promise
// resolving) acks; throwing Reject dead-letters; throwing Retry(reason, afterSeconds), or
// anything else, retries. Async handlers run concurrently, replies go out as they finish.
// To use your own function: `require("./persistent_child.js").serve(myHandle)`.
"use strict";

class Retry extends Error {
  constructor(reason = "", after = undefined) {
    super(reason);
    this.after = after;
  }
}
class Reject extends Error {}

// Your work: msg has id, attempt, queue, headers and body (string, or Buffer if not UTF-8).
async function handle(msg) {}

function serve(handler = handle) {
  console.log = console.error; // stdout carries the replies: logs go to stderr
  const out = [];
  const flush = () => {
    process.stdout.write(out.join("")); // one write for all replies ready this turn
    out.length = 0;
  };
  const reply = (r) => out.push(JSON.stringify(r) + "\n") === 1 && setImmediate(flush);
  const failed = (id, e) =>
    e instanceof Reject
      ? reply({ id, outcome: "reject", reason: e.message })
      : reply({ id, outcome: "retry", reason: String((e && e.message) || e), after: e && e.after });
  let rest = "";
  process.stdin.setEncoding("utf8");
  process.stdin.on("data", (chunk) => {
    const lines = (rest + chunk).split("\n");
    rest = lines.pop();
    for (const line of lines) {
      const msg = JSON.parse(line);
      if ("body_base64" in msg) msg.body = Buffer.from(msg.body_base64, "base64");
      Promise.resolve()
        .then(() => handler(msg))
        .then(() => reply({ id: msg.id, outcome: "ack" }), (e) => failed(msg.id, e));
    }
  });
}

module.exports = { serve, Retry, Reject };
if (require.main === module) serve();
