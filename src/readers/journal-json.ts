/**
 * One line of `journalctl --output=json` → JournalFields. Pure: used by the journal reader and by
 * `poprelay match` on JSON input.
 *
 * journalctl prints one object per entry, one line each. A field's value is (journalctl(1),
 * "json"; checked against journalctl 252):
 * - a string;
 * - null when the value is over 4096 bytes and `--all` was not given;
 * - an array of byte values (0-255) when it is not valid UTF-8 or holds unprintable bytes
 *   (tab and other control characters, but not newline): decoded here as UTF-8, invalid
 *   sequences becoming U+FFFD;
 * - an array of the above when the field is repeated in the entry (`["a",[255]]`): a string[]
 *   here, a null element (an over-long repeat) becoming "".
 */

import type { JournalFields } from "./types.js";

export class JournalJsonError extends Error {
  override name = "JournalJsonError";
}

const decoder = new TextDecoder("utf-8", { fatal: false, ignoreBOM: true });

/** The most characters of a bad line quoted in an error message. */
const QUOTED = 120;

/** `line` cut to a readable length for a log message, with JSON-style escapes. */
export function quoteLine(line: string, max = QUOTED): string {
  const cut = line.length > max ? `${line.slice(0, max)}…` : line;
  return JSON.stringify(cut);
}

function isByteArray(value: unknown[]): value is number[] {
  for (const b of value) {
    if (typeof b !== "number" || !Number.isInteger(b) || b < 0 || b > 255) return false;
  }
  return true;
}

function single(value: unknown): string | null | undefined {
  if (typeof value === "string") return value;
  if (value === null) return null;
  if (Array.isArray(value) && isByteArray(value)) return decoder.decode(Uint8Array.from(value));
  return undefined;
}

/**
 * One field's value as journalctl prints it → string, string[] (repeated field) or null.
 * `undefined` when it is none of journalctl's shapes.
 */
export function decodeJournalValue(value: unknown): string | string[] | null | undefined {
  const one = single(value);
  if (one !== undefined) return one;
  if (!Array.isArray(value) || value.length === 0) return undefined;
  // An array that is not a byte array: the values of a repeated field.
  const values: string[] = [];
  for (const element of value) {
    const decoded = single(element);
    if (decoded === undefined) return undefined;
    values.push(decoded ?? "");
  }
  return values;
}

/**
 * Parses one line of `journalctl -o json`. Throws JournalJsonError when the line is not JSON or
 * not an object; a field whose value has none of journalctl's shapes (a number, a nested object)
 * becomes null, like a value journalctl could not print, so the rest of the entry is kept.
 */
export function parseJournalJson(line: string): JournalFields {
  let parsed: unknown;
  try {
    parsed = JSON.parse(line);
  } catch (error) {
    throw new JournalJsonError(`not JSON (${(error as Error).message}): ${quoteLine(line)}`);
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    throw new JournalJsonError(`not a JSON object: ${quoteLine(line)}`);
  }
  // In place: JSON.parse made a plain object whose properties are all its own (a "__proto__"
  // key included, which assignment then updates as an own property too). Most values are
  // strings already; only the others are rewritten.
  const fields = parsed as Record<string, unknown>;
  for (const name of Object.keys(fields)) {
    const value = fields[name];
    if (typeof value !== "string") fields[name] = decodeJournalValue(value) ?? null;
  }
  return fields as JournalFields;
}
