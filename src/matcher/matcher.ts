import { networkMatcher } from "../address/cidr.js";
import { canonicalIp, InvalidIpError } from "../address/ip.js";
import type { LogEntry } from "../readers/types.js";
import { parseFieldList } from "./fields.js";
import type { AgentProfile } from "./profile.js";
import { type LogRecord, toRecord } from "./record.js";
import { SessionTable } from "./sessions.js";

/** A successful login, validated: the address is canonical and allowed to relay. */
export interface Login {
  user: string;
  ip: string;
  agent: string;
  /** pop3, imap... when the line says. */
  protocol?: string;
  /** When the server logged it (ms since the epoch), or when it was read if that is unknown. */
  time: number;
  /** Set when the entry's own time could not be used. */
  timeWarning?: string;
  /** The server's id of the session this login opens (profile `session.id`), when it has one. */
  session?: string;
}

/** A line that ends sessions (profile `session.end`), or all of them (`session.restart`). */
export interface SessionEndLine {
  /** The session id the line names; undefined for a restart. */
  key?: string;
  ip?: string;
  user?: string;
  time: number;
}

/** Why an entry grants nothing; `poprelay match` counts these. */
export type Rejection =
  | "unparsed" // not a log line poprelay can read
  | "no-match" // not a login line of this server
  | "spoof" // the right text from the wrong program
  | "ambiguous" // a field the server writes once appears twice: injected through the user name
  | "no-ip" // a login line without a usable client address
  | "pending" // an address line, remembered until its login line (see AgentProfile.correlate)
  | "session-end" // the end of one session (see AgentProfile.session)
  | "restart" // the server's master restarted: its sessions ended
  | "ignored" // the address is in match.ignore
  | "not-allowed"; // match.allow is set and the address is not in it

export type Verdict =
  | { accepted: true; login: Login; record: LogRecord }
  | {
      accepted: false;
      reason: Rejection;
      detail?: string;
      record?: LogRecord;
      /** With session-end and restart. */
      end?: SessionEndLine;
    };

export interface MatcherOptions {
  profile: AgentProfile;
  /**
   * match.regex: replaces the profile's patterns. Like them it runs on the message only (the
   * text after the tag, or MESSAGE), and only on lines of the profile's programs or trust
   * rules: another program's line that quotes a login (a Postfix reject line with a crafted
   * MAIL FROM) grants nothing.
   */
  regex?: string;
  ignore: readonly string[];
  allow: readonly string[];
}

// How far ahead of our clock a log time may be before it counts as wrong.
const FUTURE_SLACK_MS = 60_000;

/** Builds the pure function from a log entry to a verdict, for one profile and config. */
export function createMatcher(options: MatcherOptions): (entry: LogEntry, now: Date) => Verdict {
  const { profile } = options;
  const custom = options.regex ? new RegExp(options.regex) : undefined;
  const patterns = custom ? [custom] : profile.patterns;
  const ignored = networkMatcher(options.ignore);
  const allowed = options.allow.length > 0 ? networkMatcher(options.allow) : () => true;
  const programs = programMatcher(profile.programs);
  const sessions =
    profile.correlate && !custom
      ? new SessionTable(profile.correlate.windowSeconds * 1000)
      : undefined;

  return (entry, now) => {
    // The cheapest test first: most lines in a mail log are not logins at all. Session end
    // lines hold no login literal: a profile with session rules reads every line of its server.
    const prefiltered = custom !== undefined || entryIncludes(entry, profile.prefilter);
    if (!prefiltered && !profile.session) return { accepted: false, reason: "no-match" };
    const record = toRecord(entry, now);
    if (!record) return { accepted: false, reason: "unparsed" };
    const subject = record.message;
    const match = prefiltered ? firstMatch(patterns, subject) : undefined;
    const address =
      prefiltered && !match && sessions && profile.correlate
        ? firstMatch(profile.correlate.address, subject)
        : undefined;
    const end = !match && !address && profile.session ? sessionLine(profile, subject) : undefined;
    if (!match && !address && !end) return { accepted: false, reason: "no-match", record };

    const trust = trustProblem(profile, programs, record);
    if (trust) return { accepted: false, reason: "spoof", detail: trust, record };
    const time = record.time ?? now.getTime();
    if (end) return sessionEnd(end, record, Math.min(time, now.getTime()), profile);
    if (!match) {
      const key = address?.key ?? record.pid;
      if (key === undefined || !address?.ip)
        return {
          accepted: false,
          reason: "no-ip",
          detail: "an address line without a process id",
          record,
        };
      sessions?.remember(key, address.ip, time);
      return { accepted: false, reason: "pending", detail: address.ip, record };
    }

    let user = match.user;
    let ipText = match.ip;
    let fields: ReadonlyMap<string, string> | undefined;
    if (match.fields !== undefined && profile.fields) {
      const list = parseFieldList(match.fields);
      if (!list.ok)
        return {
          accepted: false,
          reason: "ambiguous",
          detail: list.problem,
          record,
        };
      fields = list.fields;
      user = list.fields.get(profile.fields.user);
      ipText = list.fields.get(profile.fields.ip);
    }
    if (ipText === undefined && sessions) {
      const key = match.key ?? record.pid;
      ipText = key === undefined ? undefined : sessions.take(key, time);
    }
    if (ipText === undefined || ipText === "") return { accepted: false, reason: "no-ip", record };
    let ip: string;
    try {
      ip = canonicalIp(ipText).address;
    } catch (error) {
      if (!(error instanceof InvalidIpError)) throw error;
      return { accepted: false, reason: "no-ip", detail: error.message, record };
    }
    if (ignored(ip)) return { accepted: false, reason: "ignored", detail: ip, record };
    if (!allowed(ip)) return { accepted: false, reason: "not-allowed", detail: ip, record };

    const login: Login = { user: user ?? "", ip, agent: profile.name, time: now.getTime() };
    if (match.protocol) login.protocol = match.protocol;
    if (profile.session && !custom) {
      const id = profile.session.id;
      const session = id === "pid" ? record.pid : (fields?.get(id) ?? match[id]);
      if (session) login.session = session;
    }
    if (record.time === undefined) {
      login.timeWarning = "the entry's time could not be read; using the time it was read";
    } else if (record.time > now.getTime() + FUTURE_SLACK_MS) {
      login.timeWarning = `the entry's time ${new Date(record.time).toISOString()} is in the future; using the time it was read`;
    } else {
      login.time = record.time;
    }
    return { accepted: true, login, record };
  };
}

