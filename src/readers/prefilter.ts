/**
 * The agent's prefilter on raw input, before any parsing: a literal every login line holds
 * (dovecot: "-login: "). A line of text, or a line of `journalctl -o json`, that does not hold
 * it cannot be a login, so it is counted and skipped without being decoded or parsed.
 *
 * Exact only for a literal that is spelled the same in UTF-8 text and inside a JSON string:
 * printable ASCII without `"` or `\`. ASCII bytes decode to themselves whatever surrounds them,
 * and journalctl escapes nothing else in a string. A MESSAGE that journalctl prints as an array
 * of bytes (not valid UTF-8) holds the literal only once decoded: such lines always pass.
 */

/** How journalctl starts a MESSAGE that is not valid UTF-8 (or repeated): an array. */
export const ARRAY_MESSAGE = `"MESSAGE":[`;

/** The literal, when it can be looked for in raw lines; undefined when it cannot. */
export function rawPrefilter(literal: string): string | undefined {
  if (literal === "" || !/^[\x20-\x7e]+$/.test(literal) || /["\\]/.test(literal)) return undefined;
  return literal;
}

/** Whether a raw line (text or journalctl JSON) may hold a login for this literal. */
export function mayMatch(line: string, literal: string): boolean {
  return line.includes(literal) || line.includes(ARRAY_MESSAGE);
}

const CURSOR_KEY = `"__CURSOR":"`;
const CURSOR = /^[a-z]=[^;\s"\\]*(?:;[a-z]=[^;\s"\\]*)*$/;

/**
 * The __CURSOR of a line of journalctl JSON, without parsing the rest; undefined when it is
 * not plainly there. Inside a JSON string every quote is escaped, so `"__CURSOR":"` can only be
 * the key itself (field names are A-Z, 0-9 and _), and a cursor holds no quote or backslash.
 */
export function rawCursor(line: string): string | undefined {
  const at = line.indexOf(CURSOR_KEY);
  if (at === -1 || line.indexOf(CURSOR_KEY, at + 1) !== -1) return undefined;
  const start = at + CURSOR_KEY.length;
  const end = line.indexOf('"', start);
  if (end === -1) return undefined;
  const cursor = line.slice(start, end);
  return CURSOR.test(cursor) ? cursor : undefined;
}
