/**
 * The journal reader: entries from `journalctl --output=json` as a child process, filtered by
 * journalctl on the agent's matches, delivered in batches, with the position (`__CURSOR`) saved
 * to a state file after the sink has acknowledged it.
 *
 * Facts about journalctl (252, Debian 12) that shape this, each checked by hand:
 * - `--follow` shows only the last 10 entries unless `--lines` says otherwise, also with
 *   `--cursor`/`--after-cursor` (it stops after 10 and the rest waits for the next new entry):
 *   we always pass `--lines=all`.
 * - `--follow` implies `--boot` (the newest boot in the journal) unless `--merge` or a `--boot`
 *   is given, and `--boot=all` does not undo it: resuming under `--follow` from a cursor taken
 *   before a reboot silently skips the rest of that boot, and following a directory never sees
 *   a boot started after journalctl did. Hence two phases per journalctl run: a catch-up without
 *   `--follow` (no boot filter) to the end of the journal, then `--follow` from the last entry
 *   delivered. With `--directory`, `--follow` also gets `--merge` (same files, no boot filter).
 *   The system journal never gets `--merge`: that would add /var/log/journal/remote and other
 *   machines' (containers') journals, whose "trusted" fields their own root wrote.
 * - `--after-cursor` with matches skips the first matching entry when the cursor's own entry
 *   does not match them (systemd#30288, fixed in 255; matches changed between runs, or the
 *   cursor's entry vacuumed away): we use `--cursor` and drop the first entry ourselves when it
 *   is the cursor's own.
 * - `--since` and `--cursor` cannot be combined; an unparsable cursor makes journalctl exit 1
 *   with "Failed to seek to cursor".
 */

import { type ChildProcess, spawn } from "node:child_process";
import { mkdir, readFile } from "node:fs/promises";
import { dirname } from "node:path";
import { writeFileAtomic } from "../fs/atomic.js";
import type { Logger } from "../log.js";
import { JournalJsonError, parseJournalJson, quoteLine } from "./journal-json.js";
import { LineSplitter } from "./lines.js";
import { mayMatch, rawCursor, rawPrefilter } from "./prefilter.js";
import { StatusChanges } from "./status.js";
import type { EntrySink, LogEntry, Reader } from "./types.js";

export interface JournalBackoff {
  /** The first restart delay, ms (default 500). It doubles after each failure. */
  initialMs?: number;
  /** The longest restart delay, ms (default 30 000). */
  maxMs?: number;
  /** A journalctl that ran this long before it ended restarts after `initialMs` again (60 000). */
  resetAfterMs?: number;
}

export interface JournalReaderOptions {
  /** journalctl matches, one argument each: `FIELD=value`, or `+` between groups for OR. */
  matches: readonly string[];
  /** `journalctl --directory`: a directory of journal files instead of the system journal. */
  directory?: string;
  /** Where the cursor of the last acknowledged entry is kept. */
  stateFile: string;
  /** Seconds back to read on the first start, when there is no saved cursor (relay.period). */
  firstStartSince: number;
  log: Logger;
  /** The journalctl program (default "journalctl", looked up in PATH). */
  journalctl?: string;
  backoff?: JournalBackoff;
  /** The longest a cursor acknowledged without a durable change waits to be saved, ms (5000). */
  saveIntervalMs?: number;
  /** Entries read ahead while a batch is in flight before journalctl's output is paused (4096). */
  maxBatch?: number;
  /**
   * The agent's prefilter literal (see prefilter.ts): entries whose MESSAGE cannot hold it are
   * not parsed nor handed to the sink, only passed over (their cursor still moves the position
   * on). Most entries of a mail server's units are not logins; JSON.parse is most of the cost.
   */
  prefilter?: string;
}

/** The longest journalctl output line kept (with --all a field may be long); longer ones are lost. */
const MAX_LINE_BYTES = 64 * 1024 * 1024;
/** journalctl's stderr lines logged live per run; the exit message quotes the last few anyway. */
const STDERR_LOGGED = 10;
const STDERR_TAIL_LINES = 3;
const KILL_AFTER_MS = 5000;
/** A batch the sink refused is offered again after this long, doubling up to the maximum. */
const SINK_RETRY_FIRST_MS = 500;
const SINK_RETRY_MAX_MS = 30_000;

