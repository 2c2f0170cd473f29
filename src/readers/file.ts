/**
 * The file reader: follows a text log (syslog's mail.log, a server's own log file) and hands
 * its complete lines to the matcher, surviving rotation, truncation and deletion, and resuming
 * exactly where the last acknowledged batch ended.
 *
 * Reads are driven by fs.watch on the file's DIRECTORY (inotify on Linux: it survives the file
 * being renamed, removed and created again), so an appended line reaches the sink within a
 * millisecond or so. A stat timer is the fallback: every second where the watch cannot be relied
 * on (no watch, a network or FUSE file system where other hosts write, a symbolic link to a file
 * elsewhere) and while an error is retried; where it can, once a minute only, so that an idle
 * reader costs next to nothing.
 */
import type { FSWatcher } from "node:fs";
import { watch } from "node:fs";
import { type FileHandle, lstat, mkdir, stat } from "node:fs/promises";
import { basename, dirname } from "node:path";
import { removeStaleTempFiles, writeFileAtomic } from "../fs/atomic.js";
import type { Logger } from "../log.js";
import {
  type FilePosition,
  findByInode,
  findCopy,
  firstLineHash,
  formatPosition,
  hashFirstLine,
  isMissing,
  loadPosition,
  nextRotated,
  type Opened,
  openForReading,
  openFound,
  rotatedSiblings,
} from "./file-state.js";
import { LineSplitter } from "./lines.js";
import { watchSeesEveryWrite } from "./local-fs.js";
import { StatusChanges } from "./status.js";
import type { EntrySink, LogEntry, Reader } from "./types.js";

export type { FilePosition } from "./file-state.js";

export interface FileReaderOptions {
  /** The log file to follow. */
  path: string;
  /** Where the position is persisted (JSON, replaced atomically). */
  stateFile: string;
  log: Logger;
  /**
   * How often the file is checked without a watch event where the watch cannot be relied on,
   * and how often an error is retried. Default 1000.
   */
  statIntervalMs?: number;
  /**
   * How often it is checked while a watch that hears of every write is up: for what no event
   * shows (a copytruncate whose file grew past our offset before we read). Default 60000.
   */
  watchedCheckMs?: number;
  /** Set false to rely on the stat timer alone (file systems where inotify misbehaves). */
  watch?: boolean;
  /** Longest time an acknowledged position may wait to be persisted lazily. Default 5000. */
  persistIntervalMs?: number;
  /** Most lines buffered (and so delivered in one batch) while the sink is busy. Default 10000. */
  maxBatchLines?: number;
  /** Longer lines are dropped whole, with a warning. Default 1 MiB. */
  maxLineBytes?: number;
}

/** The file being read. */
interface Cursor {
  fh: FileHandle;
  dev: bigint;
  ino: bigint;
  /** The name it was opened by: the followed path, or a rotated name found when resuming. */
  name: string;
  /** Bytes read so far (complete lines plus the partial line held by the splitter). */
  pos: number;
  splitter: LineSplitter;
  /** The first-line hash, once it can no longer change. */
  hash: string | undefined;
  /** The followed path no longer names this file: read it to its end, then switch. */
  gone: boolean;
  /**
   * This is a copytruncate copy: the inode of the file it was copied from, whose lines are
   * newer than the copy's whatever the files' times say (see nextRotated).
   */
  source?: bigint;
  /**
   * Followed from byte 0, nothing read yet: the rotated files there were before it was opened.
   * One more at the first read is a copy made meanwhile (copytruncate), with lines before ours.
   */
  rotatedBefore?: Set<bigint>;
}

const READ_BYTES = 256 * 1024;
/** A batch the sink refused is offered again after this long, doubling up to the maximum. */
const SINK_RETRY_FIRST_MS = 500;
const SINK_RETRY_MAX_MS = 30_000;
/** How far a position's time is moved back before files' times are compared with it. */
const TAKEN_MARGIN_MS = 1000;

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

export class FileReader implements Reader {
  private readonly path: string;
  private readonly directory: string;
  private readonly base: string;
  private readonly stateFile: string;
  private readonly log: Logger;
  private readonly statIntervalMs: number;
  private readonly watchedCheckMs: number;
  private readonly useWatch: boolean;
  private readonly persistIntervalMs: number;
  private readonly maxBatchLines: number;
  private readonly maxLineBytes: number | undefined;
  private readonly buffer = Buffer.allocUnsafe(READ_BYTES);

  private sink: EntrySink | undefined;
  private cur: Cursor | undefined;
  /** The saved position, until the first file opened at `path` has been judged against it. */
  private saved: FilePosition | undefined;
  /** The rotated file last finished: files rotated after it are read before `path`'s. */
  private chainAfter:
    | { ino: bigint; mtimeNs: bigint; why: string; source: bigint | undefined }
    | undefined;
  /** There was no saved position: the first one was taken at start (saveFirstPosition). */
  private firstStart = false;
  /** `path` did not exist at the last look. */
  private missing = false;
  /** The rotated files there were when `path` was first found missing (see rotatedBefore). */
  private rotatedWhileMissing: Set<bigint> | undefined;

