import type { LogRecord } from "./record.js";

const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
// RFC 3164: "Nov  4 03:12:01 " (no year, no zone: local time).
const CLASSIC = /^([A-Z][a-z]{2}) ([ \d]?\d) (\d\d):(\d\d):(\d\d) +/;
// A server's own log file with the year after the day, local time: "Apr 30 2003 10:12:01 "
// (Apple's AppleMailServer logs, as pop-before-smtp 1.50 reads them).
const WITH_YEAR = /^([A-Z][a-z]{2}) ([ \d]?\d) (\d{4}) (\d\d):(\d\d):(\d\d) +/;
// ctime(3), local time, as a server's own log file may write it: "Wed Apr 30 10:12:01 2003 "
// (Qpopper 3's, as pop-before-smtp reads it). The same parts, the year last.
const CTIME =
  /^(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) ([A-Z][a-z]{2}) ([ \d]?\d) (\d\d):(\d\d):(\d\d) (\d{4}) +/;
// RFC 5424 / RFC 3339 stamps as rsyslog and syslog-ng write them: "2026-11-24T03:12:01.123456+01:00 ".
const ISO = /^(\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:\.\d{1,9})?(?:Z|[+-]\d\d:?\d\d)) /;
// "host program[pid]: " or "program: ". Hosts never end in a colon.
const HOST_AND_TAG = /^(\S+) ([^\s:[\]]{1,64})(?:\[(\d{1,10})\])?: /;
const TAG_ONLY = /^([^\s:[\]]{1,64})(?:\[\d{1,10}\])?: /;
// Dovecot 1.x's own log file: its log prefix first, then a local time with no zone
// ("dovecot: 2011-03-03 18:36:18 Info: imap-login: ..."). Read as the ISO form without a zone;
// the message keeps the prefix ("dovecot: Info: imap-login: ...").
const PREFIX_THEN_STAMP = /^[a-z][a-z0-9_-]{0,31}: (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) /;
// The same with Dovecot's default log_timestamp "%b %d %H:%M:%S " (1.x, and 0.99's
// "imap-login: Mar 03 18:36:18 Info: Login: ..."): read as a classic stamp.
const PREFIX_THEN_CLASSIC =
  /^[a-z][a-z0-9_-]{0,31}: ([A-Z][a-z]{2}) ([ \d]?\d) (\d\d):(\d\d):(\d\d) /;
// A day's slack for clocks and time zones before a stamp counts as last year's.
const DAY = 86_400_000;
const HOUR = 3_600_000;
// How far a stamp may lie after the time its line was read (clocks a little apart).
const STAMP_SLACK = 60_000;

/** How a stamp is read: classic (no year), year (month, day, year, time), ctime, iso. */
type StampKind = "classic" | "year" | "ctime" | "iso";

/**
 * A text line's record. The time is worked out on first use only: most lines that reach the
 * matcher fail its patterns, and a local-time stamp costs more to read than the rest.
 */
class TextRecord implements LogRecord {
  readonly trusted = null;
  private stampTime: number | undefined | null = null;

  constructor(
    readonly line: string,
    readonly message: string,
    readonly program: string | undefined,
    readonly pid: string | undefined,
    private readonly stamp: RegExpExecArray,
    private readonly now: Date,
    private readonly kind: StampKind,
  ) {}

  get time(): number | undefined {
    if (this.stampTime === null)
      this.stampTime =
        this.kind === "classic"
          ? classicTime(this.stamp, this.now)
          : this.kind === "year" || this.kind === "ctime"
            ? yearTime(this.stamp, this.kind, this.now)
            : isoTime(this.stamp);
    return this.stampTime;
  }
}

/**
 * Parses a text log line: classic syslog, RFC 3339 stamped syslog, or a server's own log
 * file: a stamp, then "service: ..." with no host; a stamp with the year ("Apr 30 2003
 * 10:12:01", or ctime's "Wed Apr 30 10:12:01 2003"); or Dovecot's prefix before the stamp
 * ("dovecot: 2011-03-03 18:36:18 ...", "dovecot: Mar 03 18:36:18 ..."). Undefined when the
 * line has no stamp.
 */