/** A journal field name as journalctl takes it in a match. */
const FIELD = /^[A-Z_][A-Z0-9_]*$/;
/** What journalctl prints as a cursor: `s=…;i=…;b=…;m=…;t=…;x=…`. */
const CURSOR = /^[a-z]=[^;\s]*(?:;[a-z]=[^;\s]*)*$/;

/** Throws unless `matches` is a valid journalctl match list (nothing journalctl would read as an option). */
export function validateMatches(matches: readonly string[]): void {
  matches.forEach((match, i) => {
    if (match === "+") {
      if (i === 0 || i === matches.length - 1 || matches[i - 1] === "+")
        throw new Error(
          `journal match list ${JSON.stringify(matches)}: "+" only goes between matches`,
        );
      return;
    }
    const eq = match.indexOf("=");
    const field = eq > 0 ? match.slice(0, eq) : "";
    if (!FIELD.test(field) || match.includes("\0"))
      throw new Error(
        `journal match ${JSON.stringify(match)}: expected FIELD=value (FIELD in A-Z, 0-9, _) or "+"`,
      );
  });
}

/** Where a journalctl run starts: just at a cursor (its own entry then dropped), or at a time. */
export type JournalPosition = { cursor: string } | { since: number };

/** The arguments of one journalctl run. */
export function journalctlArguments(options: {
  matches: readonly string[];
  directory?: string | undefined;
  position: JournalPosition;
  follow: boolean;
}): string[] {
  const args = ["--output=json", "--all", "--no-pager", "--lines=all"];
  if (options.directory) args.push(`--directory=${options.directory}`);
  if (options.follow) {
    args.push("--follow");
    // Same files, but no implied boot filter (see the top of this file).
    if (options.directory) args.push("--merge");
  }
  const position = options.position;
  args.push("cursor" in position ? `--cursor=${position.cursor}` : `--since=@${position.since}`);
  args.push("--", ...options.matches);
  return args;
}

type Phase = "catch-up" | "follow";

/** One journalctl process. */
interface Run {
  child: ChildProcess;
  phase: Phase;
  startedAt: number;
  /** The cursor it started at: its first entry is dropped when it is that cursor's own. */
  skipCursor: string | undefined;
  seenFirst: boolean;
  splitter: LineSplitter;
  paused: boolean;
  closed: boolean;
  whenClosed: Promise<void>;
  error: Error | undefined;
  code: number | null;
  signal: NodeJS.Signals | null;
  stderrPartial: string;
  stderrTail: string[];
  stderrLogged: number;
}

/** `ms` as people read it in a status line: "0.5 s", "4 s", "3 min", "2 h". */
export function formatDuration(ms: number): string {
  const s = Math.max(0, ms) / 1000;
  if (s < 10) return `${Number(s.toFixed(1))} s`;
  if (s < 120) return `${Math.round(s)} s`;
  if (s < 7200) return `${Math.round(s / 60)} min`;
  return `${Math.round(s / 3600)} h`;
}

function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

export class JournalReader implements Reader {
  private readonly matches: readonly string[];
  private readonly directory: string | undefined;
  private readonly stateFile: string;
  private readonly firstStartSince: number;
  private readonly log: Logger;
  private readonly journalctl: string;
  private readonly initialDelay: number;
  private readonly maxDelay: number;
  private readonly resetAfter: number;
  private readonly saveInterval: number;
  private readonly maxBatch: number;
  private readonly prefilter: string | undefined;
  /** Entries passed over by the prefilter. */
  private filtered = 0;

