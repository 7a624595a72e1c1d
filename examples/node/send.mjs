// Send a message to the worker from Node.js, in Dramatiq's Redis format (see README, "Message format").
//   node send.mjs process_asset '{"asset_id": "a-1", "source": "file:uploads/a-1.pdf"}'
// Environment: BROKER_URL (default redis://127.0.0.1:6379/0).  Prints the message_id.
import { randomUUID } from "node:crypto";
import { createClient } from "redis";

const QUEUES = {
  process_asset: "assets",
  extract_knowledge: "knowledge",
  crm_upsert_contact: "crm",
  crm_create_lead: "crm",
  crm_add_note: "crm",
  crm_handle_webhook: "crm",
};

export async function send(client, actor, kwargs, namespace = "dramatiq") {
  const queue = QUEUES[actor];
  if (!queue) throw new Error(`unknown actor ${actor}`);
  const redisId = randomUUID();
  const message = {
    queue_name: queue,
    actor_name: actor,
    args: [],
    kwargs,
    options: { redis_message_id: redisId },
    message_id: randomUUID(),
    message_timestamp: Date.now(),
  };
  // Both writes in one MULTI/EXEC: the payload under a fresh Redis id, then the id on the queue.
  await client
    .multi()
    .hSet(`${namespace}:${queue}.msgs`, redisId, JSON.stringify(message))
    .rPush(`${namespace}:${queue}`, redisId)
    .exec();
  return message.message_id;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const [actor, payload] = process.argv.slice(2);
  const client = createClient({ url: process.env.BROKER_URL || "redis://127.0.0.1:6379/0" });
  client.on("error", (err) => { console.error(err.message); process.exitCode = 1; });
  await client.connect();
  try {
    console.log(await send(client, actor, JSON.parse(payload)));
  } finally {
    await client.quit();
  }
}