export function parseTextLine(line: string, now: Date): LogRecord | undefined {
  let stamp = CLASSIC.exec(line);
  let kind: StampKind = "classic";
  if (!stamp) {
    stamp = WITH_YEAR.exec(line);
    kind = "year";
  }
  if (!stamp) {
    stamp = CTIME.exec(line);
    kind = "ctime";
  }
  if (!stamp) {
    stamp = ISO.exec(line);
    kind = "iso";
  }
  if (!stamp) {
    // A server's own log file that puts its prefix before the time: the message is the prefix
    // and what follows the time ("dovecot: Info: imap-login: ...", "imap-login: Info: ...").
    const iso = PREFIX_THEN_STAMP.exec(line);
    const prefixed = iso ?? PREFIX_THEN_CLASSIC.exec(line);
    if (!prefixed) return undefined;
    const message = line.slice(0, line.indexOf(": ") + 2) + line.slice(prefixed[0].length);
    return new TextRecord(
      line,
      message,
      undefined,
      undefined,
      prefixed,
      now,
      iso ? "iso" : "classic",
    );
  }
  const rest = line.slice(stamp[0].length);
  const space = rest.indexOf(" ");
  if (rest.charCodeAt(space - 1) === 0x3a /* : */ && TAG_ONLY.test(rest)) {
    // The server's own log file: the service name is part of the message.
    return new TextRecord(line, rest, undefined, undefined, stamp, now, kind);
  }
  const tagged = HOST_AND_TAG.exec(rest);
  if (!tagged) return new TextRecord(line, rest, undefined, undefined, stamp, now, kind);
  const message = rest.slice(tagged[0].length);
  return new TextRecord(line, message, tagged[2], tagged[3], stamp, now, kind);
}

function isoTime(match: RegExpExecArray): number | undefined {
  const parsed = Date.parse((match[1] ?? "").replace(" ", "T"));
  return Number.isNaN(parsed) ? undefined : parsed;
}

/** Classic stamps carry no year: the latest one that is not more than a day ahead of now. */
function classicTime(match: RegExpExecArray, now: Date): number | undefined {
  const month = MONTHS.indexOf(match[1] ?? "");
  const day = Number(match[2]);
  const hours = Number(match[3]);
  const minutes = Number(match[4]);
  const seconds = Number(match[5]);
  if (month < 0 || !day || day > 31 || hours > 23 || minutes > 59 || seconds > 60) {
    return undefined;
  }
  const thisYear = now.getFullYear();
  // Next year's date can be at most a day ahead only for early January lines read in December.
  const first = month === 0 && now.getMonth() === 11 ? thisYear + 1 : thisYear;
  for (let year = first; year >= thisYear - 1; year--) {
    const date: Date = new Date(year, month, day, hours, minutes, seconds);
    // Reject Feb 30 and the like, which Date would roll over.
    if (date.getDate() !== day) continue;
    if (date.getTime() <= now.getTime() + DAY) return laterOccurrence(date, now);
  }
  return undefined;
}

/**
 * A stamp with its year ("Apr 30 2003 10:12:01", or ctime's "Wed Apr 30 10:12:01 2003"):
 * local time; undefined when there is no such date.
 */
function yearTime(match: RegExpExecArray, kind: "year" | "ctime", now: Date): number | undefined {
  const [month, day, year, hours, minutes, seconds] = [
    MONTHS.indexOf(match[1] ?? ""),
    ...(kind === "year" ? [2, 3, 4, 5, 6] : [2, 6, 3, 4, 5]).map((i) => Number(match[i])),
  ] as [number, number, number, number, number, number];
  if (month < 0 || !day || day > 31 || hours > 23 || minutes > 59 || seconds > 60) {
    return undefined;
  }
  const date = new Date(year, month, day, hours, minutes, seconds);
  // Years 0-99 would be read as 1900-1999; Feb 30 and the like would roll over.
  if (date.getFullYear() !== year || date.getDate() !== day) return undefined;
  return laterOccurrence(date, now);
}

/**
 * A local wall-clock time in the hour repeated when daylight saving time ends happens twice;
 * Date gives the first. The line was read at `now`: the second occurrence is the one meant
 * unless it is still to come (the line was read during the first). Taking the first would
 * date a login up to an hour early, and a short relay.period would expire it at once.
 */
function laterOccurrence(date: Date, now: Date): number {
  const time = date.getTime();
  // Fall-back moves the offset forward (getTimezoneOffset grows): by 60 min in most zones.
  const shift = new Date(time + 3 * HOUR).getTimezoneOffset() - date.getTimezoneOffset();
  if (shift <= 0) return time;
  const later = new Date(time + shift * 60_000);
  const same =
    later.getHours() === date.getHours() &&
    later.getMinutes() === date.getMinutes() &&
    later.getDate() === date.getDate();
  return same && later.getTime() <= now.getTime() + STAMP_SLACK ? later.getTime() : time;
}