  private queue: LogEntry[] = [];
  /** Every queued line was read while following the file (see EntrySink). */
  private queueLive = false;
  /** The followed file was read to its end once: lines read from now on are live. */
  private caughtUp = false;
  /** The position just after the last queued line. */
  private mark: FilePosition | undefined;
  private inflight: Promise<void> | undefined;
  /** Reading stopped because the queue is full; the next delivery resumes it. */
  private paused = false;

  private acked: FilePosition | undefined;
  private persisted: FilePosition | undefined;
  private persistChain: Promise<void> = Promise.resolve();
  private lazyPersist: NodeJS.Timeout | undefined;
  private stateDirectoryMade = false;

  private watcher: FSWatcher | undefined;
  private watchedDirectory: bigint | undefined;
  private watchProblem: string | undefined;
  /** The watched directory is on a file system where every write wakes the watch. */
  private watchComplete = false;
  /** `path` is a symbolic link: writes to its target wake no watch on `path`'s directory. */
  private throughLink = false;
  private timer: NodeJS.Timeout | undefined;
  /** When the timer fires (performance.now()). */
  private due = 0;
  private pumping: Promise<void> | undefined;
  private wanted = false;
  /** Check the first line again on the next step (copytruncate followed by regrowth). */
  private verifyHead = false;
  /** The open file's size and times at the last timer tick. */
  private lastLook: string | undefined;

  private stopping = false;
  /** The sink's last failure, while its batch waits to be offered again. */
  private sinkProblem: string | undefined;
  private sinkRetry: NodeJS.Timeout | undefined;
  private sinkRetryMs = SINK_RETRY_FIRST_MS;
  private closing: Promise<void> | undefined;
  private problem: string | undefined;
  private readonly statusChanges = new StatusChanges(() => this.status());

  constructor(options: FileReaderOptions) {
    this.path = options.path;
    this.directory = dirname(options.path);
    this.base = basename(options.path);
    this.stateFile = options.stateFile;
    this.log = options.log;
    this.statIntervalMs = options.statIntervalMs ?? 1000;
    this.watchedCheckMs = options.watchedCheckMs ?? 60_000;
    this.useWatch = options.watch ?? true;
    this.persistIntervalMs = options.persistIntervalMs ?? 5000;
    this.maxBatchLines = options.maxBatchLines ?? 10_000;
    this.maxLineBytes = options.maxLineBytes;
  }

  async start(sink: EntrySink, statusChanged?: () => void): Promise<void> {
    if (this.sink || this.closing)
      throw new Error(`file reader for ${this.path}: start() may be called once`);
    this.sink = sink;
    this.statusChanges.listen(statusChanged);
    // Watch before the first look, so that nothing happening in between goes unnoticed.
    await this.ensureWatcher();
    this.arm();
    // The first file is chosen before start() returns, so that the status says what is read;
    // as a step of the pump, so that a watch event or a tick meanwhile waits for it (or it
    // would open a second cursor).
    this.pumping = (async () => {
      await this.loadSaved();
      if (!this.acked) await this.saveFirstPosition();
      await this.attempt(() => this.openPath());
    })().finally(() => {
      this.pumping = undefined;
    });
    await this.pumping;
    this.kick();
  }

  stop(): Promise<void> {
    return this.shutdown();
  }

  status(): string {
    const where = `file ${this.path}`;
    if (this.closing) return `${where}: stopped`;
    if (!this.sink) return `${where}: not started`;
    const trouble = this.problem ?? (this.sinkProblem && `DEGRADED: ${this.sinkProblem}, retrying`);
    const problem = trouble ? ` (${trouble})` : "";
    const cur = this.cur;
    if (!cur && this.problem) return `${where}: ${this.problem}; retrying`;
    if (!cur) return `waiting for ${this.path} to appear`;
    if (!cur.gone) return `${where}: following at byte ${cur.pos}${problem}`;
    const old = cur.name === this.path ? "the previous file" : cur.name;
    const next = this.missing ? `then waiting for ${this.path} to appear` : "then the new file";
    return `${where}: reading ${old} (rotated) at byte ${cur.pos}, ${next}${problem}`;
  }

  // --- resuming ---------------------------------------------------------------------------

  /** Reads the saved position; it is judged once the file at `path` is open (openPath). */
  private async loadSaved(): Promise<void> {
    const saved = await loadPosition(this.stateFile);
    if (saved instanceof Error) {
      this.log.warning(
        `file ${this.path}: ignoring the state file ${this.stateFile}: ${saved.message}`,
      );
      return;
    }
    if (!saved) return;
    if (saved.path !== this.path) {
      this.log.info(
        `file ${this.path}: the state file ${this.stateFile} is for ${saved.path}: reading from byte 0`,
      );
      return;
    }
    // What is saved stays saved until a later position is acknowledged: a position taken on
    // the way (a file switched to before the last batch is durable) must never replace it.
    this.acked = saved;
    this.persisted = saved;
    this.saved = saved;
  }

