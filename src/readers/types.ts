/** A journal entry as journalctl prints it, with byte arrays decoded (invalid UTF-8 → U+FFFD). */
export type JournalFields = Record<string, string | string[] | null>;

/** One log entry, as a reader delivers it to the matcher. */
export type LogEntry =
  /** A line of a text log (syslog, or the server's own log file), without its newline. */
  | { kind: "line"; text: string }
  /** A journal entry; only fields whose names start with `_` were set by journald itself. */
  | { kind: "journal"; fields: JournalFields };

/**
 * Receives entries in log order, a batch at a time. `live`: every entry of the batch was read
 * as it was written (the reader was following), not caught up after a start or a gap; a live
 * line's stamp cannot be old, so a stamp that looks old is the stamp's fault (a time zone). The reader delivers the next batch only
 * after this one's promise settles, so whatever arrives meanwhile becomes one batch: bursts
 * coalesce with no added delay. Resolve `true` when the batch changed durable state (the
 * spool): the reader then persists its position at once; otherwise it may persist lazily.
 * A rejection is never the end: the reader offers the batch again after a backoff,
 * and acknowledges nothing after it meanwhile.
 */
export type EntrySink = (entries: LogEntry[], live: boolean) => Promise<boolean>;

export interface Reader {
  /**
   * Starts reading from the saved position (or the reader's first-start rule). `statusChanged`
   * is called whenever status() would now return another line (never for an unchanged one).
   */
  start(sink: EntrySink, statusChanged?: () => void): Promise<void>;
  /** Stops reading, waits for the batch in flight, and persists the last acknowledged position. */
  stop(): Promise<void>;
  /** One line for sd_notify STATUS and the log: what the reader is doing. */
  status(): string;
}
