// BullMQ on the peers' workload (benches/peers/run.sh): `node worker.js PORT N default|tuned`
// runs one Worker with a no-op processor until N jobs have completed, then prints one JSON line
// {"processed":N,"seconds":S}, S from the first job started to the N-th completed.
// default: the Worker's own options (concurrency 1, completed jobs kept).
// tuned: concurrency 100 and removeOnComplete (completed jobs are not kept).
'use strict';
const { Worker } = require('bullmq');

async function main() {
  const [portArg, nArg, settings] = process.argv.slice(2);
  const port = Number(portArg);
  const n = Number(nArg);
  const opts = { connection: { host: '127.0.0.1', port } };
  if (settings === 'tuned') {
    opts.concurrency = 100;
    opts.removeOnComplete = { count: 0 };
  } else if (settings !== 'default') {
    throw new Error('usage: node worker.js PORT N default|tuned');
  }
  let first = null;
  let done = 0;
  let finish;
  const finished = new Promise((resolve) => (finish = resolve));
  const worker = new Worker(
    'peer',
    async () => {
      if (first === null) first = process.hrtime.bigint();
    },
    opts,
  );
  worker.on('completed', () => {
    done += 1;
    if (done === n) finish(Number(process.hrtime.bigint() - first) / 1e9);
  });
  worker.on('failed', (_job, err) => {
    console.error('job failed:', err);
    process.exit(1);
  });
  const seconds = await finished;
  console.log(JSON.stringify({ processed: done, seconds }));
  await worker.close(true);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
