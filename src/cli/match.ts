import { closeSync, openSync, readSync } from "node:fs";
import { createMatcher, type Rejection, type Verdict } from "../matcher/matcher.js";
import type { AgentProfile } from "../matcher/profile.js";
import { parseJournalJson } from "../readers/journal-json.js";
import { DEFAULT_MAX_LINE_BYTES, decodeLine } from "../readers/lines.js";
import { ARRAY_MESSAGE, rawPrefilter } from "../readers/prefilter.js";
import type { LogEntry } from "../readers/types.js";

export interface MatchRunOptions {
  profile: AgentProfile;
  regex: string;
  ignore: readonly string[];
  allow: readonly string[];
  /** A path, or "-" for standard input. */
  input: string;
  json: boolean;
  verbose: boolean;
  out: (text: string) => void;
  err: (text: string) => void;
}

export interface MatchSummary {
  lines: number;
  matched: number;
  rejected: Partial<Record<Rejection, number>>;
  seconds: number;
}

/** One line of input: `journalctl -o json` output, or a text log line. */
function toEntry(text: string): LogEntry | undefined {
  if (!text.startsWith("{")) return { kind: "line", text };
  try {
    return { kind: "journal", fields: parseJournalJson(text) };
  } catch {
    return undefined;
  }
}

/** The longest line looked at; longer ones are dropped whole, as the readers do. */
const MAX_LINE_BYTES = DEFAULT_MAX_LINE_BYTES;
const NEWLINE = 0x0a;
const READ_BYTES = 4 << 20;
const OPEN_BRACE = 0x7b;
const BYTE_ARRAY_MESSAGE = Buffer.from(ARRAY_MESSAGE);
const OUTPUT_BYTES = 64 << 10;

/**
 * Gathers output lines as bytes and hands them on in large pieces. A string grown with `+=`
 * keeps every piece alive until it is written: each young-generation collection then copied
 * them all, and those collections took a quarter of a replay's time.
 */
class Output {
  private readonly bytes = Buffer.allocUnsafe(OUTPUT_BYTES);
  private length = 0;

  constructor(private readonly out: (text: string) => void) {}

  write(text: string): void {
    // At most 3 bytes per UTF-16 unit: a line that may not fit goes after what is held.
    if (this.length + text.length * 3 > OUTPUT_BYTES) {
      this.flush();
      if (text.length * 3 > OUTPUT_BYTES) {
        this.out(text);
        return;
      }
    }
    this.length += this.bytes.write(text, this.length);
  }

  flush(): void {
    if (this.length === 0) return;
    this.out(this.bytes.toString("utf8", 0, this.length));
    this.length = 0;
  }
}

/**
 * `poprelay match`: runs one profile over a log, as fail2ban-regex does for a filter. Logins go
 * to stdout (one JSON object each with --json); the summary, and with -v each refused line and
 * why, go to stderr.
 *
 * Most lines of a mail log are not logins. The profile's prefilter literal is searched for in
 * the bytes as read (memchr-fast, no string made): only lines that hold it become strings and
 * reach the matcher; the others are counted by their newlines. ASCII bytes are the same before
 * and after UTF-8 decoding, so this finds exactly the lines that `includes(prefilter)` would.
 * Journal lines whose MESSAGE is a byte array hold the literal only once decoded: they always
 * go to the matcher.
 */
