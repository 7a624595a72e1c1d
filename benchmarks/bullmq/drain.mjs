// Drain N no-op jobs with one BullMQ worker; prints {"n", "seconds", "rate"} as JSON.
// Usage: node drain.mjs REDIS_URL N CONCURRENCY   (uses the key prefix "bullbench" only)
import { Queue, Worker } from "bullmq";
import IORedis from "ioredis";

const [redisUrl, nArg, concurrencyArg] = process.argv.slice(2);
const url = new URL(redisUrl);
// BullMQ 6 in ESM takes a constructed client; it duplicates it for the worker's blocking connection.
const connection = new IORedis({ host: url.hostname, port: Number(url.port || 6379),
                                 db: Number(url.pathname.slice(1) || 0), maxRetriesPerRequest: null });
const n = Number(nArg);
const prefix = "bullbench";
const queue = new Queue("bench", { connection, prefix });
await queue.obliterate({ force: true });
for (let i = 0; i < n; i += 1000) {
  const jobs = [];
  for (let k = i; k < Math.min(n, i + 1000); k++) {
    jobs.push({ name: "noop", data: { n: k }, opts: { removeOnComplete: true, removeOnFail: false } });
  }
  await queue.addBulk(jobs);
}
let done = 0;
let failed = 0;
const worker = new Worker("bench", async () => null,
                          { connection, prefix, concurrency: Number(concurrencyArg), autorun: false });
const finished = new Promise((resolve) => {
  worker.on("completed", () => { if (++done + failed === n) resolve(); });
  worker.on("failed", () => { if (done + ++failed === n) resolve(); });
});
const started = performance.now();
worker.run();
await finished;
const seconds = (performance.now() - started) / 1000;
await worker.close();
await queue.obliterate({ force: true });
await queue.close();
await connection.quit();
process.stdout.write(JSON.stringify({ n, failed, seconds, rate: n / seconds }) + "\n");
