/**
 * Reads one agent profile file (agents.d/NAME.yaml). The format, every key:
 *
 *   name: dovecot                  # = the file name without .yaml; the instance name poprelay@NAME
 *   summary: one line              # for `poprelay agents`
 *   covers: [servers and versions] # what the profile was written and checked against
 *   programs: [syslog tags]        # the server's SYSLOG_IDENTIFIERs (or PREFIX/*: cyrus/*); others never match
 *   own_log_file: false            # true: tagless lines (the server's own log file) count too
 *   journal: ["_SYSTEMD_UNIT=x.service", "_EXE=/usr/sbin/x _UID=0"]
 *                                  # trust rules, as match.trusted: one must hold, every field in it
 *   prefilter: "literal"           # text every line the profile reads contains ("": none, slower)
 *   patterns: ['^...$']            # anchored JavaScript regexes over the message (the text after
 *                                  # the tag); groups user and ip, or fields (a key=value list)
 *   fields: {user: user, ip: rip}  # with a fields group: the keys that hold the user and address
 *   correlate:                     # two-line logins: the address on one line, the login on another
 *     address: ['^Session from (?<ip>...)$']  # remembered by pid, or by the group key
 *     window: 20m                  # how long an address waits for its login (log time)
 *   session:                       # how a session ends (relay while it is open)
 *     id: pid                      # pid, or a field / named group of the login line (session)
 *     end: ['^...$']               # lines that close one session: groups key, ip, user (by pid: none needed)
 *     restart: ['^...$']           # lines that close them all (the master restarted)
 *   samples:
 *     file: dovecot.samples        # beside this file: annotated sample lines (samples.ts)
 *     provenance: captured         # captured, source (read from source) or both
 *
 * Every problem is reported, each as "FILE: KEY: why", and the profile is refused. Patterns
 * must be anchored (^...$): a profile reads attacker-controlled text, and an unanchored pattern
 * matches a quotation of the server's line inside another one.
 */
import { basename, dirname, join } from "node:path";
import { requireCjs } from "../cjs.js";
import { parseDuration } from "../config/duration.js";
import type { AgentProfile, SampleProvenance, SessionRules } from "./profile.js";
import { parseTrustRule } from "./trust-rule.js";

const { parse } = requireCjs("yaml") as typeof import("yaml");

export class ProfileError extends Error {
  constructor(readonly problems: string[]) {
    super(problems.join("\n"));
    this.name = "ProfileError";
  }
}

export const PROFILE_NAME = /^[a-z0-9][a-z0-9._-]{0,63}$/;
const KEYS = new Set([
  "name",
  "summary",
  "covers",
  "programs",
  "own_log_file",
  "journal",
  "prefilter",
  "patterns",
  "fields",
  "correlate",
  "session",
  "samples",
]);
const PROVENANCES: readonly SampleProvenance[] = ["captured", "source", "both"];