  /**
   * No usable saved position: "the file now at `path` (inode 0 if none), from byte 0" is saved
   * before any line is read. Killed before its first position was saved, a reader would
   * otherwise start over on whatever file a rotation left at `path`, and the lines it never
   * read in the file it had opened, now rotated or copied away, would be lost.
   */
  private async saveFirstPosition(): Promise<void> {
    const st = await statBig(this.path).catch(() => undefined);
    this.acked = {
      path: this.path,
      inode: String(st?.isFile() ? st.ino : 0n),
      offset: 0,
      firstLineHash: "",
      takenAtMs: Date.now(),
    };
    // Judged like a saved one: a rotation before the first open moves that file away, and it
    // is read first (openBefore).
    this.saved = this.acked;
    this.firstStart = true;
    await this.persist();
  }

  /**
   * A rotated file to be read before the file at `path` (inode `live`, undefined if none):
   * at start, where the saved position says; after a rotated file, the next link of the
   * chain. Opens it (true), or leaves `path` to be read (false).
   */
  private async openBefore(live: bigint | undefined): Promise<boolean> {
    const saved = this.saved;
    if (saved) {
      if (await this.resumeSaved(saved, live)) {
        this.saved = undefined;
        return true;
      }
      // Kept only for the same file: openPath reads on from its offset once it is judged.
      if (live !== BigInt(saved.inode)) this.saved = undefined;
      return false;
    }
    const after = this.chainAfter;
    if (!after) return false;
    const next = await openFound(() => nextRotated(this.directory, this.base, after, live));
    if (next) {
      this.chainAfter = undefined;
      return this.openChained(next, after.why);
    }
    // With no file at `path` yet, the chain may still grow: it is looked at again.
    if (live === undefined) return false;
    this.chainAfter = undefined;
    this.log.notice(`file ${this.path}: ${after.why}: reading the new ${this.path} from byte 0`);
    return false;
  }

  /** Judges the saved position against the file at `path`: see openBefore. */
  private async resumeSaved(saved: FilePosition, live: bigint | undefined): Promise<boolean> {
    const inode = BigInt(saved.inode);
    // Nothing of the saved file read yet, so no first line to find a copy by: its lines may
    // be in it, wherever a rotation put it, and in a copy copytruncate made since the save.
    // Both, and every file written since, are read from byte 0 in the order written.
    if (
      saved.offset === 0 &&
      (await this.resumeUnsaved(saved, live, "nothing of the saved file was read yet"))
    )
      return true;
    if (live === inode) return false;
    const rotated = await openFound(() => findByInode(this.directory, inode, this.base));
    if (rotated && (await this.openRotated(rotated, saved))) return true;
    if (await this.resumeFromCopy(saved, live)) return true;
    if (await this.resumeUnsaved(saved, live, "the file of the saved position is gone"))
      return true;
    this.log.info(
      saved.inode === "0"
        ? `file ${this.path}: it did not exist when the position was saved: reading it from byte 0`
        : `file ${this.path}: the file of the saved position (inode ${saved.inode}) is gone: reading ${this.path} from byte 0`,
    );
    return false;
  }

  /** Finishes the file rotated away while we were down from the saved offset, if it checks out. */
  private async openRotated({ found, fh, st }: Opened, saved: FilePosition): Promise<boolean> {
    let verdict: string | undefined;
    try {
      verdict = await this.judge(fh, st.size, saved);
    } catch (error) {
      await fh.close().catch(() => undefined);
      throw error;
    }
    if (verdict !== undefined) {
      this.log.info(
        `file ${this.path}: ${found.path} has the saved inode but ${verdict}: reading ${this.path} from byte 0`,
      );
      return close(fh, false);
    }
    this.cur = this.cursor(fh, st.dev, st.ino, found.path, saved.offset);
    this.cur.hash = saved.offset > 0 ? saved.firstLineHash : undefined;
    this.cur.gone = true;
    this.log.notice(
      `file ${this.path}: it was rotated while poprelay was stopped: finishing ${found.path} from byte ${saved.offset} first`,
    );
    return true;
  }

  /**
   * copytruncate ran while we were stopped (or between our last read and now): the lines after
   * the saved offset live on in the copy, the rotated file whose first line is the saved one.
   * Finishes the copy from the saved offset first; the followed file is then read from byte 0.
   */
  private async resumeFromCopy(saved: FilePosition, live: bigint | undefined): Promise<boolean> {
    if (saved.offset === 0 || saved.firstLineHash === "") return false;
    const copy = await openFound(() =>
      findCopy(this.directory, this.base, saved.firstLineHash, saved.offset, live ?? -1n),
    );
    if (!copy) return false;
    this.cur = this.cursor(copy.fh, copy.st.dev, copy.st.ino, copy.found.path, saved.offset);
    this.cur.hash = saved.firstLineHash;
    this.cur.gone = true;
    this.cur.source = BigInt(saved.inode);
    this.log.notice(
      `file ${this.path}: it was copied and truncated (copytruncate): finishing the copy ${copy.found.path} from byte ${saved.offset} first`,
    );
    return true;
  }

