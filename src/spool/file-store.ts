import { randomBytes } from "node:crypto";
import {
  closeSync,
  constants,
  type FSWatcher,
  fstatSync,
  mkdirSync,
  openSync,
  readFileSync,
  readSync,
  statSync,
  watch,
  writeSync,
} from "node:fs";
import { mkdir, open, readdir, unlink } from "node:fs/promises";
import { join } from "node:path";
import { canonicalProblem } from "../address/ip.js";
import { removeStaleTempFiles, syncDirectory, writeFileAtomic } from "../fs/atomic.js";
import type { Logger } from "../log.js";
import {
  assertKey,
  latestPerIp,
  parseEntry,
  sanitizeEntry,
  sanitizeUser,
  serializeEntry,
  supersedes,
} from "./entry.js";
import { FileLock } from "./lock.js";
import { SortedEntries, sortEntries } from "./order.js";
import type { PutOptions, SpoolEntry, SpoolStore } from "./types.js";

export interface FileSpoolOptions {
  directory: string;
  /** Seconds a legacy spool file (Mail::POPRelay's, no JSON inside) lasts from its mtime. */
  legacyPeriod: number;
  log: Logger;
}

/**
 * Opening never blocks (a FIFO would, until a writer came) and never follows a symlink: an
 * entry is a regular file, checked on the open descriptor.
 */
const SAFE_OPEN = constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOFOLLOW;
/** The generation written into the lock file by every change: "g" and 32 hex digits. */
const GENERATION_BYTES = 33;

/**
 * The spool as Mail::POPRelay kept it: one file per address in one directory, the file named
 * by the canonical address. Each file holds one JSON object and is replaced atomically.
 */
export class FileSpoolStore implements SpoolStore {
  private readonly lock: FileLock;
  private ready: Promise<void> | undefined;
  /**
   * The spool as this process last saw it under the lock, by address, and sorted as list()
   * returns it; undefined until read, and whenever another writer may have changed it.
   */
  private cache: SortedEntries | undefined;
  /** What the cache was valid for: the lock file's generation and the directory's stat. */
  private stamp: string | undefined;
  /** Set while this process holds the lock: only then is the cache used. */
  private held = false;
  /** A change was made under the current hold: the generation moves on at its end. */
  private changed = false;
  private readonly watchers = new Set<FSWatcher>();

  constructor(private readonly options: FileSpoolOptions) {
    this.lock = new FileLock(join(options.directory, ".lock"));
  }

  /**
   * Runs `fn` under the spool's lock. Entries read under the lock are kept in memory for the
   * next hold, so a grant reads no spool file; they are dropped when another process changed
   * the spool meanwhile. Every poprelay process that changes the spool writes a new random
   * generation into the lock file before it lets go, and the directory's mtime, ctime and inode
   * (nanoseconds) catch other writers that create, rename or remove files (an admin's `rm`).
   */
  exclusive<T>(fn: () => Promise<T>): Promise<T> {
    return this.prepare().then(() =>
      this.lock.run(async (fd) => {
        this.held = true;
        this.changed = false;
        let ok = false;
        try {
          if (this.stamp !== this.currentStamp(fd)) this.forget();
          const result = await fn();
          ok = true;
          return result;
        } finally {
          this.held = false;
          if (this.changed) {
            const generation = `g${randomBytes(16).toString("hex")}`;
            try {
              writeSync(fd, generation, 0, "latin1");
            } catch {
              ok = false;
            }
          }
          // After a failure midway the cache may not match the files: read them again next time.
          try {
            if (ok) this.stamp = this.currentStamp(fd);
          } catch {
            ok = false;
          }
          if (!ok) this.forget();
        }
      }),
    );
  }

  known(): boolean {
    return true;
  }

  opened(): Promise<void> {
    return this.prepare();
  }