/** Parses and validates a profile file's text; throws ProfileError naming file, key and why. */
export function parseProfile(
  text: string,
  file: string,
  source: "built-in" | "site",
): AgentProfile {
  const problems: string[] = [];
  const problem = (key: string, why: string) => problems.push(`${file}: ${key}: ${why}`);
  let data: unknown;
  try {
    data = parse(text, { uniqueKeys: true, prettyErrors: true });
  } catch (error) {
    throw new ProfileError([`${file}: not valid YAML: ${(error as Error).message}`]);
  }
  if (!isRecord(data)) throw new ProfileError([`${file}: must be a YAML mapping of keys`]);
  for (const key of Object.keys(data)) {
    if (!KEYS.has(key)) problem(key, `unknown key (known: ${[...KEYS].join(", ")})`);
  }

  const str = (key: string, value: unknown, required = true): string | undefined => {
    if (value === undefined && !required) return undefined;
    if (typeof value !== "string") {
      problem(key, value === undefined ? "missing" : "must be a string");
      return undefined;
    }
    return value;
  };
  const list = (key: string, value: unknown, required = true): string[] => {
    if (value === undefined && !required) return [];
    if (!Array.isArray(value) || value.some((item) => typeof item !== "string")) {
      problem(key, value === undefined ? "missing" : "must be a list of strings");
      return [];
    }
    return value as string[];
  };
  const regexes = (key: string, value: unknown, required = true): RegExp[] =>
    list(key, value, required).flatMap((item, i) => {
      const pattern = compile(item);
      if (typeof pattern === "string") {
        problem(`${key}[${i}]`, pattern);
        return [];
      }
      return [pattern];
    });

  const name = str("name", data.name) ?? "";
  const expected = basename(file).replace(/\.ya?ml$/, "");
  if (name && !PROFILE_NAME.test(name))
    problem("name", `${JSON.stringify(name)}: lowercase letters, digits, ".", "_", "-" only`);
  else if (name && name !== expected)
    problem("name", `${JSON.stringify(name)} must be the file's name, ${JSON.stringify(expected)}`);
  const summary = str("summary", data.summary) ?? "";
  const covers = list("covers", data.covers);
  const programs = list("programs", data.programs);
  programs.forEach((program, i) => {
    if (!/^[^\s:[\]*]{1,64}$/.test(program) && !/^[^\s:[\]*]{1,62}\/\*$/.test(program))
      problem(
        `programs[${i}]`,
        `${JSON.stringify(program)} is not a syslog tag, or PREFIX/* (any service under PREFIX/)`,
      );
  });
  const ownLogFile = data.own_log_file ?? false;
  if (typeof ownLogFile !== "boolean") problem("own_log_file", "must be true or false");
  if (programs.length === 0 && ownLogFile !== true)
    problem("programs", "empty: name the server's syslog tags (or set own_log_file: true)");
  const journal = list("journal", data.journal).flatMap((rule, i) => {
    try {
      return [parseTrustRule(rule)];
    } catch (error) {
      problem(`journal[${i}]`, (error as Error).message);
      return [];
    }
  });
  const prefilter = str("prefilter", data.prefilter) ?? "";
  const patterns = regexes("patterns", data.patterns);
  if (Array.isArray(data.patterns) && data.patterns.length === 0) problem("patterns", "empty");

  let fields: AgentProfile["fields"];
  if (data.fields !== undefined) {
    if (
      !isRecord(data.fields) ||
      typeof data.fields.user !== "string" ||
      typeof data.fields.ip !== "string" ||
      Object.keys(data.fields).length !== 2
    )
      problem("fields", "must be {user: KEY, ip: KEY}");
    else fields = { user: data.fields.user, ip: data.fields.ip };
  }

  let correlate: AgentProfile["correlate"];
  if (data.correlate !== undefined) {
    if (!isRecord(data.correlate))
      problem("correlate", "must be {address: [...], window: DURATION}");
    else {
      unknownKeys("correlate", data.correlate, ["address", "window"], problem);
      const address = regexes("correlate.address", data.correlate.address);
      address.forEach((pattern, i) => {
        if (!groupNames(pattern).has("ip"))
          problem(`correlate.address[${i}]`, "has no (?<ip>...) group");
      });
      let windowSeconds = 0;
      try {
        windowSeconds = parseDuration(data.correlate.window);
      } catch (error) {
        problem("correlate.window", (error as Error).message);
      }
      correlate = { address, windowSeconds };
    }
  }

  // Each login pattern must yield an address: its own ip group, a field list with fields:, or
  // a user whose address an earlier line gave (correlate).
  patterns.forEach((pattern, i) => {
    const groups = groupNames(pattern);
    if (groups.has("fields")) {
      if (!data.fields) problem(`patterns[${i}]`, "has a fields group but there is no fields: key");
    } else if (!groups.has("user")) problem(`patterns[${i}]`, "has no (?<user>...) group");
    else if (!groups.has("ip") && !data.correlate)
      problem(`patterns[${i}]`, "has no (?<ip>...) group and there is no correlate: key");
  });

  let session: SessionRules | undefined;
  if (data.session !== undefined) {
    if (!isRecord(data.session))
      problem("session", "must be {id: ..., end: [...], restart: [...]}");
    else {
      unknownKeys("session", data.session, ["id", "end", "restart"], problem);
      const id = str("session.id", data.session.id) ?? "";
      const end = regexes("session.end", data.session.end);
      end.forEach((pattern, i) => {
        const groups = groupNames(pattern);
        // By pid, the line's own process id names the session; otherwise the line must.
        if (id !== "pid" && !groups.has("key") && !groups.has("ip"))
          problem(
            `session.end[${i}]`,
            "names no session: it needs a (?<key>...) or (?<ip>...) group (or session.id: pid)",
          );
      });
      const restart = regexes("session.restart", data.session.restart, false);
      session = { id, end, restart };
    }
  }

  let samples: AgentProfile["samples"];
  if (data.samples !== undefined) {
    if (!isRecord(data.samples))
      problem("samples", "must be {file: NAME.samples, provenance: ...}");
    else {
      unknownKeys("samples", data.samples, ["file", "provenance"], problem);
      const sampleFile = str("samples.file", data.samples.file);
      if (sampleFile !== undefined && (sampleFile.includes("/") || sampleFile.startsWith(".")))
        problem("samples.file", "must be a file name in the same directory");
      const provenance = data.samples.provenance;
      if (!PROVENANCES.includes(provenance as SampleProvenance))
        problem("samples.provenance", `must be one of ${PROVENANCES.join(", ")}`);
      if (sampleFile)
        samples = {
          file: join(dirname(file), sampleFile),
          provenance: provenance as SampleProvenance,
        };
    }
  } else if (source === "built-in") problem("samples", "missing: a built-in profile has samples");

  if (problems.length > 0) throw new ProfileError(problems);
  const profile: AgentProfile = {
    name,
    summary,
    covers,
    programs,
    ownLogFile: ownLogFile === true,
    journal,
    prefilter,
    patterns,
    source,
    file,
  };
  if (fields) profile.fields = fields;
  if (correlate) profile.correlate = correlate;
  if (session) profile.session = session;
  if (samples) profile.samples = samples;
  return profile;
}

/** A compiled pattern, or why it is refused. */
export function compile(source: string): RegExp | string {
  if (!source.startsWith("^") || !source.endsWith("$") || source.endsWith("\\$"))
    return "must be anchored: start with ^ and end with $";
  try {
    return new RegExp(source);
  } catch (error) {
    return (error as Error).message;
  }
}

/** The named groups a pattern defines (an empty alternative matches, and lists them all). */
export function groupNames(pattern: RegExp): Set<string> {
  return new Set(Object.keys(new RegExp(`(?:${pattern.source})|`).exec("")?.groups ?? {}));
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function unknownKeys(
  where: string,
  data: Record<string, unknown>,
  known: readonly string[],
  problem: (key: string, why: string) => void,
): void {
  for (const key of Object.keys(data)) {
    if (!known.includes(key))
      problem(`${where}.${key}`, `unknown key (known: ${known.join(", ")})`);
  }
}