  /**
   * Nothing of the saved file was read: it, and every rotated file written since the position
   * was taken (copies of it), may hold lines not read yet. Or the saved file is gone (deleted,
   * or compressed, by later rotations): every rotated file left is newer, so none was read.
   * The oldest of them is read from byte 0 (what was read before is granted again, which
   * changes nothing), then the chain on to the followed file.
   */
  private async resumeUnsaved(
    saved: FilePosition,
    live: bigint | undefined,
    why: string,
  ): Promise<boolean> {
    const since = saved.offset === 0 ? await this.takenAt(saved) : 0n;
    if (since === undefined) return false;
    const inode = BigInt(saved.inode);
    const next = await openFound(async () =>
      (await rotatedSiblings(this.directory, this.base)).find(
        (s) =>
          s.ino !== live && s.path !== this.stateFile && (s.mtimeNs >= since || s.ino === inode),
      ),
    );
    return next ? this.openChained(next, why) : false;
  }

  /**
   * When `saved` was taken, in file time (ns), less a margin. The state file's own time is
   * later: its write waits for the batch before it and for its fsync, and a copy made in
   * between (copytruncate) would be left out. Files' times come from a coarser clock than
   * Date.now(), hence the margin; its cost is at most a file granted twice.
   */
  private async takenAt(saved: FilePosition): Promise<bigint | undefined> {
    const written = await lstat(this.stateFile, { bigint: true }).then(
      (st) => st.mtimeNs,
      () => undefined,
    );
    if (saved.takenAtMs === undefined) return written;
    const taken = BigInt(saved.takenAtMs - TAKEN_MARGIN_MS) * 1_000_000n;
    return written !== undefined && written < taken ? written : taken;
  }

  /** Reads an opened rotated file from byte 0, to its end, before what comes after it. */
  private openChained({ found, fh, st }: Opened, why: string): boolean {
    this.cur = this.cursor(fh, st.dev, st.ino, found.path, 0);
    this.cur.gone = true;
    this.markStart(this.cur);
    this.log.notice(`file ${this.path}: ${why}: reading the rotated ${found.path} from byte 0`);
    return true;
  }

  /**
   * The position "this file, from byte 0", taken in line order: it is acknowledged (and saved)
   * only once every line queued before it is durable.
   */
  private markStart(cur: Cursor): void {
    this.mark = {
      path: this.path,
      inode: String(cur.ino),
      offset: 0,
      firstLineHash: "",
      takenAtMs: Date.now(),
    };
    this.deliver();
  }

  /** Why `saved` does not describe this file, or undefined when it does. */
  private async judge(
    fh: FileHandle,
    size: bigint,
    saved: FilePosition,
  ): Promise<string | undefined> {
    if (size < BigInt(saved.offset))
      return `is shorter (${size} bytes) than the saved offset ${saved.offset}`;
    // At offset 0 there is nothing to skip, so nothing to verify.
    if (saved.offset === 0) return undefined;
    const { hash } = await firstLineHash(fh);
    return hash === saved.firstLineHash ? undefined : "another first line";
  }

  private cursor(fh: FileHandle, dev: bigint, ino: bigint, name: string, pos: number): Cursor {
    const splitter = new LineSplitter(
      this.maxLineBytes === undefined ? {} : { maxLineBytes: this.maxLineBytes },
    );
    return { fh, dev, ino, name, pos, splitter, hash: undefined, gone: false };
  }

  // --- the pump ---------------------------------------------------------------------------

  /** Asks for a step; steps never overlap, and requests made during one coalesce into one. */
  private kick(): void {
    if (this.stopping) return;
    this.wanted = true;
    if (this.pumping) return;
    // Assigned before the pump's first statement runs, so `pumping` is never left stale.
    this.pumping = Promise.resolve().then(() => this.pump());
  }

  private async pump(): Promise<void> {
    try {
      while (this.wanted && !this.stopping) {
        this.wanted = false;
        await this.attempt(() => this.step());
        this.arm();
        this.statusChanges.check();
      }
    } finally {
      this.pumping = undefined;
    }
  }

  /** Never out of an event handler: an error is reported once, and retried on the stat timer. */
  private async attempt(action: () => Promise<void>): Promise<void> {
    try {
      await action();
      if (this.problem) {
        this.log.info(`file ${this.path}: reading again`);
        this.problem = undefined;
      }
    } catch (error) {
      const problem = describe(error);
      if (problem !== this.problem)
        this.log.error(`file ${this.path}: ${problem}; retrying every ${this.statIntervalMs} ms`);
      this.problem = problem;
    }
  }