export async function runMatch(options: MatchRunOptions): Promise<MatchSummary> {
  const { profile } = options;
  const match = createMatcher({
    profile,
    regex: options.regex || undefined,
    ignore: options.ignore,
    allow: options.allow,
  });
  const summary: MatchSummary = { lines: 0, matched: 0, rejected: {}, seconds: 0 };
  const started = process.hrtime.bigint();
  const now = new Date();
  const prefilter = options.regex ? "" : profile.prefilter;
  const literal = rawPrefilter(prefilter);
  const needle = literal === undefined ? undefined : Buffer.from(literal, "latin1");
  const output = new Output(options.out);
  const reject = (reason: Rejection, count = 1) => {
    summary.rejected[reason] = (summary.rejected[reason] ?? 0) + count;
  };
  const handle = (text: string) => {
    summary.lines++;
    // The matcher tries the prefilter first, on the decoded MESSAGE of a journal entry.
    const entry = toEntry(text);
    const verdict: Verdict = entry
      ? match(entry, now)
      : { accepted: false, reason: "unparsed", detail: "not valid JSON" };
    if (verdict.accepted) {
      summary.matched++;
      const { user, ip, agent, protocol } = verdict.login;
      output.write(
        options.json
          ? `${JSON.stringify({ user, ip, agent, protocol: protocol ?? null })}\n`
          : `${summary.lines}: ${ip} ${JSON.stringify(user)}${protocol ? ` ${protocol}` : ""}\n`,
      );
      return;
    }
    reject(verdict.reason);
    if (options.verbose && verdict.reason !== "no-match") {
      options.err(
        `${summary.lines}: ${verdict.reason}${verdict.detail ? ` (${verdict.detail})` : ""}: ${text.slice(0, 200)}\n`,
      );
    }
  };
  /** Lines [from, to) of `bytes` (each ending in a newline) that cannot match: counted only. */
  const skip = (bytes: Buffer, from: number, to: number) => {
    let count = 0;
    for (let at = bytes.indexOf(NEWLINE, from); at !== -1 && at < to; ) {
      count++;
      at = bytes.indexOf(NEWLINE, at + 1);
    }
    summary.lines += count;
    if (count > 0) reject("no-match", count);
  };
  const line = (bytes: Buffer, start: number, end: number) => {
    if (end - start > MAX_LINE_BYTES) return; // dropped whole, as the readers drop it
    handle(decodeLine(bytes, start, end));
  };
  /** The complete lines in bytes[0, end) (end just after a newline). */
  const lines = (bytes: Buffer, end: number) => {
    if (!needle) {
      let start = 0;
      for (
        let nl = bytes.indexOf(NEWLINE);
        nl !== -1 && nl < end;
        nl = bytes.indexOf(NEWLINE, start)
      ) {
        line(bytes, start, nl);
        start = nl + 1;
      }
      return;
    }
    // Lines that hold the literal, or are journal entries with a byte-array MESSAGE.
    let done = 0;
    let literal = bytes.indexOf(needle);
    let array = bytes.indexOf(BYTE_ARRAY_MESSAGE);
    for (;;) {
      if (literal !== -1 && literal >= end) literal = -1;
      if (array !== -1 && array >= end) array = -1;
      let hit: number;
      if (literal === -1) {
        if (array === -1) break;
        hit = array;
      } else {
        hit = array === -1 ? literal : Math.min(literal, array);
      }
      const start = bytes.lastIndexOf(NEWLINE, hit) + 1;
      const stop = bytes.indexOf(NEWLINE, hit);
      if (
        hit === array &&
        bytes[start] !== OPEN_BRACE &&
        !bytes.subarray(start, stop).includes(needle)
      ) {
        // A text line that merely quotes the JSON spelling: it cannot match.
      } else {
        skip(bytes, done, start);
        line(bytes, start, stop);
        done = stop + 1;
      }
      if (literal !== -1 && literal <= stop) literal = bytes.indexOf(needle, stop + 1);
      if (array !== -1 && array <= stop) array = bytes.indexOf(BYTE_ARRAY_MESSAGE, stop + 1);
    }
    skip(bytes, done, end);
  };

  /** A line begun in an earlier chunk. */
  let held: Buffer[] = [];
  let heldBytes = 0;
  const feed = (data: Buffer) => {
    let chunk = data;
    if (chunk.lastIndexOf(NEWLINE) === -1) {
      held.push(Buffer.from(chunk));
      heldBytes += chunk.length;
      if (heldBytes > MAX_LINE_BYTES + 1) {
        // Far too long to keep: keep its length only, and drop it when it ends.
        held = [Buffer.alloc(MAX_LINE_BYTES + 1)];
        heldBytes = MAX_LINE_BYTES + 1;
      }
      return;
    }
    if (heldBytes > 0) {
      // The held line ends in this chunk: handle it on its own, then the rest.
      const first = chunk.indexOf(NEWLINE);
      // A line over the limit is dropped whole, as the readers drop it.
      if (heldBytes + first <= MAX_LINE_BYTES) {
        held.push(chunk.subarray(0, first + 1));
        const whole = Buffer.concat(held);
        lines(whole, whole.length);
      }
      held = [];
      heldBytes = 0;
      chunk = chunk.subarray(first + 1);
    }
    const end = chunk.lastIndexOf(NEWLINE) + 1;
    lines(chunk, end);
    if (end < chunk.length) {
      // A copy: the caller reuses its buffer.
      held.push(Buffer.from(chunk.subarray(end)));
      heldBytes += chunk.length - end;
    }
  };
  if (options.input === "-") {
    for await (const data of process.stdin) feed(data as Buffer);
  } else {
    // Read synchronously into one buffer: a stream's fresh buffer per chunk costs more in
    // allocation and garbage collection than the matching itself.
    const fd = openSync(options.input, "r");
    try {
      const buffer = Buffer.allocUnsafe(READ_BYTES);
      for (;;) {
        const read = readSync(fd, buffer, 0, READ_BYTES, null);
        if (read === 0) break;
        feed(buffer.subarray(0, read));
      }
    } finally {
      closeSync(fd);
    }
  }
  if (heldBytes > 0 && heldBytes <= MAX_LINE_BYTES) {
    const last = Buffer.concat(held);
    handle(decodeLine(last, 0, last.length));
  }
  output.flush();
  summary.seconds = Number(process.hrtime.bigint() - started) / 1e9;
  return summary;
}

export function formatSummary(s: MatchSummary): string {
  const rejected = Object.values(s.rejected).reduce((a, b) => a + (b ?? 0), 0);
  const reasons = Object.entries(s.rejected)
    .sort(([, a], [, b]) => (b ?? 0) - (a ?? 0))
    .map(([reason, n]) => `${reason} ${n}`)
    .join(", ");
  const rate = s.seconds > 0 ? Math.round(s.lines / s.seconds) : 0;
  return [
    `lines: ${s.lines}, matched: ${s.matched}, rejected: ${rejected}${reasons ? ` (${reasons})` : ""}`,
    `seconds: ${s.seconds.toFixed(3)}, lines/s: ${rate}`,
  ].join("\n");
}