  /**
   * inotify on the spool directory: `poprelay add`, the cleanup timer and an admin's `rm` all
   * change a file there (and every poprelay writer the lock file's generation).
   */
  watch(listener: () => void): () => void {
    mkdirSync(this.options.directory, { recursive: true, mode: 0o750 });
    // This process' own changes come back too: the stamp it left tells them apart. One write
    // is several events (temp file, rename, lock file): they are looked at once, together.
    let pending = false;
    const watcher = watch(this.options.directory, { persistent: false }, () => {
      if (pending) return;
      pending = true;
      setImmediate(() => {
        pending = false;
        if (this.stamp === undefined || this.stamp !== this.peekStamp()) listener();
      });
    });
    watcher.on("error", (error) =>
      this.options.log.warning(`spool ${this.options.directory}: watch failed: ${error.message}`),
    );
    this.watchers.add(watcher);
    return () => {
      watcher.close();
      this.watchers.delete(watcher);
    };
  }

  status(): string {
    return "";
  }

  async close(): Promise<void> {
    for (const watcher of this.watchers) watcher.close();
    this.watchers.clear();
  }

  async put(entries: readonly SpoolEntry[], options: PutOptions = {}): Promise<SpoolEntry[]> {
    for (const entry of entries) assertKey(entry.ip);
    await this.prepare();
    const cache = this.held ? this.cache : undefined;
    const changed: SpoolEntry[] = [];
    for (const entry of latestPerIp(entries)) {
      if (!options.replace) {
        const current = cache ? cache.get(entry.ip) : await this.read(entry.ip);
        if (current && !supersedes(entry, current)) continue;
      }
      const stored = sanitizeEntry(entry);
      this.changed = true;
      try {
        await writeFileAtomic(this.path(entry.ip), `${serializeEntry(stored)}\n`, 0o640);
      } catch (error) {
        // A directory in the way: this one entry cannot be kept, the others still are.
        const code = (error as NodeJS.ErrnoException).code;
        if (code !== "EISDIR" && code !== "ENOTEMPTY" && code !== "EEXIST") throw error;
        this.options.log.error(
          `spool ${this.path(entry.ip)}: not a regular file (${code}), the login of ${JSON.stringify(stored.user)} cannot be kept; remove it`,
        );
        continue;
      }
      cache?.set(stored);
      changed.push(stored);
    }
    if (changed.length > 0) await syncDirectory(this.options.directory);
    return changed;
  }

  async remove(ips: readonly string[]): Promise<string[]> {
    for (const ip of ips) assertKey(ip);
    await this.prepare();
    const cache = this.held ? this.cache : undefined;
    const removed: string[] = [];
    for (const ip of new Set(ips)) {
      this.changed = true;
      try {
        if (await unlinkIfPresent(this.path(ip))) removed.push(ip);
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code;
        if (code !== "EISDIR" && code !== "EPERM") throw error;
        this.options.log.warning(`spool ${this.path(ip)}: not a regular file, left in place`);
      }
      cache?.delete(ip);
    }
    if (removed.length > 0) await syncDirectory(this.options.directory);
    return removed;
  }

  async removeExpired(now: number): Promise<SpoolEntry[]> {
    const expired = (await this.list()).filter((e) => e.expires <= now);
    await this.remove(expired.map((e) => e.ip));
    return expired;
  }

  async wipe(): Promise<number> {
    return (await this.remove((await this.list()).map((e) => e.ip))).length;
  }

  async list(): Promise<readonly SpoolEntry[]> {
    await this.prepare();
    if (this.held && this.cache) return this.cache.list();
    const names = await readdir(this.options.directory);
    const entries: SpoolEntry[] = [];
    for (const name of names) {
      if (name.startsWith(".")) continue;
      const problem = canonicalProblem(name);
      if (problem !== undefined) {
        this.options.log.warning(
          `spool ${this.options.directory}: ignoring ${JSON.stringify(name)}: ${problem}`,
        );
        continue;
      }
      const entry = this.readSync(name);
      if (entry) entries.push(entry);
    }
    if (!this.held) return sortEntries(entries);
    this.cache = new SortedEntries(entries);
    return this.cache.list();
  }

  private path(ip: string): string {
    return join(this.options.directory, ip);
  }

