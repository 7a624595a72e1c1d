/**
 * Send messages to the worker from any Node service: validated, in Dramatiq's wire format.
 *
 * A message is a JSON object stored in the hash `<ns>:<queue>.msgs` under a fresh Redis id that is pushed onto
 * the list `<ns>:<queue>`, both in one MULTI/EXEC (docs/contracts.rst, "Message format"). Every payload is
 * validated before anything is written: an invalid one rejects with InvalidPayload and nothing is enqueued.
 */
import { randomUUID } from "node:crypto";

import { Redis, type RedisOptions } from "ioredis";

import { type Actor, CONTRACT_VERSION, CONTRACTS, type Payloads } from "./contracts.generated.js";
import { InvalidPayload, parseVersion, UnknownActor, validatePayload } from "./validate.js";

export interface SendOptions {
  /** Extra Dramatiq message options (`eta`, ...). */
  options?: Record<string, unknown>;
  /** The contract version this message claims (default: this package's). */
  contractVersion?: string;
  /** W3C trace context (`traceparent`, `tracestate`); default: the active one, when @opentelemetry/api is loaded. */
  traceContext?: Record<string, string>;
}

export interface ConnectOptions {
  /** The Dramatiq key namespace (default `dramatiq`). */
  namespace?: string;
  /** Sentinel's own password (`redis+sentinel://` URLs), when the sentinels require one. */
  sentinelPassword?: string;
  /** How many messages go in one MULTI/EXEC of a bulk send (default 1000). */
  chunkSize?: number;
  /**
   * After each MULTI/EXEC, `WAIT` on the same connection until this many replicas have it (the worker's
   * REDIS_WAIT_REPLICAS; default 0: asynchronous replication, no wait). Fewer within `waitTimeoutMs`: the
   * messages stay enqueued (re-sending would duplicate them), `onUnreplicated` is called and `lastReplicas` says
   * how many confirmed.
   */
  waitReplicas?: number;
  /** How long `WAIT` may block, in milliseconds (the worker's REDIS_WAIT_TIMEOUT_MS; default 1000). */
  waitTimeoutMs?: number;
  /** Called when fewer than `waitReplicas` replicas confirmed a chunk (default: a console warning). */
  onUnreplicated?: (info: { queue: string; messages: number; replicas: number; wanted: number }) => void;
}

