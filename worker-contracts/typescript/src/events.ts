/**
 * Outcome events the worker POSTs to EVENTS_WEBHOOK_URL: `X-Worker-Signature: sha256=<hex HMAC-SHA256 of the raw
 * body keyed with EVENTS_WEBHOOK_SECRET>`. Check the raw body before parsing it; deduplicate by `event_id`.
 */
import { createHmac, timingSafeEqual } from "node:crypto";

export type EventName =
  | "asset.extracted" | "asset.failed" | "asset.deleted" | "knowledge.done" | "knowledge.failed" | "knowledge.skipped";

export interface OutcomeEvent {
  event_id: string;
  event: EventName;
  asset_id: string;
  status: string;
  error_code: string | null;
  occurred_at: string;
  /** knowledge.done (contract 1.2): the asset's entities and relations in its workspace graph */
  entities?: number;
  relations?: number;
}

/** The body was not signed with this secret (or was changed on the way). */
export class InvalidSignature extends Error {
  constructor() {
    super("X-Worker-Signature does not match the body");
    this.name = "InvalidSignature";
  }
}

export function sign(rawBody: string | Uint8Array, secret: string): string {
  return `sha256=${createHmac("sha256", secret).update(rawBody).digest("hex")}`;
}

/** Constant-time check of the `X-Worker-Signature` header against the raw body. */
export function verifyEvent(rawBody: string | Uint8Array, signatureHeader: string | null | undefined, secret: string): boolean {
  if (!signatureHeader) return false;
  const expected = Buffer.from(sign(rawBody, secret));
  const given = Buffer.from(signatureHeader);
  return expected.length === given.length && timingSafeEqual(expected, given);
}

/** The event of a signed body; throws InvalidSignature, or an Error for a body that is not an event. */
export function parseEvent(rawBody: string | Uint8Array, signatureHeader: string | null | undefined, secret: string): OutcomeEvent {
  if (!verifyEvent(rawBody, signatureHeader, secret)) throw new InvalidSignature();
  const text = typeof rawBody === "string" ? rawBody : Buffer.from(rawBody).toString("utf8");
  const event = JSON.parse(text) as OutcomeEvent;
  for (const key of ["event_id", "event", "asset_id", "status", "occurred_at"] as const) {
    if (typeof event[key] !== "string") throw new Error(`not an outcome event: ${key} missing`);
  }
  return event;
}
