/**
 * What every spool backend agrees on about an entry: its key, how it is stored (one JSON
 * object, the same in a spool file and in Redis), and which of two logins wins.
 */
import { InvalidIpError, isCanonicalIp } from "../address/ip.js";
import type { OpenSession, SpoolEntry } from "./types.js";

// User names come from log lines: keep them printable and short in the spool.
const MAX_USER_LENGTH = 256;
// Control and format characters, and lone surrogates (JSON readers such as Redis' cjson refuse them).
const CONTROL = /[\p{Cc}\p{Cf}\p{Cs}]/gu;
const ANY_CONTROL = /[\p{Cc}\p{Cf}\p{Cs}]/u;

/** Makes a user name safe to store and print: no control characters, bounded length. */
export function sanitizeUser(user: string): string {
  // Already safe (nearly always): the same string, not a copy built from an array of its
  // characters (two per entry, 100,000 entries read at every start).
  if (user.length <= MAX_USER_LENGTH && !ANY_CONTROL.test(user)) return user;
  // Cut by code point: a cut between two halves of a surrogate pair would leave a lone one.
  return Array.from(user.replace(CONTROL, "?")).slice(0, MAX_USER_LENGTH).join("");
}

/**
 * One string per agent name: a spool of 100,000 entries read from their files holds as many
 * copies of "dovecot" otherwise (2.3 MB). Agent names are few (the profiles'), and "manual" and
 * "legacy"; past this many distinct ones, names are kept as they are.
 */
const agentNames = new Map<string, string>();
const AGENT_NAMES_KEPT = 256;

function agentName(agent: string): string {
  const known = agentNames.get(agent);
  if (known !== undefined) return known;
  if (agentNames.size < AGENT_NAMES_KEPT) agentNames.set(agent, agent);
  return agent;
}

/** The entry as it is stored: user and agent (and session ids and users) made safe. */
export function sanitizeEntry(entry: SpoolEntry): SpoolEntry {
  const safe = { ...entry, user: sanitizeUser(entry.user), agent: sanitizeUser(entry.agent) };
  if (entry.sessions) {
    safe.sessions = entry.sessions.map((s) => ({
      ...s,
      id: sanitizeUser(s.id),
      user: sanitizeUser(s.user),
    }));
  }
  return safe;
}

export function assertKey(ip: string): void {
  if (!isCanonicalIp(ip)) throw new InvalidIpError(ip, "spool keys must be canonical addresses");
}

/** One entry per address within a batch: the one that would win anyway. */
export function latestPerIp(entries: readonly SpoolEntry[]): SpoolEntry[] {
  const byIp = new Map<string, SpoolEntry>();
  for (const entry of entries) {
    const current = byIp.get(entry.ip);
    if (!current || supersedes(entry, current)) byIp.set(entry.ip, entry);
  }
  return [...byIp.values()];
}

/** A replayed or older login never shortens an entry; a new login refreshes it. */
export function supersedes(next: SpoolEntry, current: SpoolEntry): boolean {
  return (
    next.login > current.login || (next.login === current.login && next.expires > current.expires)
  );
}

/**
 * The stored form, without the address (the key holds it). Times are ISO 8601 in UTC, which
 * sort as strings in time order: Redis' scripts compare them so.
 */
export function serializeEntry(entry: SpoolEntry): string {
  const { user, agent, login, expires, sessions, until } = entry;
  const stored: Record<string, unknown> = {
    user,
    agent,
    login: new Date(login).toISOString(),
    expires: new Date(expires).toISOString(),
  };
  // Only with open sessions: an entry without is stored exactly as before they existed.
  if (sessions && sessions.length > 0 && until !== undefined) {
    stored.until = new Date(until).toISOString();
    stored.sessions = sessions.map((s) => ({
      id: s.id,
      user: s.user,
      since: new Date(s.since).toISOString(),
    }));
  }
  return JSON.stringify(stored);
}

/** The stored form read back; undefined when it is not one (Mail::POPRelay's files, damage). */
export function parseEntry(ip: string, text: string): SpoolEntry | undefined {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return undefined;
  }
  return entryFromRecord(ip, value);
}

/** An entry from a decoded stored form; undefined unless every field has its type. */
export function entryFromRecord(ip: string, value: unknown): SpoolEntry | undefined {
  if (typeof value !== "object" || value === null || !isCanonicalIp(ip)) return undefined;
  const { user, agent, login, expires } = value as Record<string, unknown>;
  const loginMs = typeof login === "string" ? Date.parse(login) : Number.NaN;
  const expiresMs = typeof expires === "string" ? Date.parse(expires) : Number.NaN;
  if (
    typeof user !== "string" ||
    typeof agent !== "string" ||
    Number.isNaN(loginMs) ||
    Number.isNaN(expiresMs)
  ) {
    return undefined;
  }
  const entry: SpoolEntry = {
    ip,
    user: sanitizeUser(user),
    agent: agentName(sanitizeUser(agent)),
    login: loginMs,
    expires: expiresMs,
  };
  const { sessions, until } = value as Record<string, unknown>;
  const untilMs = typeof until === "string" ? Date.parse(until) : Number.NaN;
  const open = Array.isArray(sessions) ? sessions.map(sessionFromRecord) : [];
  // Damaged session fields leave a plain entry: its expiry still bounds it.
  if (!Number.isNaN(untilMs) && open.length > 0 && open.every((s) => s !== undefined)) {
    entry.until = untilMs;
    entry.sessions = open as OpenSession[];
  }
  return entry;
}

function sessionFromRecord(value: unknown): OpenSession | undefined {
  if (typeof value !== "object" || value === null) return undefined;
  const { id, user, since } = value as Record<string, unknown>;
  const sinceMs = typeof since === "string" ? Date.parse(since) : Number.NaN;
  if (typeof id !== "string" || typeof user !== "string" || Number.isNaN(sinceMs)) return undefined;
  return { id: sanitizeUser(id), user: sanitizeUser(user), since: sinceMs };
}