/** ioredis options for the URL forms the worker accepts: redis://, rediss://, redis+sentinel://, rediss+sentinel://. */
export function redisOptions(url: string, sentinelPassword?: string): RedisOptions | string {
  const match = /^(rediss?)\+sentinel:\/\/(?:([^:@/]*)(?::([^@/]*))?@)?([^/]+)\/([^/]+)(?:\/(\d+))?\/?$/.exec(url);
  if (match === null) {
    if (!/^rediss?:\/\//.test(url)) throw new Error(`not a Redis URL: ${url.replace(/\/\/[^@/]*@/, "//***@")}`);
    return url;
  }
  const [, scheme, user, password, hosts, name, db] = match;
  const sentinels = hosts.split(",").map((hostPort) => {
    const at = hostPort.lastIndexOf(":");
    return { host: hostPort.slice(0, at).replace(/^\[|\]$/g, ""), port: Number(hostPort.slice(at + 1)) };
  });
  return {
    sentinels, name: decodeURIComponent(name), db: db ? Number(db) : 0,
    username: user ? decodeURIComponent(user) : undefined,
    password: password ? decodeURIComponent(password) : undefined,
    sentinelPassword, tls: scheme === "rediss" ? {} : undefined,
  };
}

async function activeTraceContext(): Promise<Record<string, string> | undefined> {
  try {
    const specifier = "@opentelemetry/api";  // optional: present only when the caller traces
    const api = (await import(specifier)) as {
      propagation: { inject(context: unknown, carrier: Record<string, string>): void };
      context: { active(): unknown };
    };
    const carrier: Record<string, string> = {};
    api.propagation.inject(api.context.active(), carrier);
    return Object.keys(carrier).length ? carrier : undefined;
  } catch {
    return undefined;
  }
}

type Methods = {
  [A in Actor as A extends `${infer H}_${infer T}` ? CamelCase<`${H}_${T}`> : A]: (payload: Payloads[A], send?: SendOptions) => Promise<string>;
};
type CamelCase<S extends string> = S extends `${infer H}_${infer T}` ? `${H}${Capitalize<CamelCase<T>>}` : S;

export class Sender {
  readonly client: Redis;
  readonly namespace: string;
  readonly chunkSize: number;
  readonly waitReplicas: number;
  readonly waitTimeoutMs: number;
  /** How many replicas confirmed the last chunk (only with `waitReplicas`). */
  lastReplicas: number | undefined;
  private readonly onUnreplicated: NonNullable<ConnectOptions["onUnreplicated"]>;

  private constructor(client: Redis, options: ConnectOptions) {
    this.client = client;
    this.namespace = options.namespace ?? "dramatiq";
    this.chunkSize = options.chunkSize ?? 1000;
    this.waitReplicas = options.waitReplicas ?? 0;
    this.waitTimeoutMs = options.waitTimeoutMs ?? 1000;
    if (!(this.waitReplicas >= 0 && this.waitTimeoutMs >= 0)) throw new Error("waitReplicas and waitTimeoutMs must be >= 0");
    this.onUnreplicated = options.onUnreplicated ?? (({ queue, messages, replicas, wanted }) => {
      console.warn(`worker-contracts: ${messages} message(s) for ${queue} reached ${replicas} of ${wanted} replica(s) ` +
        `within ${this.waitTimeoutMs} ms: enqueued on the master, at risk if it fails now`);
    });
  }

  /** A sender connected to the worker's Redis (the same URL forms as BROKER_URL). */
  static async connect(url: string, options: ConnectOptions = {}): Promise<Sender & Methods> {
    const target = redisOptions(url, options.sentinelPassword);
    const common: RedisOptions = { lazyConnect: true, maxRetriesPerRequest: 3, enableOfflineQueue: true };
    const client = typeof target === "string" ? new Redis(target, common) : new Redis({ ...common, ...target });
    await client.connect();
    return new Sender(client, options) as Sender & Methods;
  }

  /** Validate and enqueue one message; resolves to its message_id. */
  async send<A extends Actor>(actor: A, payload: Payloads[A], send: SendOptions = {}): Promise<string> {
    return (await this.sendMany(actor, [payload], send))[0];
  }

  /** Validate every payload first, then enqueue them: one MULTI/EXEC per chunk (all or nothing per chunk). */
  async sendMany<A extends Actor>(actor: A, payloads: Payloads[A][], send: SendOptions = {}): Promise<string[]> {
    if (!Object.prototype.hasOwnProperty.call(CONTRACTS, actor)) throw new UnknownActor(actor);
    const validated = payloads.map((payload) => validatePayload(actor, payload));
    const version = send.contractVersion ?? CONTRACT_VERSION;
    parseVersion(version);
    const traceContext = send.traceContext ?? (await activeTraceContext());
    const options: Record<string, unknown> = { contract_version: version, ...(send.options ?? {}) };
    if (traceContext) options.trace_context = traceContext;
    const queue = CONTRACTS[actor].queue;
    const ids: string[] = [];
    for (let start = 0; start < validated.length; start += this.chunkSize) {
      const fields: string[] = [];
      const redisIds: string[] = [];
      for (const kwargs of validated.slice(start, start + this.chunkSize)) {
        const messageId = randomUUID();
        const redisId = randomUUID();
        fields.push(redisId, JSON.stringify({
          queue_name: queue, actor_name: actor, args: [], kwargs,
          options: { ...options, redis_message_id: redisId },
          message_id: messageId, message_timestamp: Date.now(),
        }));
        redisIds.push(redisId);
        ids.push(messageId);
      }
      if (this.waitReplicas > 0) {
        await this.pushReplicated(queue, fields, redisIds);
        continue;
      }
      const results = await this.client.multi()
        .hset(`${this.namespace}:${queue}.msgs`, ...fields)
        .rpush(`${this.namespace}:${queue}`, ...redisIds)
        .exec();
      const failed = results?.find(([error]) => error);
      if (results === null || failed) throw failed?.[0] ?? new Error("the transaction was discarded");
    }
    return ids;
  }

  /** MULTI/EXEC and WAIT in one pipeline: the WAIT runs on the connection that wrote the chunk (inside MULTI it would not wait). */
  private async pushReplicated(queue: string, fields: string[], redisIds: string[]): Promise<void> {
    // Raw MULTI/EXEC: ioredis's typed pipeline has no nested transaction.
    const results = await this.client.pipeline()
      .call("MULTI")
      .hset(`${this.namespace}:${queue}.msgs`, ...fields)
      .rpush(`${this.namespace}:${queue}`, ...redisIds)
      .call("EXEC")
      .wait(this.waitReplicas, this.waitTimeoutMs)
      .exec();
    const failed = results?.find(([error]) => error !== null);
    if (results === null || failed) throw failed?.[0] ?? new Error("the pipeline was discarded");
    const executed = results[results.length - 2][1];
    if (executed === null) throw new Error("the transaction was discarded; nothing was enqueued");
    this.lastReplicas = Number(results[results.length - 1][1]);
    if (this.lastReplicas < this.waitReplicas) {
      this.onUnreplicated({ queue, messages: redisIds.length, replicas: this.lastReplicas, wanted: this.waitReplicas });
    }
  }

  async close(): Promise<void> {
    await this.client.quit();
  }
}

// One camelCase method per actor (processAsset, extractKnowledge, ...), from the generated registry.
for (const actor of Object.keys(CONTRACTS) as Actor[]) {
  const method = actor.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());
  Object.defineProperty(Sender.prototype, method, {
    value(this: Sender, payload: Payloads[typeof actor], send?: SendOptions) {
      return this.send(actor, payload, send);
    },
  });
}

export { InvalidPayload, UnknownActor };