  private sink: EntrySink | undefined;
  private run: Run | undefined;
  /** Entries read, not yet handed to the sink, and the cursor of the last of them. */
  private pending: LogEntry[] = [];
  /** Every pending entry was read by a --follow run (see EntrySink). */
  private pendingLive = false;
  private pendingCursor: string | undefined;
  private inFlight: Promise<void> | undefined;
  /** The cursor of the last entry the sink acknowledged (or the saved one, at start). */
  private delivered: string | undefined;
  private deliveredCount = 0;
  private saved: string | undefined;
  private savedAt: number | undefined;
  private saveChain: Promise<void> = Promise.resolve();
  private saveTimer: NodeJS.Timeout | undefined;
  private saveError: string | undefined;
  private lastSaveAttempt = 0;
  private madeStateDir = false;
  /** Unix seconds: the first-start rule's `--since`, fixed when the reader starts. */
  private since = 0;
  private delay: number;
  private restartTimer: NodeJS.Timeout | undefined;
  private restartAt = 0;
  private restartWait = 0;
  private problem: string | undefined;
  private stopping = false;
  private stopped: Promise<void> | undefined;
  /** The sink's last failure, while its batch waits to be offered again. */
  private sinkProblem: string | undefined;
  private sinkRetry: NodeJS.Timeout | undefined;
  private sinkDelay = SINK_RETRY_FIRST_MS;
  private readonly statusChanges = new StatusChanges(() => this.status());

  constructor(options: JournalReaderOptions) {
    validateMatches(options.matches);
    if (options.directory?.includes("\0")) throw new Error("journal directory: contains NUL");
    if (!(options.firstStartSince >= 0))
      throw new Error(`journal firstStartSince: ${options.firstStartSince} is not >= 0`);
    this.matches = [...options.matches];
    this.directory = options.directory || undefined;
    this.stateFile = options.stateFile;
    this.firstStartSince = Math.floor(options.firstStartSince);
    this.log = options.log;
    this.journalctl = options.journalctl ?? "journalctl";
    this.initialDelay = options.backoff?.initialMs ?? 500;
    this.maxDelay = options.backoff?.maxMs ?? 30_000;
    this.resetAfter = options.backoff?.resetAfterMs ?? 60_000;
    this.saveInterval = options.saveIntervalMs ?? 5000;
    this.maxBatch = Math.max(1, options.maxBatch ?? 4096);
    this.prefilter = rawPrefilter(options.prefilter ?? "");
    this.delay = this.initialDelay;
  }

  async start(sink: EntrySink, statusChanged?: () => void): Promise<void> {
    if (this.sink) throw new Error("journal reader: already started");
    this.sink = sink;
    this.statusChanges.listen(statusChanged);
    const cursor = await this.loadCursor();
    this.delivered = cursor;
    this.saved = cursor;
    this.since = Math.floor(Date.now() / 1000) - this.firstStartSince;
    if (this.stopping) return;
    const where = this.directory ? ` in ${this.directory}` : "";
    this.log.info(
      cursor !== undefined
        ? `journal: reading${where} after the saved cursor`
        : `journal: first start: reading${where} from ${new Date(this.since * 1000).toISOString()} (${this.firstStartSince} s back) on`,
    );
    this.spawn("catch-up");
  }

  stop(): Promise<void> {
    this.stopped ??= this.shutdown();
    return this.stopped;
  }

  /** Times in it are absolute: the daemon sends it on when it changes, not every few seconds. */
  status(): string {
    if (this.stopping) return "journal: stopped";
    if (this.sinkProblem !== undefined)
      return `journal: DEGRADED: the sink failed (${this.sinkProblem}), retrying`;
    if (this.restartTimer) {
      const at = new Date(this.restartAt).toISOString();
      return `journal: ${this.problem}, restarting in ${formatDuration(this.restartWait)} (at ${at})`;
    }
    const run = this.run;
    if (!run) return this.sink ? "journal: starting" : "journal: not started";
    const saved =
      this.savedAt === undefined
        ? "no cursor saved yet"
        : `cursor saved at ${new Date(this.savedAt).toISOString()}`;
    if (run.phase === "catch-up")
      return `journal: catching up (${this.deliveredCount} entries delivered, ${saved})`;
    return `journal: following (${saved})`;
  }

  private async loadCursor(): Promise<string | undefined> {
    let text: string;
    try {
      text = await readFile(this.stateFile, "utf8");
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      throw new Error(`journal: cannot read the saved cursor ${this.stateFile}: ${message(error)}`);
    }
    const cursor = text.trim();
    if (cursor.length <= 4096 && CURSOR.test(cursor)) return cursor;
    this.log.warning(
      `journal: ${this.stateFile} holds no journal cursor (${quoteLine(cursor, 60)}): ignoring it, as on a first start`,
    );
    return undefined;
  }