  private async step(): Promise<void> {
    if (!this.cur) {
      await this.openPath();
      if (!this.cur) return;
    }
    const cur = this.cur;
    // On the slow timer: was the file truncated and rewritten to exactly our offset since the
    // last look? Nothing is there to read, so readAvailable's check cannot tell; its first line
    // can.
    if (this.verifyHead) {
      this.verifyHead = false;
      if (await this.headChanged(cur)) return;
    }
    if (await this.readAvailable(cur)) return;

    // At the end of what is there. Was the file truncated (copytruncate), perhaps then rotated?
    const size = (await cur.fh.stat({ bigint: true })).size;
    if (size < BigInt(cur.pos)) {
      await this.truncated(cur, `was truncated (${size} bytes, we were at byte ${cur.pos})`);
      return;
    }

    // Does the path still name this file?
    let now: Awaited<ReturnType<typeof statBig>> | undefined;
    try {
      now = await statBig(this.path);
      this.missing = false;
    } catch (error) {
      if (!isMissing(error)) throw error;
      this.missing = true;
    }
    if (now && now.ino === cur.ino && now.dev === cur.dev) {
      // Renamed back, or a rotated name that is a hard link of the file at `path`.
      if (cur.gone) {
        cur.gone = false;
        cur.name = this.path;
        this.log.info(`file ${this.path}: it is back under its name: following it on`);
      }
      return;
    }
    if (!cur.gone) {
      cur.gone = true;
      this.log.notice(
        now
          ? `file ${this.path}: it was replaced by another file: finishing the old one (at byte ${cur.pos}) first`
          : `file ${this.path}: it was renamed or removed: finishing it (at byte ${cur.pos}), then waiting for a new one`,
      );
    }
    // Switch only once the writer has moved on: the new file has data, or a rotated file was
    // written after this one (a second rotation while we were stopped, or while we finished
    // this one). Until then the writer may still be appending to the old one (logrotate's
    // postrotate has not signalled it yet). Which file comes next, openPath chooses.
    const done = await cur.fh.stat({ bigint: true });
    const movedOn =
      (now?.isFile() === true && now.size > 0n) ||
      (await nextRotated(this.directory, this.base, done, now?.ino)) !== undefined;
    if (!movedOn) return;
    // Last chance to tell a truncation that left it exactly as long as our offset.
    if ((await this.headChanged(cur)) || (await this.readAvailable(cur))) return;
    const last = cur.splitter.flush();
    if (last !== undefined) {
      // The old file's final partial line: it will never be completed now.
      cur.hash ??= (await firstLineHash(cur.fh)).hash;
      this.enqueue(cur, [last]);
    }
    this.reportDropped(cur, 0);
    this.cur = undefined;
    await cur.fh.close().catch(() => undefined);
    const old = cur.name === this.path ? "the old file" : cur.name;
    this.wanted = true;
    // What comes next is chosen with the file at `path` open (openPath), so that a rotation
    // between the choice and the open cannot skip a file.
    this.chainAfter = {
      ino: done.ino,
      mtimeNs: done.mtimeNs,
      why: `finished ${old} at byte ${cur.pos}`,
      source: cur.source,
    };
    await this.openPath();
  }

  /**
   * Opens the file at `path`, at the saved offset when it is the saved file, else at 0; or,
   * first, a rotated file that comes before it (openBefore). `path` is opened before the
   * directory is listed, so that a rotation in between shows in the listing.
   */
  private async openPath(): Promise<void> {
    // While `path` is missing, the listing from when it went missing: a file created and
    // copied meanwhile would otherwise be in a later listing, and its copy never read.
    const rotatedBefore = this.rotatedWhileMissing ?? (await this.rotatedInodes());
    let fh: FileHandle | undefined;
    try {
      fh = await openForReading(this.path);
    } catch (error) {
      if (!isMissing(error)) throw error;
    }
    try {
      const st = await fh?.stat({ bigint: true });
      if (st && !st.isFile()) throw new Error(`${this.path} is not a regular file`);
      if (await this.openBefore(st?.ino)) {
        await fh?.close().catch(() => undefined);
        return;
      }
      if (!fh || !st) {
        if (!this.missing) this.log.info(`file ${this.path}: waiting for it to appear`);
        this.missing = true;
        this.rotatedWhileMissing = rotatedBefore;
        return;
      }
      const saved = this.saved;
      this.saved = undefined;
      let offset = 0;
      if (saved && this.firstStart && saved.inode === String(st.ino)) {
        this.log.info(`file ${this.path}: no saved position: reading it from byte 0`);
      } else if (saved) {
        const verdict = saved.inode === String(st.ino) ? await this.judge(fh, st.size, saved) : "";
        if (verdict === undefined) offset = saved.offset;
        else if (await this.resumeFromCopy(saved, st.ino)) {
          await fh.close().catch(() => undefined);
          return;
        } else
          this.log.notice(
            `file ${this.path}: ${verdict || "another file than the saved position's"}: reading it from byte 0`,
          );
      } else if (this.missing) {
        this.log.notice(`file ${this.path}: it appeared: reading it from byte 0`);
      }
      this.firstStart = false;
      this.missing = false;
      this.rotatedWhileMissing = undefined;
      this.throughLink = await lstat(this.path).then(
        (link) => link.isSymbolicLink(),
        () => false,
      );
      this.cur = this.cursor(fh, st.dev, st.ino, this.path, offset);
      if (saved && offset > 0) this.cur.hash = saved.firstLineHash;
      // Saved before any line of it is read (once all before it is durable): killed then, a
      // reader restarted after a rotation knows this file, and finishes the lines left in it.
      if (offset === 0) {
        this.cur.rotatedBefore = rotatedBefore;
        this.markStart(this.cur);
      }
      if (offset > 0) this.log.info(`file ${this.path}: resuming at byte ${offset}`);
    } catch (error) {
      await fh?.close().catch(() => undefined);
      throw error;
    }
  }

