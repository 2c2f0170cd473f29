import { randomBytes } from "node:crypto";
import { readFileSync, readSync, statSync, writeSync } from "node:fs";
import { mkdir, readdir, readFile, stat, unlink } from "node:fs/promises";
import { join } from "node:path";
import { InvalidIpError, isCanonicalIp } from "../address/ip.js";
import { syncDirectory, writeFileAtomic } from "../fs/atomic.js";
import { processAlive } from "../fs/pid.js";
import type { Logger } from "../log.js";
import { FileLock } from "./lock.js";
import type { SpoolEntry, SpoolStore } from "./types.js";

export interface FileSpoolOptions {
  directory: string;
  /** Seconds a legacy spool file (Mail::POPRelay's, no JSON inside) lasts from its mtime. */
  legacyPeriod: number;
  log: Logger;
}

// User names come from log lines: keep them printable and short in the spool.
const MAX_USER_LENGTH = 256;
const CONTROL = /[\p{Cc}\p{Cf}]/gu;
const TEMP_FILE = /^\.(.+)\.(\d+)\.[0-9a-f]+\.tmp$/;
/** The generation written into the lock file by every change: "g" and 32 hex digits. */
const GENERATION_BYTES = 33;

/** Makes a user name safe to store and print: no control characters, bounded length. */
export function sanitizeUser(user: string): string {
  return user.replace(CONTROL, "?").slice(0, MAX_USER_LENGTH);
}

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
  private cache: Map<string, SpoolEntry> | undefined;
  private sorted: SpoolEntry[] | undefined;
  /** What the cache was valid for: the lock file's generation and the directory's stat. */
  private stamp: string | undefined;
  /** Set while this process holds the lock: only then is the cache used. */
  private held = false;
  /** A change was made under the current hold: the generation moves on at its end. */
  private changed = false;

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

  async put(entries: readonly SpoolEntry[]): Promise<SpoolEntry[]> {
    for (const entry of entries) assertKey(entry.ip);
    await this.prepare();
    const cache = this.held ? this.cache : undefined;
    const changed: SpoolEntry[] = [];
    for (const entry of latestPerIp(entries)) {
      const current = cache ? cache.get(entry.ip) : await this.read(entry.ip);
      if (current && !supersedes(entry, current)) continue;
      const stored = { ...entry, user: sanitizeUser(entry.user), agent: sanitizeUser(entry.agent) };
      this.changed = true;
      await writeFileAtomic(this.path(entry.ip), serialize(stored), 0o640);
      if (cache) this.remember(stored);
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
      if (await unlinkIfPresent(this.path(ip))) removed.push(ip);
      if (cache) this.drop(ip);
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

  async list(): Promise<SpoolEntry[]> {
    await this.prepare();
    if (this.held && this.cache) {
      this.sorted ??= sortEntries([...this.cache.values()]);
      return [...this.sorted];
    }
    const names = await readdir(this.options.directory);
    const entries: SpoolEntry[] = [];
    for (const name of names) {
      if (name.startsWith(".")) continue;
      if (!isCanonicalIp(name)) {
        this.options.log.warning(
          `spool ${this.options.directory}: ignoring ${JSON.stringify(name)}: not an address in canonical form`,
        );
        continue;
      }
      const entry = this.readSync(name);
      if (entry) entries.push(entry);
    }
    const sorted = sortEntries(entries);
    if (this.held) {
      this.cache = new Map(sorted.map((e) => [e.ip, e]));
      this.sorted = sorted;
      return [...sorted];
    }
    return sorted;
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

  private directoryStat(): string {
    const st = statSync(this.options.directory, { bigint: true });
    return `${st.dev}:${st.ino}:${st.mtimeNs}:${st.ctimeNs}`;
  }

  private forget(): void {
    this.cache = undefined;
    this.sorted = undefined;
    this.stamp = undefined;
  }

  private remember(entry: SpoolEntry): void {
    const cache = this.cache;
    if (!cache) return;
    const had = cache.has(entry.ip);
    cache.set(entry.ip, entry);
    const sorted = this.sorted;
    if (!sorted) return;
    const at = searchSorted(sorted, entry.ip);
    if (had && sorted[at]?.ip === entry.ip) sorted[at] = entry;
    else sorted.splice(at, 0, entry);
  }

  private drop(ip: string): void {
    if (!this.cache?.delete(ip)) return;
    const sorted = this.sorted;
    if (!sorted) return;
    const at = searchSorted(sorted, ip);
    if (sorted[at]?.ip === ip) sorted.splice(at, 1);
  }

  private prepare(): Promise<void> {
    this.ready ??= mkdir(this.options.directory, { recursive: true, mode: 0o750 }).then(() =>
      this.removeStaleTempFiles(),
    );
    return this.ready;
  }

  /** Temp files of writers that died before their rename. */
  private async removeStaleTempFiles(): Promise<void> {
    for (const name of await readdir(this.options.directory)) {
      const pid = Number(TEMP_FILE.exec(name)?.[2]);
      if (pid && !processAlive(pid)) await unlinkIfPresent(join(this.options.directory, name));
    }
  }

  private async read(ip: string): Promise<SpoolEntry | undefined> {
    const path = this.path(ip);
    let text: string;
    try {
      text = await readFile(path, "utf8");
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      throw error;
    }
    return parse(ip, text) ?? this.legacy(ip, text, (await stat(path)).mtimeMs);
  }

  /**
   * read(), synchronously: for reading the whole spool, where a file is a few dozen bytes and
   * the thread pool's round trips (open, stat, read, close: four per file) cost more than the
   * reads themselves (100,000 files: 18 s asynchronously, about 2 s so).
   */
  private readSync(ip: string): SpoolEntry | undefined {
    const path = this.path(ip);
    let text: string;
    try {
      text = readFileSync(path, "utf8");
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      throw error;
    }
    return parse(ip, text) ?? this.legacy(ip, text, statSync(path).mtimeMs);
  }

  /** Mail::POPRelay's files: the user name, dated by the file's mtime. */
  private legacy(ip: string, text: string, mtimeMs: number): SpoolEntry {
    const login = Math.floor(mtimeMs);
    const user = sanitizeUser(text.split("\n")[0]?.trim() ?? "");
    this.options.log.debug(`spool ${this.path(ip)}: legacy entry, dated by its mtime`);
    return { ip, user, agent: "legacy", login, expires: login + this.options.legacyPeriod * 1000 };
  }
}

/**
 * compareIps' order (numeric, IPv4 first) as a string: family digit, then the address in
 * fixed-width hex. Computed once per entry: compareIps parses both addresses per comparison.
 */
export function addressOrderKey(ip: string): string {
  if (!ip.includes(":")) {
    let key = "4";
    for (const octet of ip.split(".")) key += Number(octet).toString(16).padStart(2, "0");
    return key;
  }
  const [head = "", tail] = ip.split("::");
  const groups = (text: string) => (text === "" ? [] : text.split(":"));
  const left = groups(head);
  const right = tail === undefined ? [] : groups(tail);
  const zeros = Array<string>(8 - left.length - right.length).fill("0");
  return `6${[...left, ...zeros, ...right].map((group) => group.padStart(4, "0")).join("")}`;
}

const orderKeys = new Map<string, string>();

/** addressOrderKey, remembered for the addresses a process keeps seeing. */
function orderKey(ip: string): string {
  let key = orderKeys.get(ip);
  if (key === undefined) {
    if (orderKeys.size >= 1_000_000) orderKeys.clear();
    key = addressOrderKey(ip);
    orderKeys.set(ip, key);
  }
  return key;
}

function sortEntries(entries: SpoolEntry[]): SpoolEntry[] {
  const keyed = entries.map((entry) => ({ entry, key: orderKey(entry.ip) }));
  keyed.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  return keyed.map(({ entry }) => entry);
}

/** Where `ip` is, or would go, in entries sorted by address. */
function searchSorted(sorted: readonly SpoolEntry[], ip: string): number {
  const key = orderKey(ip);
  let low = 0;
  let high = sorted.length;
  while (low < high) {
    const mid = (low + high) >>> 1;
    if (orderKey((sorted[mid] as SpoolEntry).ip) < key) low = mid + 1;
    else high = mid;
  }
  return low;
}

function assertKey(ip: string): void {
  if (!isCanonicalIp(ip)) throw new InvalidIpError(ip, "spool keys must be canonical addresses");
}

/** One entry per address within a batch: the one that would win anyway. */
function latestPerIp(entries: readonly SpoolEntry[]): SpoolEntry[] {
  const byIp = new Map<string, SpoolEntry>();
  for (const entry of entries) {
    const current = byIp.get(entry.ip);
    if (!current || supersedes(entry, current)) byIp.set(entry.ip, entry);
  }
  return [...byIp.values()];
}

/** A replayed or older login never shortens an entry; a new login refreshes it. */
function supersedes(next: SpoolEntry, current: SpoolEntry): boolean {
  return (
    next.login > current.login || (next.login === current.login && next.expires > current.expires)
  );
}

function serialize(entry: SpoolEntry): string {
  const { user, agent, login, expires } = entry;
  return `${JSON.stringify({ user, agent, login: new Date(login).toISOString(), expires: new Date(expires).toISOString() })}\n`;
}

function parse(ip: string, text: string): SpoolEntry | undefined {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof value !== "object" || value === null) return undefined;
  const { user, agent, login, expires } = value as Record<string, unknown>;
  const loginMs = typeof login === "string" ? Date.parse(login) : Number.NaN;
  const expiresMs = typeof expires === "string" ? Date.parse(expires) : Number.NaN;
  if (
    typeof user !== "string" ||
    typeof agent !== "string" ||
    Number.isNaN(loginMs) ||
    Number.isNaN(expiresMs)
  ) {
    return undefined;
  }
  return { ip, user, agent, login: loginMs, expires: expiresMs };
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
