import type { JournalFields, LogEntry } from "../readers/types.js";
import { parseTextLine } from "./text-line.js";

/** A log entry reduced to what a profile looks at, whatever the source. */
export interface LogRecord {
  /** The text after the program tag (or the whole line after the time, for tagless lines). */
  message: string;
  /** The syslog tag (SYSLOG_IDENTIFIER); undefined for tagless lines (a server's own log file). */
  program: string | undefined;
  /** The process id in the tag (or journald's _PID): ties a server's lines together. */
  pid: string | undefined;
  /** When the server logged it, in ms since the epoch; undefined when unreadable. */
  time: number | undefined;
  /** journald's own fields (`_` names, single values only); null for text lines. */
  trusted: Readonly<Record<string, string>> | null;
  /** The whole text line (file input), for custom regexes written against whole lines. */
  line: string | undefined;
}

/** journald sets these itself; a client cannot forge them. */
const TRUSTED = /^_[A-Z0-9_]+$/;

export function toRecord(entry: LogEntry, now: Date): LogRecord | undefined {
  return entry.kind === "line" ? parseTextLine(entry.text, now) : journalRecord(entry.fields);
}

function single(value: JournalFields[string] | undefined): string | undefined {
  return typeof value === "string" ? value : undefined;
}

function journalRecord(fields: JournalFields): LogRecord | undefined {
  const message = single(fields.MESSAGE);
  if (message === undefined) return undefined;
  const trusted: Record<string, string> = {};
  for (const [name, value] of Object.entries(fields)) {
    // A repeated trusted field is ambiguous: leave it out, so it can satisfy no rule.
    if (TRUSTED.test(name) && typeof value === "string") trusted[name] = value;
  }
  const micros = single(fields._SOURCE_REALTIME_TIMESTAMP) ?? single(fields.__REALTIME_TIMESTAMP);
  const time =
    micros !== undefined && /^\d{1,17}$/.test(micros)
      ? Math.floor(Number(micros) / 1000)
      : undefined;
  const pid = trusted._PID ?? single(fields.SYSLOG_PID);
  return {
    message,
    program: single(fields.SYSLOG_IDENTIFIER),
    pid,
    time,
    trusted,
    line: undefined,
  };
}