  private spawn(phase: Phase): void {
    if (this.stopping) return;
    const cursor = this.delivered;
    const args = journalctlArguments({
      matches: this.matches,
      directory: this.directory,
      position: cursor !== undefined ? { cursor } : { since: this.since },
      follow: phase === "follow",
    });
    this.log.debug(`journal: ${phase}: ${this.journalctl} ${args.join(" ")}`);
    let child: ChildProcess;
    try {
      child = spawn(this.journalctl, args, { stdio: ["ignore", "pipe", "pipe"] });
    } catch (error) {
      // Only for arguments Node refuses before any process exists; retried like a failed start.
      this.scheduleRestart(`journalctl could not be started (${message(error)})`, Date.now(), []);
      return;
    }
    let closed: () => void = () => undefined;
    const run: Run = {
      child,
      phase,
      startedAt: Date.now(),
      skipCursor: cursor,
      seenFirst: false,
      splitter: new LineSplitter({ maxLineBytes: MAX_LINE_BYTES }),
      paused: false,
      closed: false,
      whenClosed: new Promise<void>((resolve) => {
        closed = resolve;
      }),
      error: undefined,
      code: null,
      signal: null,
      stderrPartial: "",
      stderrTail: [],
      stderrLogged: 0,
    };
    this.run = run;
    this.problem = undefined;
    child.stdout?.on("data", (chunk: Buffer) => this.onData(run, chunk));
    child.stderr?.setEncoding("utf8");
    child.stderr?.on("data", (text: string) => this.onStderr(run, text));
    // A failed start (ENOENT, EACCES) emits "error", then "close" with a negative errno.
    child.on("error", (error) => {
      run.error ??= error;
    });
    this.statusChanges.check();
    child.on("close", (code, signal) => {
      run.closed = true;
      run.code = code;
      run.signal = signal;
      if (run.stderrPartial) this.stderrLine(run, run.stderrPartial);
      run.stderrPartial = "";
      const partial = run.splitter.flush();
      if (partial && !this.stopping)
        this.log.warning(
          `journal: journalctl's output ended inside an entry, dropped: ${quoteLine(partial)}`,
        );
      closed();
      if (this.run === run && !this.stopping) this.pump();
    });
  }

  private onData(run: Run, chunk: Buffer): void {
    if (this.run !== run || this.stopping) return;
    const dropped = run.splitter.dropped;
    const lines = run.splitter.push(chunk);
    if (run.splitter.dropped !== dropped)
      this.log.error(
        `journal: dropped a journal entry longer than ${MAX_LINE_BYTES} bytes of JSON (cursor unknown)`,
      );
    for (const line of lines) {
      if (line === "") continue;
      if (this.prefilter !== undefined && !mayMatch(line, this.prefilter)) {
        const cursor = rawCursor(line);
        if (cursor !== undefined) {
          this.filtered++;
          if (!run.seenFirst) {
            run.seenFirst = true;
            if (run.skipCursor !== undefined && cursor === run.skipCursor) continue;
          }
          this.pendingCursor = cursor;
          continue;
        }
      }
      let fields: ReturnType<typeof parseJournalJson>;
      try {
        fields = parseJournalJson(line);
      } catch (error) {
        const why = error instanceof JournalJsonError ? error.message : message(error);
        this.log.warning(`journal: skipping a line of journalctl output: ${why}`);
        continue;
      }
      const cursor = fields.__CURSOR;
      if (!run.seenFirst) {
        run.seenFirst = true;
        // --cursor shows the cursor's own entry first when it still matches: delivered already.
        if (run.skipCursor !== undefined && cursor === run.skipCursor) continue;
      }
      const live = run.phase === "follow";
      this.pendingLive = this.pending.length === 0 ? live : this.pendingLive && live;
      this.pending.push({ kind: "journal", fields });
      if (typeof cursor === "string") this.pendingCursor = cursor;
    }
    this.pump();
  }

  private onStderr(run: Run, text: string): void {
    const lines = (run.stderrPartial + text).split("\n");
    run.stderrPartial = lines.pop() ?? "";
    // A runaway line is cut, not held forever.
    if (run.stderrPartial.length > 4096) {
      this.stderrLine(run, run.stderrPartial);
      run.stderrPartial = "";
    }
    for (const line of lines) this.stderrLine(run, line);
  }

