// Send a message to the worker from Node.js with the worker-contracts package (validated, typed).
//   node send.mjs process_asset '{"asset_id": "a-1", "source": "file:uploads/a-1.pdf"}'
// Environment: BROKER_URL (default redis://127.0.0.1:6379/0).  Prints the message_id.
import { Sender } from "worker-contracts";

const [actor, payload] = process.argv.slice(2);
const sender = await Sender.connect(process.env.BROKER_URL || "redis://127.0.0.1:6379/0");
try {
  console.log(await sender.send(actor, JSON.parse(payload)));
} catch (error) {
  console.error(error.message);  // an invalid payload: InvalidPayload, with the reason; nothing was sent
  process.exitCode = 1;
} finally {
  await sender.close();
}