  /** The lock file's generation and the spool directory's identity and times. */
  private currentStamp(fd: number): string {
    const buffer = Buffer.alloc(GENERATION_BYTES);
    const length = readSync(fd, buffer, 0, GENERATION_BYTES, 0);
    const st = this.directoryStat();
    return `${buffer.toString("latin1", 0, length)} ${st}`;
  }

  /** currentStamp() without the lock: whether anyone changed the spool since this process. */
  private peekStamp(): string | undefined {
    try {
      const fd = openSync(join(this.options.directory, ".lock"), "r");
      try {
        return this.currentStamp(fd);
      } finally {
        closeSync(fd);
      }
    } catch {
      return undefined;
    }
  }

  private directoryStat(): string {
    const st = statSync(this.options.directory, { bigint: true });
    return `${st.dev}:${st.ino}:${st.mtimeNs}:${st.ctimeNs}`;
  }

  private forget(): void {
    this.cache = undefined;
    this.stamp = undefined;
  }

  private prepare(): Promise<void> {
    this.ready ??= mkdir(this.options.directory, { recursive: true, mode: 0o750 }).then(() =>
      removeStaleTempFiles(this.options.directory),
    );
    return this.ready;
  }

  private async read(ip: string): Promise<SpoolEntry | undefined> {
    const path = this.path(ip);
    let handle: Awaited<ReturnType<typeof open>>;
    try {
      handle = await open(path, SAFE_OPEN);
    } catch (error) {
      return this.unreadable(path, error);
    }
    try {
      const st = await handle.stat();
      if (!st.isFile()) return this.notRegular(path, st);
      const text = await handle.readFile("utf8");
      return parseEntry(ip, text) ?? this.legacy(ip, text, st.mtimeMs);
    } finally {
      await handle.close();
    }
  }

  /**
   * read(), synchronously: for reading the whole spool, where a file is a few dozen bytes and
   * the thread pool's round trips (open, stat, read, close: four per file) cost more than the
   * reads themselves (100,000 files: 18 s asynchronously, about 2 s so).
   */
  private readSync(ip: string): SpoolEntry | undefined {
    const path = this.path(ip);
    let fd: number;
    try {
      fd = openSync(path, SAFE_OPEN);
    } catch (error) {
      return this.unreadable(path, error);
    }
    try {
      const st = fstatSync(fd);
      if (!st.isFile()) return this.notRegular(path, st);
      const text = readFileSync(fd, "utf8");
      return parseEntry(ip, text) ?? this.legacy(ip, text, st.mtimeMs);
    } finally {
      closeSync(fd);
    }
  }

  /** Gone meanwhile: no entry. A symlink (O_NOFOLLOW: ELOOP) is skipped, and says so. */
  private unreadable(path: string, error: unknown): undefined {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "ENOENT") return undefined;
    if (code !== "ELOOP") throw error;
    this.options.log.warning(`spool ${path}: skipped: a symbolic link, not a regular file`);
    return undefined;
  }

  /** A directory, FIFO or device where an entry should be: skipped, and the log says where. */
  private notRegular(path: string, st: import("node:fs").Stats): undefined {
    const kind = st.isDirectory() ? "a directory" : st.isFIFO() ? "a FIFO" : "not a regular file";
    this.options.log.warning(`spool ${path}: skipped: ${kind}, not a regular file`);
    return undefined;
  }

  /** Mail::POPRelay's files: the user name, dated by the file's mtime. */
  private legacy(ip: string, text: string, mtimeMs: number): SpoolEntry {
    const login = Math.floor(mtimeMs);
    const user = sanitizeUser(text.split("\n")[0]?.trim() ?? "");
    this.options.log.debug(`spool ${this.path(ip)}: legacy entry, dated by its mtime`);
    return { ip, user, agent: "legacy", login, expires: login + this.options.legacyPeriod * 1000 };
  }
}

async function unlinkIfPresent(path: string): Promise<boolean> {
  try {
    await unlink(path);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return false;
    throw error;
  }
}
