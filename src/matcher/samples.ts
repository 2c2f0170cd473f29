/**
 * A profile's annotated sample lines (NAME.samples beside NAME.yaml), as fail2ban keeps test
 * logs beside its filters: real lines first, each preceded by what it must yield.
 *
 *   # expect: {"user": "...", "ip": "..."}      a login that grants relay to exactly this
 *   # reject: REASON  why                       no-match, spoof, ambiguous, no-ip, pending...
 *
 * Other `#` lines are comments (where the lines came from). A line that starts with "{" is a
 * journal entry as `journalctl -o json` prints it. The lines run in order through one matcher,
 * so an address line is remembered for the login line after it.
 */
import { readFileSync } from "node:fs";
import type { JournalFields, LogEntry } from "../readers/types.js";
import { createMatcher, type Rejection } from "./matcher.js";
import type { AgentProfile } from "./profile.js";

export interface Sample {
  /** 1-based line number in the samples file. */
  line: number;
  entry: LogEntry;
  expect: { user: string; ip: string } | { reject: Rejection; why: string };
}

const EXPECT = /^# expect: (\{.*\})$/;
const REJECT = /^# reject: ([a-z-]+)\s+(.*)$/;
const REASONS: ReadonlySet<string> = new Set<Rejection>([
  "unparsed",
  "no-match",
  "spoof",
  "ambiguous",
  "no-ip",
  "pending",
  "session-end",
  "restart",
  "ignored",
  "not-allowed",
]);

/** Parses a samples file; a malformed annotation, or a line without one, throws naming it. */
export function parseSamples(text: string, file: string): Sample[] {
  const samples: Sample[] = [];
  let pending: Sample["expect"] | undefined;
  text.split("\n").forEach((line, index) => {
    const where = `${file}:${index + 1}`;
    const expect = EXPECT.exec(line);
    const reject = REJECT.exec(line);
    if (expect?.[1] || reject?.[1]) {
      if (pending) throw new Error(`${where}: annotation without a sample line before it`);
      pending = expect?.[1] ? parseExpect(expect[1], where) : parseReject(reject, where);
      return;
    }
    if (line === "" || line.startsWith("#")) return;
    if (!pending) throw new Error(`${where}: sample line without an annotation`);
    let entry: LogEntry;
    if (line.startsWith("{")) {
      try {
        entry = { kind: "journal", fields: JSON.parse(line) as JournalFields };
      } catch (error) {
        throw new Error(`${where}: journal entry is not JSON: ${(error as Error).message}`);
      }
    } else entry = { kind: "line", text: line };
    samples.push({ line: index + 1, entry, expect: pending });
    pending = undefined;
  });
  if (pending) throw new Error(`${file}: the last annotation has no sample line`);
  return samples;
}

function parseExpect(json: string, where: string): Sample["expect"] {
  let value: unknown;
  try {
    value = JSON.parse(json);
  } catch (error) {
    throw new Error(`${where}: expect: not JSON: ${(error as Error).message}`);
  }
  const { user, ip } = (value ?? {}) as Record<string, unknown>;
  if (
    typeof user !== "string" ||
    typeof ip !== "string" ||
    Object.keys(value as object).length !== 2
  )
    throw new Error(`${where}: expect: must be {"user": "...", "ip": "..."}`);
  return { user, ip };
}

function parseReject(match: RegExpExecArray | null, where: string): Sample["expect"] {
  const reason = match?.[1] ?? "";
  if (!REASONS.has(reason))
    throw new Error(
      `${where}: reject: ${JSON.stringify(reason)} is not one of ${[...REASONS].join(", ")}`,
    );
  return { reject: reason as Rejection, why: match?.[2] ?? "" };
}

export function readSamples(file: string): Sample[] {
  return parseSamples(readFileSync(file, "utf8"), file);
}

/** One sample's outcome: undefined when it yields what its annotation says. */
export interface SampleResult {
  sample: Sample;
  /** What went wrong, or undefined. */
  failure: string | undefined;
  /** The entry's own time was not used (unreadable, or in the future). */
  timeWarning: string | undefined;
}

/** Runs every sample, in order, through one matcher of the profile (no ignore, no allow). */
export function runSamples(
  profile: AgentProfile,
  samples: readonly Sample[],
  now: Date,
): SampleResult[] {
  const match = createMatcher({ profile, ignore: [], allow: [] });
  return samples.map((sample) => {
    const verdict = match(sample.entry, now);
    const { expect } = sample;
    let failure: string | undefined;
    if ("user" in expect) {
      if (!verdict.accepted)
        failure = `expected ${expect.ip} for ${JSON.stringify(expect.user)}, got ${verdict.reason}${verdict.detail ? ` (${verdict.detail})` : ""}`;
      else if (verdict.login.ip !== expect.ip || verdict.login.user !== expect.user)
        failure = `expected ${expect.ip} for ${JSON.stringify(expect.user)}, got ${verdict.login.ip} for ${JSON.stringify(verdict.login.user)}`;
    } else if (verdict.accepted) {
      failure = `expected ${expect.reject}, but it grants ${verdict.login.ip} for ${JSON.stringify(verdict.login.user)}`;
    } else if (verdict.reason !== expect.reject) {
      failure = `expected ${expect.reject}, got ${verdict.reason}${verdict.detail ? ` (${verdict.detail})` : ""}`;
    }
    return {
      sample,
      failure,
      timeWarning: verdict.accepted ? verdict.login.timeWarning : undefined,
    };
  });
}
