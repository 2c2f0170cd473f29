/**
 * Postfix's SMTP access policy delegation protocol (SMTPD_POLICY_README), without I/O.
 *
 * A request is `name=value` lines, each ended by one newline byte, and the request by an empty
 * line; the answer is `action=...` and an empty line. Postfix keeps the connection for further
 * requests, so a parser lives as long as its connection. Anything that is not such a request
 * is reported, never guessed at: the peer is not the Postfix we were configured for, and after
 * a bad line there is no telling where the next request would begin.
 */

const NEWLINE = 0x0a;
const NUL = 0x00;

export interface RequestLimits {
  /** Bytes of one request, newlines included. Postfix 3.7's full request is under 1 KiB. */
  maxBytes: number;
  /** Attributes in one request. Postfix 3.7 sends about 30. */
  maxAttributes: number;
}

export const DEFAULT_LIMITS: RequestLimits = { maxBytes: 16 * 1024, maxAttributes: 1000 };

export type ParseEvent =
  | { kind: "request"; attributes: Map<string, string> }
  | { kind: "error"; reason: string };

/**
 * Incremental parser: feed it a connection's bytes in order with `push`, get back the requests
 * they complete. Lines are decoded only once whole, so chunks may cut lines and UTF-8
 * characters anywhere (invalid UTF-8 becomes U+FFFD). After an error it ignores all input.
 */
export class RequestParser {
  private readonly limits: RequestLimits;
  /** The partial line's bytes (copies: the caller may reuse its buffers). */
  private held: Buffer[] = [];
  /** Bytes of the request being read, its partial line included. */
  private requestBytes = 0;
  private attributes = new Map<string, string>();
  private failed = false;

  constructor(limits: Partial<RequestLimits> = {}) {
    this.limits = { ...DEFAULT_LIMITS, ...limits };
  }

  push(chunk: Uint8Array): ParseEvent[] {
    const events: ParseEvent[] = [];
    if (this.failed) return events;
    const bytes = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    // Lines before the first NUL are clean; the line that holds it is refused.
    const nul = bytes.indexOf(NUL);
    let start = 0;
    while (start < bytes.length) {
      const newline = bytes.indexOf(NEWLINE, start);
      const end = newline === -1 ? bytes.length : newline;
      // Counted before anything is held: memory stays bounded by maxBytes per connection.
      this.requestBytes += end - start + (newline === -1 ? 0 : 1);
      if (this.requestBytes > this.limits.maxBytes)
        return this.fail(events, `request longer than ${this.limits.maxBytes} bytes`);
      if (nul !== -1 && nul < end)
        return this.fail(events, `NUL byte in line ${this.attributes.size + 1} of the request`);
      if (newline === -1) {
        this.held.push(Buffer.from(bytes.subarray(start)));
        break;
      }
      // A line ends at a 0x0A byte, which is never part of a multi-byte character.
      const line =
        this.held.length === 0
          ? bytes.toString("utf8", start, end)
          : Buffer.concat([...this.held, bytes.subarray(start, end)]).toString("utf8");
      this.held = [];
      start = newline + 1;
      const error = this.line(line, events);
      if (error) return this.fail(events, error);
    }
    return events;
  }

  /** Takes one complete line (without its newline); returns the reason it is refused. */
  private line(text: string, events: ParseEvent[]): string | undefined {
    if (text === "") {
      events.push({ kind: "request", attributes: this.attributes });
      this.attributes = new Map();
      this.requestBytes = 0;
      return undefined;
    }
    const number = this.attributes.size + 1;
    const eq = text.indexOf("=");
    if (eq === -1) return `line ${number} is not name=value: ${excerpt(text)}`;
    if (eq === 0) return `line ${number} has an empty name: ${excerpt(text)}`;
    const name = text.slice(0, eq);
    if (this.attributes.has(name)) return `duplicate attribute ${excerpt(name)}`;
    if (number > this.limits.maxAttributes)
      return `more than ${this.limits.maxAttributes} attributes in one request`;
    this.attributes.set(name, text.slice(eq + 1));
    return undefined;
  }

  private fail(events: ParseEvent[], reason: string): ParseEvent[] {
    this.failed = true;
    this.held = [];
    this.attributes = new Map();
    events.push({ kind: "error", reason });
    return events;
  }
}

/** The answer to one request: `action=ACTION` and the empty line that ends it. */
export function reply(action: string): string {
  if (action === "" || /[\r\n]/.test(action))
    throw new Error(`a policy action is one non-empty line: ${excerpt(action)}`);
  return `action=${action}\n\n`;
}

/**
 * Peer-supplied text made safe for a log line: JSON-quoted (control characters and quotes
 * escaped, so it cannot forge a record) and cut to `max` characters.
 */
export function excerpt(text: string, max = 64): string {
  return JSON.stringify(text.length > max ? `${text.slice(0, max)}…` : text);
}
