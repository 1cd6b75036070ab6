// BullMQ on the peers' workload (benches/peers/run.sh): `node preload.js PORT N` adds N jobs
// whose data is a 100-byte string, with Queue.addBulk, 10,000 at a time.
'use strict';
const { Queue } = require('bullmq');

async function main() {
  const [port, n] = process.argv.slice(2).map(Number);
  const queue = new Queue('peer', { connection: { host: '127.0.0.1', port } });
  const body = 'x'.repeat(100);
  for (let i = 0; i < n; i += 10000) {
    const k = Math.min(10000, n - i);
    await queue.addBulk(Array.from({ length: k }, () => ({ name: 'noop', data: body })));
  }
  await queue.close();
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