  private stderrLine(run: Run, raw: string): void {
    const line = raw.trim();
    if (!line) return;
    const cut = line.length > 300 ? `${line.slice(0, 300)}…` : line;
    run.stderrTail.push(cut);
    if (run.stderrTail.length > STDERR_TAIL_LINES) run.stderrTail.shift();
    if (this.stopping) return;
    if (run.stderrLogged < STDERR_LOGGED) this.log.warning(`journal: journalctl: ${cut}`);
    else if (run.stderrLogged === STDERR_LOGGED)
      this.log.warning("journal: journalctl: (further messages of this run not logged)");
    run.stderrLogged++;
  }

  /** Hands what was read to the sink when nothing is in flight; applies backpressure when it is. */
  private pump(): void {
    if (this.stopping) return;
    const run = this.run;
    if (this.inFlight || this.sinkRetry) {
      if (run && !run.paused && !run.closed && this.pending.length >= this.maxBatch) {
        run.paused = true;
        run.child.stdout?.pause();
      }
      return;
    }
    // Entries passed over by the prefilter move the position on, with nothing to deliver.
    const passedOver = this.pendingCursor !== undefined && this.pendingCursor !== this.delivered;
    if (this.pending.length > 0 || passedOver) {
      const batch = this.pending;
      const cursor = this.pendingCursor;
      const live = this.pendingLive;
      this.pending = [];
      if (run?.paused) {
        run.paused = false;
        run.child.stdout?.resume();
      }
      this.inFlight = this.deliver(batch, cursor, live).finally(() => {
        this.inFlight = undefined;
        this.pump();
      });
      return;
    }
    if (run?.closed) this.ended(run);
  }

  private async deliver(
    batch: LogEntry[],
    cursor: string | undefined,
    live: boolean,
  ): Promise<void> {
    const sink = this.sink;
    if (!sink) return;
    if (batch.length === 0) {
      if (cursor !== undefined) this.delivered = cursor;
      this.scheduleSave();
      return;
    }
    let changed: boolean;
    try {
      changed = await sink(batch, live);
    } catch (error) {
      this.refused(batch, live, error);
      return;
    }
    if (this.sinkProblem !== undefined) {
      this.log.notice("journal: the sink works again");
      this.sinkProblem = undefined;
    }
    this.sinkDelay = SINK_RETRY_FIRST_MS;
    if (cursor !== undefined) this.delivered = cursor;
    this.deliveredCount += batch.length;
    this.statusChanges.check();
    if (changed) await this.save();
    else this.scheduleSave();
  }

  /**
   * The sink refused a batch: never stop for good. The batch goes back in front of what was
   * read since (whose cursor is the latest), and is offered again after a backoff; the cursor
   * stays before it. Stopping meanwhile leaves it unacknowledged, read again on the next start.
   */
  private refused(batch: LogEntry[], live: boolean, error: unknown): void {
    if (this.stopping) return;
    this.pendingLive = live && (this.pending.length === 0 || this.pendingLive);
    this.pending = batch.concat(this.pending);
    const problem = message(error);
    if (problem !== this.sinkProblem)
      this.log.error(
        `journal: the sink failed: ${problem}; offering the entries again (every ${SINK_RETRY_MAX_MS / 1000} s at most), the cursor stays before them`,
      );
    this.sinkProblem = problem;
    const wait = this.sinkDelay;
    this.sinkDelay = Math.min(wait * 2, SINK_RETRY_MAX_MS);
    this.sinkRetry = setTimeout(() => {
      this.sinkRetry = undefined;
      this.pump();
    }, wait);
    this.statusChanges.check();
  }

