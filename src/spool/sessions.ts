/**
 * Relay while a session is open, as pop-before-smtp gives it: a login that opens a session
 * keeps its address relaying until the server logs the session's end, and relay.period counts
 * from that end. Bounded: nothing a session does keeps an address relaying past its start +
 * relay.session_max, whether or not its end is ever logged. Pure: no I/O.
 *
 * The state lives in the spool entry (sessions, until), so it survives a restart and is shared
 * through Redis; `expires` stays the one time every reader of the spool goes by:
 *   expires = max(until, each open session's since + session_max)
 * where `until` is what the entry's logins without a session and its ended sessions give.
 *
 * An end line is log text, attacker-reachable like a login line: it can only end a session it
 * names exactly (same id, and the same address and user when it carries them), logged no
 * earlier than the session's start, and ending one never lengthens an entry.
 */
import { supersedes } from "./entry.js";
import type { OpenSession, SpoolEntry } from "./types.js";

export interface SessionSettings {
  /** relay.period, ms. */
  periodMs: number;
  /** relay.session_max, ms. */
  maxMs: number;
}

export type SessionEvent =
  /** A login: the entry as a plain grant would make it, plus the session it opens, if any. */
  | { kind: "login"; entry: SpoolEntry; session?: { id: string; user: string } }
  /** The server logged a session's end. */
  | { kind: "end"; id: string; ip?: string; user?: string; time: number }
  /** The server's master restarted: every session whose id starts with `prefix` ended. */
  | { kind: "restart"; prefix: string; time: number };

/**
 * The entries as they are, by address: a Map, or sortedLookup's view of the spool's list (no
 * Map of 100,000 entries built for every login).
 */
export interface CurrentEntries {
  get(ip: string): SpoolEntry | undefined;
  values(): Iterable<SpoolEntry>;
}

export interface SessionPlan {
  /** Entries that gain (a later login, or a longer expiry): put them as usual. */
  put: SpoolEntry[];
  /** Entries whose sessions ended: they replace the stored one, which they may shorten. */
  replace: SpoolEntry[];
}

/** A session's spool id: where it was seen (host/instance), the agent, the server's own id. */
export function sessionKey(origin: string, agent: string, id: string): string {
  return `${origin} ${agent} ${id}`;
}

/** What a login entry becomes when it opens a session. */
export function openSession(
  entry: SpoolEntry,
  session: { id: string; user: string },
  settings: SessionSettings,
): SpoolEntry {
  return {
    ...entry,
    until: entry.expires,
    expires: Math.max(entry.expires, entry.login + settings.maxMs),
    sessions: [{ id: session.id, user: session.user, since: entry.login }],
  };
}

/** The expiry an entry has once its sessions have all ended, or its plain expiry. */
function untilOf(entry: SpoolEntry): number {
  return entry.sessions ? (entry.until ?? entry.expires) : entry.expires;
}

/** A later login merged into an entry: sessions kept (the newer wins on the same id). */
export function mergeLogin(current: SpoolEntry, next: SpoolEntry): SpoolEntry {
  const later = next.login >= current.login ? next : current;
  const byId = new Map<string, OpenSession>();
  for (const s of [...(current.sessions ?? []), ...(next.sessions ?? [])]) byId.set(s.id, s);
  const merged: SpoolEntry = {
    ip: current.ip,
    user: later.user,
    agent: later.agent,
    login: Math.max(current.login, next.login),
    expires: Math.max(current.expires, next.expires),
  };
  if (byId.size > 0) {
    merged.sessions = [...byId.values()];
    merged.until = Math.max(untilOf(current), untilOf(next));
  }
  return merged;
}

/** Whether two entries say the same (user, agent, times and open sessions). */
function sameEntry(a: SpoolEntry, b: SpoolEntry): boolean {
  const sessions = (e: SpoolEntry) =>
    (e.sessions ?? [])
      .map((s) => `${s.id}\0${s.user}\0${s.since}`)
      .sort()
      .join("\n");
  return (
    a.login === b.login &&
    a.expires === b.expires &&
    a.until === b.until &&
    a.user === b.user &&
    a.agent === b.agent &&
    sessions(a) === sessions(b)
  );
}

/** The entry with `ended` sessions closed at `time`; never longer than it was. */
function endSessions(
  entry: SpoolEntry,
  ended: ReadonlySet<string>,
  time: number,
  settings: SessionSettings,
): SpoolEntry {
  let until = untilOf(entry);
  const open: OpenSession[] = [];
  for (const s of entry.sessions ?? []) {
    if (ended.has(s.id))
      until = Math.max(until, Math.min(time + settings.periodMs, s.since + settings.maxMs));
    else open.push(s);
  }
  const caps = open.map((s) => s.since + settings.maxMs);
  const next: SpoolEntry = {
    ip: entry.ip,
    user: entry.user,
    agent: entry.agent,
    login: entry.login,
    expires: Math.min(entry.expires, Math.max(until, ...caps)),
  };
  if (open.length > 0) {
    next.sessions = open;
    next.until = until;
  }
  return next;
}

/**
 * Applies events, in log order, to the current entries (by address). Logins go first in a
 * batch's order of events, so an end line later in the same batch still finds its session.
 */
