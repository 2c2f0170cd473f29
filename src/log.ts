import { fstatSync } from "node:fs";

/** Syslog priorities, as journald reads them from `<N>` line prefixes. */
export const PRIORITY = { error: 3, warning: 4, notice: 5, info: 6, debug: 7 } as const;
export type Level = keyof typeof PRIORITY;

export interface Logger {
  error(message: string): void;
  warning(message: string): void;
  notice(message: string): void;
  info(message: string): void;
  debug(message: string): void;
}

export interface LoggerOptions {
  /** Lowest priority printed; debug prints everything. */
  level?: Level;
  /** With `<N>` prefixes for journald (set when JOURNAL_STREAM says stderr is the journal). */
  journal?: boolean;
  write?: (line: string) => void;
}

/** A logger on stderr: `<N>` prefixes under systemd, `poprelay: level: ` otherwise. */
export function createLogger(options: LoggerOptions = {}): Logger {
  const max = PRIORITY[options.level ?? "info"];
  const journal = options.journal ?? stderrIsJournal();
  const write = options.write ?? writeStderr;
  const emit = (level: Level) => (message: string) => {
    const priority = PRIORITY[level];
    if (priority > max) return;
    // One record per line: journald would split a message with newlines into several.
    const text = message.replace(/\n/g, "\n  ");
    const lines = text.split("\n");
    const prefix = journal ? `<${priority}>` : `poprelay: ${level === "info" ? "" : `${level}: `}`;
    write(`${lines.map((l) => prefix + l).join("\n")}\n`);
  };
  return {
    error: emit("error"),
    warning: emit("warning"),
    notice: emit("notice"),
    info: emit("info"),
    debug: emit("debug"),
  };
}

let stderrGuarded = false;

/**
 * Writes to stderr, never throwing: when the reader of the log went away (EPIPE: journald
 * restarted, a pipe closed), a log line is lost, not the daemon. The stream reports such a
 * failure as an 'error' event, which would end the process if nobody listened.
 */
function writeStderr(line: string): void {
  if (!stderrGuarded) {
    stderrGuarded = true;
    process.stderr.on("error", () => {});
  }
  try {
    process.stderr.write(line);
  } catch {
    // Nowhere left to say it.
  }
}

/**
 * systemd sets JOURNAL_STREAM to the device and inode of the stream it connected; a child
 * whose stderr was redirected elsewhere inherits the variable but not the stream.
 */
function stderrIsJournal(): boolean {
  const [device, inode] = (process.env.JOURNAL_STREAM ?? "").split(":");
  if (!device || !inode) return false;
  try {
    const stat = fstatSync(2, { bigint: true });
    return String(stat.dev) === device && String(stat.ino) === inode;
  } catch {
    return false;
  }
}

/** A logger that records instead of printing; for tests and for quiet library use. */
export function memoryLogger(): Logger & { lines: string[] } {
  const lines: string[] = [];
  const logger = createLogger({ level: "debug", journal: false, write: (l) => lines.push(l) });
  return Object.assign(logger, { lines });
}
