// Node's own test runner: `npm test`. Unit tests always; Redis tests when WORKER_TEST_REDIS_URL is set
// (tests/integration/test_typescript_sender.py sets it and runs this with a real worker beside it).
import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { test } from "node:test";

import {
  CONTRACT_VERSION, InvalidPayload, parseEvent, redisOptions, Sender, UnknownActor, validatePayload, verifyEvent,
} from "../dist/index.js";

test("a valid payload comes back as kwargs without its unset optionals", () => {
  assert.deepEqual(validatePayload("process_asset", { asset_id: "a-1", source: "file:x.pdf", filename: null }),
    { asset_id: "a-1", source: "file:x.pdf" });
});

test("an invalid payload is refused with pydantic's words", () => {
  assert.throws(() => validatePayload("process_asset", { asset_id: "a-1" }),
    (e) => e instanceof InvalidPayload && e.reason === "source: Field required");
  assert.throws(() => validatePayload("extract_knowledge", { asset_id: "a", surprise: 1 }),
    (e) => e instanceof InvalidPayload && e.reason === "surprise: Extra inputs are not permitted");
  assert.throws(() => validatePayload("nope", {}), UnknownActor);
});

test("an outcome event verifies with its secret and not when the body or the signature changed", () => {
  const body = JSON.stringify({ event_id: "e1", event: "asset.extracted", asset_id: "a", status: "extracted",
    error_code: null, occurred_at: "2026-12-04T10:00:00Z" });
  const header = `sha256=${createHmac("sha256", "s3cret").update(body).digest("hex")}`;
  assert.equal(verifyEvent(body, header, "s3cret"), true);
  assert.equal(verifyEvent(body.replace("extracted", "failed"), header, "s3cret"), false);
  assert.equal(verifyEvent(body, header.replace(/.$/, (c) => (c === "0" ? "1" : "0")), "s3cret"), false);
  assert.equal(verifyEvent(body, "sha256=00", "s3cret"), false);
  assert.equal(verifyEvent(body, undefined, "s3cret"), false);
  assert.equal(parseEvent(body, header, "s3cret").asset_id, "a");
  assert.throws(() => parseEvent(body, header, "other"));
});

test("the URL forms: redis://, rediss:// and Sentinel's", () => {
  assert.equal(redisOptions("redis://127.0.0.1:6379/3"), "redis://127.0.0.1:6379/3");
  assert.deepEqual(redisOptions("redis+sentinel://u:p%40ss@10.0.0.1:26379,[::1]:26380/mymaster/2", "sp"), {
    sentinels: [{ host: "10.0.0.1", port: 26379 }, { host: "::1", port: 26380 }], name: "mymaster", db: 2,
    username: "u", password: "p@ss", sentinelPassword: "sp", tls: undefined });
  assert.deepEqual(redisOptions("rediss+sentinel://h:1/m").tls, {});
  assert.throws(() => redisOptions("http://x"));
});

const url = process.env.WORKER_TEST_REDIS_URL;

test("messages are written in Dramatiq's format, validated first, all or nothing", { skip: !url && "no WORKER_TEST_REDIS_URL" }, async () => {
  const namespace = `wts${process.pid}`;
  const sender = await Sender.connect(url, { namespace });
  try {
    const id = await sender.processAsset({ asset_id: "ts-1", source: "file:a.txt", crm_lead_id: 5 },
      { traceContext: { traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01" } });
    const [redisId] = await sender.client.lrange(`${namespace}:assets`, 0, -1);
    const message = JSON.parse(await sender.client.hget(`${namespace}:assets.msgs`, redisId));
    assert.equal(message.message_id, id);
    assert.deepEqual(message.args, []);
    assert.deepEqual(message.kwargs, { asset_id: "ts-1", source: "file:a.txt", crm_lead_id: 5 });
    assert.equal(message.options.contract_version, CONTRACT_VERSION);
    assert.equal(message.options.redis_message_id, redisId);
    assert.equal(message.options.trace_context.traceparent.slice(0, 2), "00");
    await assert.rejects(sender.sendMany("extract_knowledge", [{ asset_id: "ok" }, { asset_id: "" }]), InvalidPayload);
    assert.equal(await sender.client.llen(`${namespace}:knowledge`), 0);  // nothing written
    const started = performance.now();
    const ids = await sender.sendMany("extract_knowledge", Array.from({ length: 10_000 }, (_, i) => ({ asset_id: `b${i}` })));
    const seconds = (performance.now() - started) / 1000;
    assert.equal(new Set(ids).size, 10_000);
    assert.equal(await sender.client.llen(`${namespace}:knowledge`), 10_000);
    console.log(`bulk send: 10000 messages in ${seconds.toFixed(3)} s (${Math.round(10_000 / seconds)} msg/s)`);
  } finally {
    await sender.client.del(`${namespace}:assets`, `${namespace}:assets.msgs`, `${namespace}:knowledge`, `${namespace}:knowledge.msgs`);
    await sender.close();
  }
});