  /**
   * Reads `cur` to its end, queueing and delivering complete lines. Returns true when it
   * stopped early: the queue is full (delivery resumes it) or the reader is stopping.
   */
  private async readAvailable(cur: Cursor): Promise<boolean> {
    for (;;) {
      if (this.stopping) return true;
      if (this.queue.length >= this.maxBatchLines) {
        this.paused = true;
        return true;
      }
      const { bytesRead } = await cur.fh.read(this.buffer, 0, READ_BYTES, cur.pos);
      if (bytesRead === 0) {
        if (!cur.gone) this.caughtUp = true;
        return false;
      }
      // Checked after the read: bytes read from a file that copytruncate emptied and its writer
      // filled past our offset before we looked (a stalled reader) are not ours to deliver.
      if ((await this.headChanged(cur)) || (await this.copiedBeforeRead(cur))) return true;
      const from = cur.pos;
      cur.pos += bytesRead;
      const dropped = cur.splitter.dropped;
      const lines = cur.splitter.push(this.buffer.subarray(0, bytesRead));
      this.reportDropped(cur, dropped);
      if (lines.length > 0) {
        if (cur.hash === undefined) {
          // From the bytes just read, where they start the file: read again, the first line
          // could already be a later file's (copytruncate in between), and would vouch for it.
          const head =
            from === 0
              ? hashFirstLine(this.buffer.subarray(0, bytesRead))
              : await firstLineHash(cur.fh);
          if (head.final) cur.hash = head.hash;
        }
        this.enqueue(cur, lines);
      }
      // A short read is the end of the file; a write after it brings another watch event.
      if (bytesRead < READ_BYTES) return false;
    }
  }

  /**
   * Whether the followed file now starts with another first line than the one we read: it was
   * truncated and rewritten (copytruncate), which its size alone cannot show once it has grown
   * past our offset again. Then hands over to truncated(), which finishes the copy first.
   */
  private async headChanged(cur: Cursor): Promise<boolean> {
    if (cur.hash === undefined || cur.pos === 0) return false;
    if ((await firstLineHash(cur.fh)).hash === cur.hash) return false;
    await this.truncated(cur, "was truncated and rewritten (its first line changed)");
    return true;
  }

  private enqueue(cur: Cursor, lines: string[]): void {
    const live = this.caughtUp && !cur.gone;
    this.queueLive = this.queue.length === 0 ? live : this.queueLive && live;
    for (const line of lines) {
      // A hole of NULs (copytruncate with a writer lacking O_APPEND, a crash) before the text.
      const text = line.charCodeAt(0) === 0 ? line.replace(/^\0+/, "") : line;
      this.queue.push({ kind: "line", text });
    }
    this.mark = {
      path: this.path,
      inode: String(cur.ino),
      offset: cur.pos - cur.splitter.pendingBytes,
      firstLineHash: cur.hash ?? "",
      takenAtMs: Date.now(),
    };
    this.deliver();
  }

  /**
   * The followed file was truncated under us (copytruncate). What was appended after our last
   * read lives on only in the copy: finish that from where we were, then this file from byte 0.
   * Without a copy, this file is read again from byte 0.
   */
  private async truncated(cur: Cursor, why: string): Promise<void> {
    this.wanted = true;
    const hash = cur.hash;
    const copy =
      hash === undefined
        ? undefined
        : await openFound(() => findCopy(this.directory, this.base, hash, cur.pos, cur.ino));
    if (copy) {
      this.cur = {
        ...cur,
        fh: copy.fh,
        dev: copy.st.dev,
        ino: copy.st.ino,
        name: copy.found.path,
        gone: true,
        source: cur.ino,
      };
      await cur.fh.close().catch(() => undefined);
      this.log.notice(
        `file ${this.path}: it ${why}: finishing its copy ${copy.found.path} from byte ${cur.pos} first`,
      );
      return;
    }
    this.log.notice(`file ${this.path}: it ${why}: reading it again from byte 0`);
    cur.pos = 0;
    cur.hash = undefined;
    cur.splitter.reset();
    cur.rotatedBefore = await this.rotatedInodes();
    this.markStart(cur);
  }

