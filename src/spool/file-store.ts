import { mkdir, readdir, readFile, stat, unlink } from "node:fs/promises";
import { join } from "node:path";
import { compareIps, InvalidIpError, isCanonicalIp } from "../address/ip.js";
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

  constructor(private readonly options: FileSpoolOptions) {
    this.lock = new FileLock(join(options.directory, ".lock"));
  }

  exclusive<T>(fn: () => Promise<T>): Promise<T> {
    return this.prepare().then(() => this.lock.run(fn));
  }

  async put(entries: readonly SpoolEntry[]): Promise<SpoolEntry[]> {
    for (const entry of entries) assertKey(entry.ip);
    await this.prepare();
    const changed: SpoolEntry[] = [];
    for (const entry of latestPerIp(entries)) {
      const current = await this.read(entry.ip);
      if (current && !supersedes(entry, current)) continue;
      const stored = { ...entry, user: sanitizeUser(entry.user), agent: sanitizeUser(entry.agent) };
      await writeFileAtomic(this.path(entry.ip), serialize(stored), 0o640);
      changed.push(stored);
    }
    if (changed.length > 0) await syncDirectory(this.options.directory);
    return changed;
  }

  async remove(ips: readonly string[]): Promise<string[]> {
    for (const ip of ips) assertKey(ip);
    await this.prepare();
    const removed: string[] = [];
    for (const ip of new Set(ips)) {
      if (await unlinkIfPresent(this.path(ip))) removed.push(ip);
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
      const entry = await this.read(name);
      if (entry) entries.push(entry);
    }
    return entries.sort((a, b) => compareIps(a.ip, b.ip));
  }

  private path(ip: string): string {
    return join(this.options.directory, ip);
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
    const entry = parse(ip, text);
    if (entry) return entry;
    // Mail::POPRelay's files: the user name, dated by the file's mtime.
    const { mtimeMs } = await stat(path);
    const login = Math.floor(mtimeMs);
    const user = sanitizeUser(text.split("\n")[0]?.trim() ?? "");
    this.options.log.debug(`spool ${path}: legacy entry, dated by its mtime`);
    return { ip, user, agent: "legacy", login, expires: login + this.options.legacyPeriod * 1000 };
  }
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