function entryIncludes(entry: LogEntry, literal: string): boolean {
  if (entry.kind === "line") return entry.text.includes(literal);
  const message = entry.fields.MESSAGE;
  return typeof message === "string" && message.includes(literal);
}

interface Captures {
  user?: string;
  ip?: string;
  fields?: string;
  /** A session id that ties an address line to its login line, or that an end line names. */
  key?: string;
  protocol?: string;
  /** Other named groups: the one session.id names. */
  [group: string]: string | undefined;
}

/** The session end (or restart) a message is, for a profile with session rules. */
function sessionLine(profile: AgentProfile, message: string): Captures | "restart" | undefined {
  const rules = profile.session;
  if (!rules) return undefined;
  const end = firstMatch(rules.end, message);
  if (end) return end;
  return rules.restart.some((pattern) => pattern.test(message)) ? "restart" : undefined;
}

/** The verdict for a trusted session end line; `time` is never ahead of the clock. */
function sessionEnd(
  end: Captures | "restart",
  record: LogRecord,
  time: number,
  profile: AgentProfile,
): Verdict {
  if (end === "restart") return { accepted: false, reason: "restart", record, end: { time } };
  const key = end.key ?? (profile.session?.id === "pid" ? record.pid : undefined);
  if (key === undefined) return { accepted: false, reason: "no-match", record };
  const found: SessionEndLine = { key, time };
  if (end.ip !== undefined) {
    try {
      found.ip = canonicalIp(end.ip).address;
    } catch (error) {
      if (!(error instanceof InvalidIpError)) throw error;
      return { accepted: false, reason: "no-ip", detail: error.message, record };
    }
  }
  if (end.user !== undefined) found.user = end.user;
  return { accepted: false, reason: "session-end", detail: key, record, end: found };
}

function firstMatch(patterns: readonly RegExp[], text: string): Captures | undefined {
  for (const pattern of patterns) {
    const groups = pattern.exec(text)?.groups;
    if (groups) return groups;
  }
  return undefined;
}

/**
 * Whether a syslog tag is one of the profile's programs: exact names, and "PREFIX/*" for a
 * server whose tags name a service the site chooses (Cyrus: cyrus/pop36).
 */
function programMatcher(names: readonly string[]): (program: string) => boolean {
  const exact = new Set(names.filter((name) => !name.endsWith("/*")));
  const prefixes = names.filter((name) => name.endsWith("/*")).map((name) => name.slice(0, -1));
  return (program) =>
    exact.has(program) ||
    prefixes.some((prefix) => program.length > prefix.length && program.startsWith(prefix));
}

/** Why the record cannot be the server's own, or undefined when it is. */
function trustProblem(
  profile: AgentProfile,
  programs: (program: string) => boolean,
  record: LogRecord,
): string | undefined {
  if (record.trusted) {
    const trusted = record.trusted;
    const ok = profile.journal.some((rule) =>
      Object.entries(rule).every(([k, v]) => trusted[k] === v),
    );
    if (!ok) {
      const seen = ["_SYSTEMD_UNIT", "_EXE", "_UID"]
        .map((k) => `${k}=${trusted[k] ?? "(none)"}`)
        .join(" ");
      return `journal entry not from ${profile.name}: ${seen}`;
    }
  }
  if (record.program === undefined) {
    return profile.ownLogFile || record.trusted ? undefined : `a line without a program tag`;
  }
  if (!programs(record.program))
    return `program ${JSON.stringify(record.program)} is not ${profile.name}'s`;
  return undefined;
}
