/**
 * Splits a server's "key=value, key=<value>, key=[value], word" list, as Dovecot and Courier
 * write them. A bracketed value ends only at its closing bracket followed by ", " or the end,
 * so commas and spaces inside a user name stay in it. A key that appears twice, a bracket that
 * is never closed, or a square-bracketed value holding a "[" makes the list unusable: a user
 * name is the only way to get any of them. An unclosed `ip=[` in one would swallow the
 * server's own `rip=` after it; a `rip=[` in Courier's unbracketed name would swallow the
 * server's own `ip=[...]`, whose "[" is then inside. Server-written square-bracketed values
 * (addresses, ports) hold no "["; a name in angle brackets may hold anything.
 */
export type FieldList =
  | { ok: true; fields: ReadonlyMap<string, string> }
  | { ok: false; problem: string };

const SEPARATOR = ", ";
// Sticky: matched at `lastIndex`, without cutting the text into pieces first.
const KEY = /[a-z][a-z0-9_-]{0,31}=/y;
const CLOSERS: Record<string, string> = { "<": ">", "[": "]" };

export function parseFieldList(text: string): FieldList {
  const fields = new Map<string, string>();
  let at = 0;
  while (at < text.length) {
    KEY.lastIndex = at;
    // Tested, then sliced: no match array made for each field.
    const key = KEY.test(text) ? text.slice(at, KEY.lastIndex - 1) : undefined;
    let end: number;
    if (key === undefined) {
      // A bare word such as "TLS" or "secured": no key, nothing to capture.
      end = nextSeparator(text, at);
    } else {
      const valueStart = at + key.length + 1;
      const closer = CLOSERS[text[valueStart] ?? ""];
      let value: string;
      if (closer) {
        const close = closingAt(text, valueStart + 1, closer);
        if (close === -1)
          return { ok: false, problem: `${key}=${text[valueStart]} is never closed` };
        end = close + 1;
        value = text.slice(valueStart + 1, close);
        if (closer === "]" && value.includes("["))
          return { ok: false, problem: `${key}=[ holds another [` };
      } else {
        end = nextSeparator(text, valueStart);
        value = text.slice(valueStart, end);
      }
      if (fields.has(key)) return { ok: false, problem: `${key}= appears twice` };
      fields.set(key, value);
    }
    at = end + SEPARATOR.length;
  }
  return { ok: true, fields };
}

function nextSeparator(text: string, from: number): number {
  const found = text.indexOf(SEPARATOR, from);
  return found === -1 ? text.length : found;
}

/** Index of the closer that is followed by ", " or the end; -1 when there is none. */
function closingAt(text: string, from: number, closer: string): number {
  for (let i = text.indexOf(closer, from); i !== -1; i = text.indexOf(closer, i + 1)) {
    if (i + 1 === text.length || text.startsWith(SEPARATOR, i + 1)) return i;
  }
  return -1;
}
