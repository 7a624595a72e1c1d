// What a TypeScript service writes: it must type-check against the published types (`npm run typecheck`).
import { InvalidPayload, type ProcessAsset, Sender, verifyEvent } from "worker-contracts";

export async function example(url: string, rawBody: string, header: string | undefined): Promise<string[]> {
  const sender = await Sender.connect(url);
  try {
    const asset: ProcessAsset = { asset_id: "a-1", source: "file:uploads/a-1.pdf", crm_lead_id: 42 };
    const one = await sender.processAsset(asset);
    await sender.crmAddNote({ entity: "leads", entity_id: 7, text: "hi", idempotency_key: "k-1" });
    const many = await sender.sendMany("extract_knowledge", [{ asset_id: "a-1" }, { asset_id: "a-2" }]);
    // @ts-expect-error: entity is "leads" | "contacts"
    await sender.crmAddNote({ entity: "deals", entity_id: 7, text: "hi", idempotency_key: "k-2" });
    // @ts-expect-error: source is required
    await sender.processAsset({ asset_id: "a-3" });
    if (!verifyEvent(rawBody, header, "secret")) throw new InvalidPayload("process_asset", "unsigned");
    return [one, ...many];
  } finally {
    await sender.close();
  }
}