  private async rotatedInodes(): Promise<Set<bigint>> {
    return new Set((await rotatedSiblings(this.directory, this.base)).map((s) => s.ino));
  }

  /**
   * At the first read of a file followed from byte 0: was it copied and truncated since it was
   * opened? Its size and first line cannot tell, as nothing of it was read. A rotated file that
   * was not there at the open, while this one is still at `path`, is that copy: it is read
   * first, from byte 0, then this file (a file copied by hand is read twice, which grants
   * nothing new).
   */
  private async copiedBeforeRead(cur: Cursor): Promise<boolean> {
    const before = cur.rotatedBefore;
    cur.rotatedBefore = undefined;
    if (!before || cur.gone) return false;
    const copy = await openFound(async () =>
      (await rotatedSiblings(this.directory, this.base)).find(
        (s) => s.ino !== cur.ino && !before.has(s.ino) && s.path !== this.stateFile,
      ),
    );
    if (!copy) return false;
    // Checked after the listing: renamed away since, this file may have been followed by newer
    // ones (created after its rename, so listed only then), which are no copies of it.
    const now = await statBig(this.path).catch(() => undefined);
    if (now?.ino !== cur.ino || now.dev !== cur.dev) return close(copy.fh, false);
    this.wanted = true;
    await cur.fh.close().catch(() => undefined);
    this.cur = this.cursor(copy.fh, copy.st.dev, copy.st.ino, copy.found.path, 0);
    this.cur.gone = true;
    this.cur.source = cur.ino;
    this.markStart(this.cur);
    this.log.notice(
      `file ${this.path}: it was copied and truncated before it was read: reading the copy ${copy.found.path} from byte 0 first`,
    );
    return true;
  }

  private reportDropped(cur: Cursor, before: number): void {
    const count = cur.splitter.dropped - before;
    if (count > 0)
      this.log.warning(
        `file ${cur.name}: dropped ${count} line(s) longer than ${cur.splitter.maxLineBytes} bytes before byte ${cur.pos}`,
      );
  }

  // --- delivery and acknowledgement -------------------------------------------------------

  /** Hands everything queued to the sink as one batch, unless a batch is in flight. */
  private deliver(): void {
    const sink = this.sink;
    if (this.inflight || this.sinkRetry || !sink || this.stopping) return;
    if (this.queue.length === 0) {
      // A position with no line to go with it (a truncation): acknowledged once all before it is.
      if (this.mark !== undefined && this.mark !== this.acked) this.acknowledge(this.mark, true);
      return;
    }
    const batch = this.queue;
    const mark = this.mark;
    const live = this.queueLive;
    this.queue = [];
    this.inflight = (async () => sink(batch, live))().then(
      (changed) => {
        this.inflight = undefined;
        if (this.sinkProblem !== undefined) {
          this.log.notice(`file ${this.path}: the sink works again`);
          this.sinkProblem = undefined;
        }
        this.sinkRetryMs = SINK_RETRY_FIRST_MS;
        this.acknowledge(mark, changed === true);
        this.statusChanges.check();
        this.deliver();
        if (this.paused) {
          this.paused = false;
          this.kick();
        }
      },
      (error: unknown) => {
        this.inflight = undefined;
        if (this.stopping) {
          // Stopped while the sink retried: the batch stays unacknowledged, read again next start.
          this.queue = [];
          return;
        }
        // Never stop for good: the batch goes back in front, and is offered again later.
        this.queueLive = live && (this.queue.length === 0 || this.queueLive);
        this.queue = batch.concat(this.queue);
        const wait = this.sinkRetryMs;
        this.sinkRetryMs = Math.min(wait * 2, SINK_RETRY_MAX_MS);
        const problem = `the sink failed: ${describe(error)}`;
        if (problem !== this.sinkProblem)
          this.log.error(
            `file ${this.path}: ${problem}; offering the batch again (every ${SINK_RETRY_MAX_MS / 1000} s at most), the position stays before it`,
          );
        this.sinkProblem = problem;
        this.statusChanges.check();
        this.sinkRetry = setTimeout(() => {
          this.sinkRetry = undefined;
          this.deliver();
        }, wait);
      },
    );
  }

  private acknowledge(mark: FilePosition | undefined, changed: boolean): void {
    if (!mark) return;
    this.acked = mark;
    if (changed) {
      void this.persist();
    } else if (!this.lazyPersist && !this.stopping) {
      this.lazyPersist = setTimeout(() => {
        this.lazyPersist = undefined;
        void this.persist();
      }, this.persistIntervalMs);
    }
  }

