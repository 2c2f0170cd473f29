import { createReadStream } from "node:fs";
import type { Readable } from "node:stream";
import { createMatcher, type Rejection, type Verdict } from "../matcher/matcher.js";
import type { AgentProfile } from "../matcher/profile.js";
import { parseJournalJson } from "../readers/journal-json.js";
import { LineSplitter } from "../readers/lines.js";
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

/**
 * `poprelay match`: runs one profile over a log, as fail2ban-regex does for a filter. Logins go
 * to stdout (one JSON object each with --json); the summary, and with -v each refused line and
 * why, go to stderr.
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
  // Most lines of a mail log are not logins: skip them before any parsing.
  const prefilter = options.regex ? "" : profile.prefilter;
  const splitter = new LineSplitter();
  let output = "";
  const reject = (reason: Rejection) => {
    summary.rejected[reason] = (summary.rejected[reason] ?? 0) + 1;
  };
  const handle = (text: string) => {
    summary.lines++;
    if (!text.includes(prefilter)) return reject("no-match");
    const entry = toEntry(text);
    const verdict: Verdict = entry
      ? match(entry, now)
      : { accepted: false, reason: "unparsed", detail: "not valid JSON" };
    if (verdict.accepted) {
      summary.matched++;
      const { user, ip, agent, protocol } = verdict.login;
      output += options.json
        ? `${JSON.stringify({ user, ip, agent, protocol: protocol ?? null })}\n`
        : `${summary.lines}: ${ip} ${JSON.stringify(user)}${protocol ? ` ${protocol}` : ""}\n`;
      return;
    }
    reject(verdict.reason);
    if (options.verbose && verdict.reason !== "no-match") {
      options.err(
        `${summary.lines}: ${verdict.reason}${verdict.detail ? ` (${verdict.detail})` : ""}: ${text.slice(0, 200)}\n`,
      );
    }
  };
  const stream: Readable =
    options.input === "-"
      ? process.stdin
      : createReadStream(options.input, { highWaterMark: 1 << 20 });
  for await (const chunk of stream) {
    for (const text of splitter.push(chunk as Buffer)) handle(text);
    if (output.length > 1 << 16) {
      options.out(output);
      output = "";
    }
  }
  const last = splitter.flush();
  if (last !== undefined) handle(last);
  options.out(output);
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
