import type { LogRecord } from "./record.js";

const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
// RFC 3164: "Nov  4 03:12:01 " (no year, no zone: local time).
const CLASSIC = /^([A-Z][a-z]{2}) ([ \d]?\d) (\d\d):(\d\d):(\d\d) /;
// RFC 5424 / RFC 3339 stamps as rsyslog and syslog-ng write them: "2026-11-24T03:12:01.123456+01:00 ".
const ISO = /^(\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:\.\d{1,9})?(?:Z|[+-]\d\d:?\d\d)) /;
// "host program[pid]: " or "program: ". Hosts never end in a colon.
const HOST_AND_TAG = /^(\S+) ([^\s:[\]]{1,64})(?:\[(\d{1,10})\])?: /;
const TAG_ONLY = /^([^\s:[\]]{1,64})(?:\[\d{1,10}\])?: /;
// A day's slack for clocks and time zones before a stamp counts as last year's.
const DAY = 86_400_000;

/**
 * Parses a text log line: classic syslog, RFC 3339 stamped syslog, or a server's own log
 * file (stamp, then "service: ..." with no host). Undefined when the line has no stamp.
 */
export function parseTextLine(line: string, now: Date): LogRecord | undefined {
  let time: number | undefined;
  let rest: string;
  const classic = CLASSIC.exec(line);
  const iso = classic ? null : ISO.exec(line);
  if (classic) {
    time = classicTime(classic, now);
    rest = line.slice(classic[0].length);
    if (rest.startsWith(" ")) rest = rest.replace(/^ +/, "");
  } else if (iso?.[1]) {
    const parsed = Date.parse(iso[1].replace(" ", "T"));
    time = Number.isNaN(parsed) ? undefined : parsed;
    rest = line.slice(iso[0].length);
  } else {
    return undefined;
  }
  const space = rest.indexOf(" ");
  const first = space === -1 ? rest : rest.slice(0, space);
  if (first.endsWith(":") && TAG_ONLY.test(rest)) {
    // The server's own log file: the service name is part of the message.
    return { message: rest, program: undefined, pid: undefined, time, trusted: null, line };
  }
  const tagged = HOST_AND_TAG.exec(rest);
  if (!tagged)
    return { message: rest, program: undefined, pid: undefined, time, trusted: null, line };
  const message = rest.slice(tagged[0].length);
  return { message, program: tagged[2], pid: tagged[3], time, trusted: null, line };
}

/** Classic stamps carry no year: the latest one that is not more than a day ahead of now. */
function classicTime(match: RegExpExecArray, now: Date): number | undefined {
  const month = MONTHS.indexOf(match[1] ?? "");
  const [day, hours, minutes, seconds] = match.slice(2, 6).map((p) => Number(p));
  if (
    month < 0 ||
    !day ||
    day > 31 ||
    (hours ?? 99) > 23 ||
    (minutes ?? 99) > 59 ||
    (seconds ?? 99) > 60
  ) {
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
