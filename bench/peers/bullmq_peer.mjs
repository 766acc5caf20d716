// BullMQ: producer and worker for bench/peers.py (node, bullmq from npm).
import { Queue, Worker } from "bullmq";
import IORedis from "ioredis";

const port = Number(process.env.PEER_REDIS_PORT);
const connection = { host: "127.0.0.1", port };
const [, , role, n, mark] = process.argv;
if (role === "worker") {
  const r = new IORedis(port);
  new Worker("peer", async (job) => {
    if (job.data.mark === "lat") await r.rpush("peer:started", String(Date.now() / 1000));
    else await r.incr("peer:done");
  }, { connection });
} else {
  const q = new Queue("peer", { connection });
  for (let i = 0; i < Number(n); i++) await q.add("task", { mark });
  await q.close();
  process.exit(0);
}