  /** A run is over and everything it printed has been delivered: go on to follow, or restart. */
  private ended(run: Run): void {
    this.run = undefined;
    if (run.phase === "catch-up" && !run.error && run.code === 0) {
      this.spawn("follow");
      return;
    }
    let what: string;
    if (run.error) what = `journalctl failed to start (${run.error.message})`;
    else if (run.signal) what = `journalctl was killed by ${run.signal}`;
    else what = `journalctl exited with status ${run.code}`;
    if (run.skipCursor !== undefined && run.stderrTail.some((l) => /seek to cursor/i.test(l))) {
      this.log.error(
        `journal: journalctl refused the cursor ${quoteLine(run.skipCursor, 200)}; dropping it and reading from ${new Date(this.since * 1000).toISOString()} on, as on a first start`,
      );
      if (this.delivered === run.skipCursor) this.delivered = undefined;
    }
    this.scheduleRestart(what, run.startedAt, run.stderrTail);
  }

  private scheduleRestart(what: string, startedAt: number, stderrTail: string[]): void {
    if (Date.now() - startedAt >= this.resetAfter) this.delay = this.initialDelay;
    const wait = this.delay;
    this.delay = Math.min(this.delay * 2, this.maxDelay);
    const tail = stderrTail.length > 0 ? `: ${stderrTail.join(" | ")}` : "";
    this.log.error(`journal: ${what}, restarting in ${formatDuration(wait)}${tail}`);
    this.problem = what;
    this.restartAt = Date.now() + wait;
    this.restartWait = wait;
    this.restartTimer = setTimeout(() => {
      this.restartTimer = undefined;
      this.spawn("catch-up");
    }, wait);
    this.statusChanges.check();
  }

  private scheduleSave(): void {
    if (this.saveTimer || this.delivered === this.saved || this.stopping) return;
    const wait = Math.max(0, this.lastSaveAttempt + this.saveInterval - Date.now());
    this.saveTimer = setTimeout(() => {
      this.saveTimer = undefined;
      void this.save();
    }, wait);
    // stop() saves: a pending lazy save must not keep the process alive on its own.
    this.saveTimer.unref();
  }

  /** Saves the last acknowledged cursor (one write at a time); never rejects. */
  private save(): Promise<void> {
    if (this.saveTimer) {
      clearTimeout(this.saveTimer);
      this.saveTimer = undefined;
    }
    this.saveChain = this.saveChain.then(() => this.writeCursor());
    return this.saveChain;
  }

  private async writeCursor(): Promise<void> {
    const cursor = this.delivered;
    if (cursor === undefined || cursor === this.saved) return;
    this.lastSaveAttempt = Date.now();
    try {
      if (!this.madeStateDir) {
        await mkdir(dirname(this.stateFile), { recursive: true });
        this.madeStateDir = true;
      }
      await writeFileAtomic(this.stateFile, `${cursor}\n`);
      this.saved = cursor;
      this.savedAt = Date.now();
      this.statusChanges.check();
      if (this.saveError !== undefined) {
        this.log.notice(`journal: the cursor is saved to ${this.stateFile} again`);
        this.saveError = undefined;
      }
    } catch (error) {
      const text = message(error);
      if (text !== this.saveError)
        this.log.error(`journal: cannot save the cursor to ${this.stateFile}: ${text}`);
      this.saveError = text;
      this.scheduleSave();
    }
  }

  private clearTimers(): void {
    if (this.sinkRetry) clearTimeout(this.sinkRetry);
    this.sinkRetry = undefined;
    if (this.restartTimer) clearTimeout(this.restartTimer);
    this.restartTimer = undefined;
    if (this.saveTimer) clearTimeout(this.saveTimer);
    this.saveTimer = undefined;
  }

  private async shutdown(): Promise<void> {
    this.stopping = true;
    this.clearTimers();
    this.statusChanges.check();
    this.pending = [];
    const run = this.run;
    if (run && !run.closed) {
      // Paused output would hold journalctl (and its "close") forever: drain it, unread.
      run.child.stdout?.resume();
      run.child.kill("SIGTERM");
      const killer = setTimeout(() => run.child.kill("SIGKILL"), KILL_AFTER_MS);
      await run.whenClosed;
      clearTimeout(killer);
    }
    this.run = undefined;
    while (this.inFlight) await this.inFlight;
    this.pending = [];
    await this.save();
    this.clearTimers();
    const filtered =
      this.filtered > 0 ? ` (and ${this.filtered} passed over by the prefilter)` : "";
    this.log.debug(
      `journal: stopped after ${this.deliveredCount} entries${filtered}${this.saved !== undefined ? "; cursor saved" : ""}`,
    );
  }
}
