import type { LogRecord } from "./record.js";

const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
// RFC 3164: "Nov  4 03:12:01 " (no year, no zone: local time).
const CLASSIC = /^([A-Z][a-z]{2}) ([ \d]?\d) (\d\d):(\d\d):(\d\d) +/;
// RFC 5424 / RFC 3339 stamps as rsyslog and syslog-ng write them: "2026-11-24T03:12:01.123456+01:00 ".
const ISO = /^(\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:\.\d{1,9})?(?:Z|[+-]\d\d:?\d\d)) /;
// "host program[pid]: " or "program: ". Hosts never end in a colon.
const HOST_AND_TAG = /^(\S+) ([^\s:[\]]{1,64})(?:\[(\d{1,10})\])?: /;
const TAG_ONLY = /^([^\s:[\]]{1,64})(?:\[\d{1,10}\])?: /;
// Dovecot 1.x's own log file: its log prefix first, then a local time with no zone
// ("dovecot: 2011-03-03 18:36:18 Info: imap-login: ..."). Read as the ISO form without a zone.
const PREFIX_THEN_STAMP = /^[a-z][a-z0-9_-]{0,31}: (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) /;
// A day's slack for clocks and time zones before a stamp counts as last year's.
const DAY = 86_400_000;

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
    private readonly classic: boolean,
  ) {}

  get time(): number | undefined {
    if (this.stampTime === null)
      this.stampTime = this.classic ? classicTime(this.stamp, this.now) : isoTime(this.stamp);
    return this.stampTime;
  }
}

/**
 * Parses a text log line: classic syslog, RFC 3339 stamped syslog, or a server's own log
 * file (stamp, then "service: ..." with no host; or Dovecot 1.x's "dovecot: DATE TIME ...").
 * Undefined when the line has no stamp.
 */
export function parseTextLine(line: string, now: Date): LogRecord | undefined {
  const classic = CLASSIC.exec(line);
  const stamp = classic ?? ISO.exec(line);
  if (!stamp) {
    // A server's own log file that puts its prefix before the time: the message follows it.
    const prefixed = PREFIX_THEN_STAMP.exec(line);
    if (!prefixed) return undefined;
    const message = line.slice(prefixed[0].length);
    return new TextRecord(line, message, undefined, undefined, prefixed, now, false);
  }
  const rest = line.slice(stamp[0].length);
  const space = rest.indexOf(" ");
  if (rest.charCodeAt(space - 1) === 0x3a /* : */ && TAG_ONLY.test(rest)) {
    // The server's own log file: the service name is part of the message.
    return new TextRecord(line, rest, undefined, undefined, stamp, now, classic !== null);
  }
  const tagged = HOST_AND_TAG.exec(rest);
  if (!tagged)
    return new TextRecord(line, rest, undefined, undefined, stamp, now, classic !== null);
  const message = rest.slice(tagged[0].length);
  return new TextRecord(line, message, tagged[2], tagged[3], stamp, now, classic !== null);
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
    if (date.getTime() <= now.getTime() + DAY) return date.getTime();
  }
  return undefined;
}