export function planSessions(
  current: CurrentEntries,
  events: readonly SessionEvent[],
  settings: SessionSettings,
): SessionPlan {
  const working = new Map<string, SpoolEntry>();
  const replaced = new Set<string>();
  const get = (ip: string) => working.get(ip) ?? current.get(ip);
  // Which address holds each open session: end lines of post-login processes carry no address.
  let holders: Map<string, string> | undefined;
  const holder = (id: string): string | undefined => {
    if (!holders) {
      holders = new Map();
      // Every entry (100,000 per end line at that size): no array made for those without one.
      for (const map of [current, working])
        for (const entry of map.values()) {
          const sessions = entry.sessions;
          if (sessions) for (const s of sessions) holders.set(s.id, entry.ip);
        }
    }
    return holders.get(id);
  };

  for (const event of events) {
    if (event.kind === "login") {
      let entry = event.entry;
      if (event.session) entry = openSession(entry, event.session, settings);
      const existing = get(entry.ip);
      const merged = existing ? mergeLogin(existing, entry) : entry;
      if (event.session) holders?.set(event.session.id, entry.ip);
      // A line read again (after a crash or a restart) changes nothing: no write, and above all
      // no replace, whose remove would take relay away until the put.
      if (existing && sameEntry(merged, existing)) continue;
      working.set(entry.ip, merged);
      // A session joining an entry it does not outlast (an older line): put would skip it.
      if (existing && event.session && !supersedes(merged, existing)) replaced.add(entry.ip);
      continue;
    }
    if (event.kind === "end") {
      const ip = holder(event.id);
      if (ip === undefined || (event.ip !== undefined && event.ip !== ip)) continue;
      const entry = get(ip);
      const session = entry?.sessions?.find((s) => s.id === event.id);
      if (!entry || !session) continue;
      if (event.user !== undefined && event.user !== session.user) continue;
      // An end logged before the session began is another (earlier) session's, e.g. a pid reused.
      if (event.time < session.since) continue;
      working.set(ip, endSessions(entry, new Set([event.id]), event.time, settings));
      replaced.add(ip);
      holders?.delete(event.id);
      continue;
    }
    for (const map of [current, working]) {
      for (const entry of [...map.values()]) {
        const latest = get(entry.ip) ?? entry;
        const ended = new Set(
          (latest.sessions ?? [])
            .filter((s) => s.id.startsWith(event.prefix) && s.since <= event.time)
            .map((s) => s.id),
        );
        if (ended.size === 0) continue;
        working.set(entry.ip, endSessions(latest, ended, event.time, settings));
        replaced.add(entry.ip);
        for (const id of ended) holders?.delete(id);
      }
    }
  }
  const put: SpoolEntry[] = [];
  const replace: SpoolEntry[] = [];
  for (const [ip, entry] of working) {
    // Only a stored entry the new one does not supersede needs replacing: a session that began
    // and ended in this batch, or ended under a later login, is an ordinary put.
    const stored = current.get(ip);
    const ordinary = !stored || supersedes(entry, stored);
    (replaced.has(ip) && !ordinary ? replace : put).push(entry);
  }
  return { put, replace };
}

type EndEvent = Extract<SessionEvent, { kind: "end" }>;
type LoginEvent = Extract<SessionEvent, { kind: "login" }>;

/**
 * Session ends read before their login line. Dovecot's mail process and its login process each
 * write to the log process through a pipe of their own, so a connection dropped right after
 * login can have its end logged first: Debian 13's 2.4.1 logged
 *   imap(alice)<392><G4fap/lhCbJ/AAAc>: Disconnected: Connection closed (No commands sent) ...
 * 0.7 ms (journal time) before
 *   imap-login: Logged in: user=<alice>, ..., mpid=392, session=<G4fap/lhCbJ/AAAc>
 * and planSessions, meeting the end with no session open, would leave that session open until
 * relay.session_max. An end is kept here a short while by the id it names; the login that opens
 * that very session (same id, same user and address when the end names them), logged within
 * `windowMs` of it, is followed at once by the end, at the login's time. Bounded, as
 * SessionTable is. Only for ids the server makes up (Dovecot's session=<id>): a pid is reused,
 * and one process's end must never close the next one's session.
 */
export class EarlyEnds {
  private readonly ends = new Map<string, EndEvent>();

  constructor(
    private readonly windowMs = 10_000,
    private readonly max = 10_000,
  ) {}

  /** The events to plan for `event`, in order: an end is kept; a login gets its early end. */
  order(event: SessionEvent): SessionEvent[] {
    if (event.kind === "end") {
      this.keep(event);
      return [event];
    }
    if (event.kind !== "login" || !event.session) return [event];
    const end = this.take(event);
    return end ? [event, end] : [event];
  }

  private keep(end: EndEvent): void {
    this.ends.delete(end.id);
    this.ends.set(end.id, end);
    // Insertion order is (about) log order: the first are the oldest.
    for (const [id, kept] of this.ends) {
      if (this.ends.size <= this.max && end.time - kept.time <= this.windowMs) break;
      this.ends.delete(id);
    }
  }

  private take(login: LoginEvent): EndEvent | undefined {
    const session = login.session;
    const end = session && this.ends.get(session.id);
    if (!session || !end) return undefined;
    this.ends.delete(session.id);
    const { ip, login: since } = login.entry;
    if (end.user !== undefined && end.user !== session.user) return undefined;
    if (end.ip !== undefined && end.ip !== ip) return undefined;
    if (Math.abs(since - end.time) > this.windowMs) return undefined;
    return { ...end, time: Math.max(end.time, since) };
  }
}
