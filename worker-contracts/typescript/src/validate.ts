/**
 * Payload validation with Ajv against the pydantic models' JSON Schema, with pydantic's wording, so a bad
 * payload is refused in Node with the reason the Python sender gives (`field: message; ...`).
 */
import { Ajv2020, type ErrorObject, type ValidateFunction } from "ajv/dist/2020.js";

import { type Actor, CONTRACT_VERSION, CONTRACTS } from "./contracts.generated.js";

/** The payload does not match the actor's contract; `reason` says why (the same words as the Python sender). */
export class InvalidPayload extends Error {
  readonly actor: string;
  readonly reason: string;

  constructor(actor: string, reason: string) {
    super(`invalid payload for ${actor}: ${reason}`);
    this.name = "InvalidPayload";
    this.actor = actor;
    this.reason = reason;
  }
}

export class UnknownActor extends Error {
  constructor(actor: string) {
    super(`unknown actor ${JSON.stringify(actor)}; known: ${Object.keys(CONTRACTS).sort().join(", ")}`);
    this.name = "UnknownActor";
  }
}

const ajv = new Ajv2020({ allErrors: true, strict: false, verbose: true });  // verbose: parentSchema in errors
ajv.addKeyword({ keyword: "x-error", schemaType: "string" });
const validators = new Map<string, ValidateFunction>();

function validatorOf(actor: string): ValidateFunction {
  let validate = validators.get(actor);
  if (validate === undefined) {
    validate = ajv.compile(CONTRACTS[actor as Actor].schema);
    validators.set(actor, validate);
  }
  return validate;
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}

/** pydantic's message for one failed keyword. */
function message(error: ErrorObject): string {
  const params = error.params as Record<string, unknown>;
  const custom = (error.parentSchema as Record<string, unknown> | undefined)?.["x-error"];
  switch (error.keyword) {
    case "required":
      return "Field required";
    case "additionalProperties":
      return "Extra inputs are not permitted";
    case "type":
      return {
        string: "Input should be a valid string",
        integer: "Input should be a valid integer",
        number: "Input should be a valid number",
        array: "Input should be a valid list",
        object: "Input should be an object",
        boolean: "Input should be a valid boolean",
        null: "Input should be None",
      }[String(params.type)] ?? `Input should be of type ${String(params.type)}`;
    case "minLength":
      return `String should have at least ${plural(Number(params.limit), "character")}`;
    case "maxLength":
      return `String should have at most ${plural(Number(params.limit), "character")}`;
    case "pattern":
      return typeof custom === "string" ? `Value error, ${custom}` : `String should match pattern '${params.pattern}'`;
    case "enum": {
      const allowed = (params.allowedValues as unknown[]).map((v) => `'${String(v)}'`);
      const last = allowed.pop();
      return `Input should be ${allowed.length ? `${allowed.join(", ")} or ${last}` : last}`;
    }
    default:
      return error.message ?? error.keyword;
  }
}

/** Where: pydantic's `loc` joined with dots (`emails.0`), the missing or extra field included. */
function where(error: ErrorObject): string[] {
  const path = error.instancePath.split("/").slice(1).map((p) => p.replace(/~1/g, "/").replace(/~0/g, "~"));
  const params = error.params as Record<string, unknown>;
  if (error.keyword === "required") path.push(String(params.missingProperty));
  if (error.keyword === "additionalProperties") path.push(String(params.additionalProperty));
  return path;
}

/** pydantic checks a value's constraints in this order and reports the first that fails. */
const CONSTRAINT_ORDER = ["required", "additionalProperties", "type", "minLength", "maxLength", "pattern", "enum"];

/** The errors a person should read, as pydantic reports them: for `X | null` the X branch only, and one error
 * per value (the first constraint it fails). */
function relevant(errors: ErrorObject[]): ErrorObject[] {
  const first = new Map<string, ErrorObject>();
  const rank = (e: ErrorObject): number => {
    const index = CONSTRAINT_ORDER.indexOf(e.keyword);
    return index === -1 ? CONSTRAINT_ORDER.length : index;
  };
  for (const error of errors) {
    if (error.keyword === "anyOf") continue;
    if (error.keyword === "type" && (error.params as Record<string, unknown>).type === "null") continue;
    const key = where(error).join(".");
    const seen = first.get(key);
    if (seen === undefined || rank(error) < rank(seen)) first.set(key, error);
  }
  return errors.filter((e) => first.get(where(e).join(".")) === e);
}

/** pydantic's order: declared fields in their order (missing ones where they are declared), extras last. */
function order(actor: string, errors: ErrorObject[]): ErrorObject[] {
  const fields = Object.keys((CONTRACTS[actor as Actor].schema.properties as Record<string, unknown>) ?? {});
  const rank = (e: ErrorObject): number => {
    const index = fields.indexOf(where(e)[0] ?? "");
    return index === -1 ? fields.length : index;
  };
  return errors.map((e, i) => ({ e, i })).sort((a, b) => rank(a.e) - rank(b.e) || a.i - b.i).map(({ e }) => e);
}

export function parseVersion(version: string): [number, number] {
  const match = /^(\d+)(?:\.(\d+))?$/.exec(String(version));
  if (match === null) throw new Error(`contract_version ${JSON.stringify(version)} is not MAJOR.MINOR`);
  return [Number(match[1]), Number(match[2] ?? 0)];
}

/** The payload as plain kwargs (unset optionals dropped), or throws InvalidPayload / UnknownActor. */
export function validatePayload(actor: string, payload: unknown): Record<string, unknown> {
  if (!Object.prototype.hasOwnProperty.call(CONTRACTS, actor)) throw new UnknownActor(actor);
  if (payload === null || typeof payload !== "object" || Array.isArray(payload)) {
    throw new InvalidPayload(actor, "payload must be a JSON object");
  }
  const validate = validatorOf(actor);
  if (!validate(payload)) {
    const parts = order(actor, relevant(validate.errors ?? [])).map((e) => `${where(e).join(".") || "payload"}: ${message(e)}`);
    throw new InvalidPayload(actor, [...new Set(parts)].join("; "));
  }
  return Object.fromEntries(Object.entries(payload as Record<string, unknown>).filter(([, v]) => v !== null && v !== undefined));
}

export { CONTRACT_VERSION };
