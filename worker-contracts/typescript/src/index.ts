/** The worker service's contracts for Node: a typed, validated Sender, and the check of outcome events. */
export { type Actor, CONTRACT_VERSION, CONTRACTS, type Payloads } from "./contracts.generated.js";
export type {
  CrmAddNote, CrmCreateLead, CrmHandleWebhook, CrmUpsertContact, ExtractKnowledge, ProcessAsset,
} from "./contracts.generated.js";
export { type ConnectOptions, redisOptions, Sender, type SendOptions } from "./sender.js";
export { InvalidPayload, UnknownActor, validatePayload } from "./validate.js";
export { type EventName, InvalidSignature, type OutcomeEvent, parseEvent, sign, verifyEvent } from "./events.js";