  /** Writes the latest acknowledged position; writes are serialised, so never go backwards. */
  private persist(): Promise<void> {
    this.persistChain = this.persistChain.then(async () => {
      const position = this.acked;
      if (!position || position === this.persisted) return;
      try {
        if (!this.stateDirectoryMade) {
          await mkdir(dirname(this.stateFile), { recursive: true });
          await removeStaleTempFiles(dirname(this.stateFile), basename(this.stateFile));
          this.stateDirectoryMade = true;
        }
        await writeFileAtomic(this.stateFile, formatPosition(position));
        this.persisted = position;
      } catch (error) {
        this.log.error(
          `file ${this.path}: cannot save the position to ${this.stateFile}: ${describe(error)}`,
        );
      }
    });
    return this.persistChain;
  }

  // --- watching ---------------------------------------------------------------------------

  /**
   * Arms the stat timer for the wait the reader's state allows, unless it is due sooner already:
   * called after each tick, and whenever the watch may have become less trustworthy (an error, a
   * lost watch, a symbolic link, the file renamed or missing).
   */
  private arm(): void {
    if (this.stopping) return;
    // Without the file open at `path`, the directory itself may have been replaced, which the
    // watch does not always report: while the old file is held open, its directory's removal
    // is not signalled until it is closed.
    const watched =
      this.watcher !== undefined &&
      this.watchComplete &&
      !this.throughLink &&
      this.problem === undefined &&
      this.cur !== undefined &&
      !this.cur.gone;
    const wait = watched ? this.watchedCheckMs : this.statIntervalMs;
    const due = performance.now() + wait;
    if (this.timer && this.due <= due) return;
    clearTimeout(this.timer);
    this.due = due;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.tick();
    }, wait);
  }

  private tick(): void {
    void this.ensureWatcher().then(async () => {
      this.arm();
      // While the watch is up, an idle tick costs one fstat: the full look (first-line hash,
      // read, truncation and rename checks) runs only when the file changed since the last
      // tick, which is also what a file system without inotify (NFS) shows.
      const cur = this.cur;
      if (cur && !cur.gone && this.watcher && !this.problem && !this.stopping) {
        const look = await cur.fh.stat({ bigint: true }).then(
          (st) => `${st.size}:${st.mtimeNs}:${st.ctimeNs}:${st.nlink}`,
          () => undefined,
        );
        if (look !== undefined && look === this.lastLook && cur === this.cur) return;
        this.lastLook = look;
      }
      this.verifyHead = true;
      this.kick();
    });
  }

  /** (Re)creates the directory watch: at start, after an error, or when the directory was replaced. */
  private async ensureWatcher(): Promise<void> {
    if (!this.useWatch || this.stopping) return;
    let ino: bigint;
    try {
      ino = (await statBig(this.directory)).ino;
    } catch (error) {
      this.closeWatcher();
      this.watchTrouble(`cannot watch ${this.directory}: ${describe(error)}`);
      return;
    }
    if (this.stopping || (this.watcher && this.watchedDirectory === ino)) return;
    const complete = await watchSeesEveryWrite(this.directory);
    if (this.stopping) return;
    this.closeWatcher();
    try {
      const watcher = watch(this.directory, { persistent: true }, (_event, name) =>
        this.onWatch(name),
      );
      watcher.on("error", (error) => {
        if (this.watcher === watcher) this.closeWatcher();
        else watcher.close();
        this.watchTrouble(`watching ${this.directory} failed: ${describe(error)}`);
      });
      this.watcher = watcher;
      this.watchedDirectory = ino;
      this.watchComplete = complete;
      if (this.watchProblem) this.log.info(`file ${this.path}: watching ${this.directory} again`);
      this.watchProblem = undefined;
    } catch (error) {
      this.watchTrouble(`cannot watch ${this.directory}: ${describe(error)}`);
    }
  }

  private watchTrouble(problem: string): void {
    if (problem !== this.watchProblem)
      this.log.warning(
        `file ${this.path}: ${problem}; checking every ${this.statIntervalMs} ms instead`,
      );
    this.watchProblem = problem;
    this.arm();
  }

  private onWatch(name: string | null): void {
    // Our name, or anything while we finish a rotated file whose new name we do not know.
    if (name === null || name === this.base || this.cur?.gone) this.kick();
  }

  private closeWatcher(): void {
    this.watcher?.close();
    this.watcher = undefined;
    this.watchedDirectory = undefined;
  }

  // --- stopping ---------------------------------------------------------------------------

  private shutdown(): Promise<void> {
    this.closing ??= (async () => {
      this.stopping = true;
      this.closeWatcher();
      clearTimeout(this.timer);
      clearTimeout(this.sinkRetry);
      clearTimeout(this.lazyPersist);
      this.lazyPersist = undefined;
      await this.pumping;
      await this.inflight;
      const cur = this.cur;
      this.cur = undefined;
      await cur?.fh.close().catch(() => undefined);
      await this.persist();
      this.statusChanges.check();
    })();
    return this.closing;
  }
}

function statBig(path: string) {
  return stat(path, { bigint: true });
}

async function close(fh: FileHandle, result: boolean): Promise<boolean> {
  await fh.close().catch(() => undefined);
  return result;
}
