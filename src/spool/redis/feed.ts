import { isCanonicalIp } from "../../address/ip.js";
import { entryFromRecord } from "../entry.js";
import type { SpoolEntry } from "../types.js";

/** One change as the scripts publish it (see scripts.ts), at its version. */
export type FeedMessage =
  | { version: number; op: "put"; entries: SpoolEntry[] }
  | { version: number; op: "remove"; ips: string[] };

/**
 * A message from the change channel, checked field by field: anyone who can publish to Redis
 * can send one. Undefined when it is not a change this version of poprelay wrote.
 */
export function parseFeedMessage(text: string): FeedMessage | undefined {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof value !== "object" || value === null) return undefined;
  const { v, op, entries, ips } = value as Record<string, unknown>;
  if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 1) return undefined;
  if (op === "put" && typeof entries === "object" && entries !== null) {
    const parsed: SpoolEntry[] = [];
    for (const [ip, record] of Object.entries(entries)) {
      const entry = entryFromRecord(ip, record);
      if (!entry) return undefined;
      parsed.push(entry);
    }
    return { version: v, op, entries: parsed };
  }
  if (
    op === "remove" &&
    Array.isArray(ips) &&
    ips.every((ip) => typeof ip === "string" && isCanonicalIp(ip))
  )
    return { version: v, op, ips: ips as string[] };
  return undefined;
}
