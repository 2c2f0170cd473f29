/** The file reader's saved position, and the file identity checks used to resume from it. */
import { createHash } from "node:crypto";
import type { BigIntStats, Dirent } from "node:fs";
import { constants } from "node:fs";
import { type FileHandle, lstat, open, readdir, readFile } from "node:fs/promises";
import { join } from "node:path";

/** How much of the first line the identity hash covers. */
export const HASH_BYTES = 4096;

/**
 * The state file's content: the byte just after the last acknowledged line of the file that
 * had inode `inode` when it was read as `path`. The inode is a decimal string: inode numbers
 * can exceed 2^53 (overlayfs, XFS), and JSON numbers cannot hold them.
 */
export interface FilePosition {
  path: string;
  inode: string;
  offset: number;
  /** sha256 (hex) of the first line, up to HASH_BYTES bytes, without its newline. */
  firstLineHash: string;
  /**
   * When the position was taken (ms since the epoch): nothing after `offset` had been read
   * then, so a rotated file written since may hold lines not read yet. Absent from state files
   * written before it existed; the state file's own time stands in for it then.
   */
  takenAtMs?: number;
}

/** O_NONBLOCK: opening a FIFO put where the log should be must not hang a thread. */
const OPEN_FLAGS = constants.O_RDONLY | constants.O_NONBLOCK;

export function openForReading(path: string): Promise<FileHandle> {
  return open(path, OPEN_FLAGS);
}

export function isMissing(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  return code === "ENOENT" || code === "ENOTDIR";
}

/** A file found by a directory listing: its name then, and its inode. */
export interface Found {
  path: string;
  ino: bigint;
}

/** A found file, open. */
export interface Opened {
  found: Found;
  fh: FileHandle;
  st: BigIntStats;
}

/** How often a file found by a listing is looked for again when a rotation renamed it meanwhile. */
const FIND_ATTEMPTS = 20;

/**
 * Opens the regular file `find` names, and only that inode. A rotation between the listing
 * and the open moves names (log.1 becomes log.2, another file is log.1 now): then the listing
 * is made again, so a rotated file is never taken for another, nor skipped.
 */
export async function openFound(
  find: () => Promise<Found | undefined>,
): Promise<Opened | undefined> {
  for (let attempt = 0; attempt < FIND_ATTEMPTS; attempt++) {
    const found = await find();
    if (!found) return undefined;
    let fh: FileHandle;
    try {
      fh = await openForReading(found.path);
    } catch (error) {
      if (isMissing(error)) continue;
      throw error;
    }
    try {
      const st = await fh.stat({ bigint: true });
      if (st.ino === found.ino && st.isFile()) return { found, fh, st };
    } catch (error) {
      await fh.close().catch(() => undefined);
      throw error;
    }
    await fh.close().catch(() => undefined);
  }
  throw new Error(
    `the rotated files kept being renamed while they were opened (${FIND_ATTEMPTS} tries)`,
  );
}

/** The identity hash of a file's first bytes; `final` once it can no longer change by appends. */
export function hashFirstLine(head: Uint8Array): { hash: string; final: boolean } {
  const newline = head.indexOf(0x0a);
  const end = newline >= 0 ? Math.min(newline, HASH_BYTES) : Math.min(head.length, HASH_BYTES);
  return {
    hash: createHash("sha256").update(head.subarray(0, end)).digest("hex"),
    final: newline >= 0 || head.length >= HASH_BYTES,
  };
}

/** Reads the file's first bytes and hashes its first line. */
export async function firstLineHash(fh: FileHandle): Promise<{ hash: string; final: boolean }> {
  const head = Buffer.alloc(HASH_BYTES);
  let filled = 0;
  while (filled < HASH_BYTES) {
    const { bytesRead } = await fh.read(head, filled, HASH_BYTES - filled, filled);
    if (bytesRead === 0) break;
    filled += bytesRead;
  }
  return hashFirstLine(head.subarray(0, filled));
}

/** Reads and checks a state file; `undefined` when there is none, an Error when it is bad. */
export async function loadPosition(stateFile: string): Promise<FilePosition | undefined | Error> {
  let text: string;
  try {
    text = await readFile(stateFile, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    return error instanceof Error ? error : new Error(String(error));
  }
  try {
    const data = JSON.parse(text) as Record<string, unknown>;
    const { path, inode, offset, firstLineHash, takenAtMs } = data;
    const inodeText = typeof inode === "number" ? String(inode) : inode;
    if (
      typeof path !== "string" ||
      typeof inodeText !== "string" ||
      !/^\d+$/.test(inodeText) ||
      typeof offset !== "number" ||
      !Number.isSafeInteger(offset) ||
      offset < 0 ||
      typeof firstLineHash !== "string" ||
      (takenAtMs !== undefined &&
        (typeof takenAtMs !== "number" || !Number.isSafeInteger(takenAtMs) || takenAtMs < 0))
    )
      return new Error("not a file reader position");
    const position: FilePosition = { path, inode: inodeText, offset, firstLineHash };
    if (takenAtMs !== undefined) position.takenAtMs = takenAtMs;
    return position;
  } catch (error) {
    return error instanceof Error ? error : new Error(String(error));
  }
}

export function formatPosition(position: FilePosition): string {
  return `${JSON.stringify(position)}\n`;
}

/** Names that compression gives a rotated log: such a file is a different inode anyway. */
export function isCompressed(name: string): boolean {
  return COMPRESSED.test(name);
}

const COMPRESSED = /\.(gz|bz2|xz|zst|lz4|lzma|lz|z|zip|br)$/i;

/**
 * Finds the regular file in `directory` that has inode `inode` (a log rotated by rename:
 * `mail.log.1`, `mail.log-20261124`, ...), skipping `except` and compressed names.
 */
export async function findByInode(
  directory: string,
  inode: bigint,
  except: string,
): Promise<Found | undefined> {
  const entries = await listDirectory(directory);
  for (const entry of entries) {
    if (entry.name === except || entry.isDirectory() || COMPRESSED.test(entry.name)) continue;
    const path = join(directory, entry.name);
    try {
      const st = await lstat(path, { bigint: true });
      if (st.isFile() && st.ino === inode) return { path, ino: inode };
    } catch {
      // Gone meanwhile, or unreadable: not ours to judge.
    }
  }
  return undefined;
}

/** The directory's entries; none where it does not exist (yet). */
async function listDirectory(directory: string): Promise<Dirent[]> {
  try {
    return await readdir(directory, { withFileTypes: true });
  } catch (error) {
    if (isMissing(error)) return [];
    throw error;
  }
}

/** A rotated sibling of the followed file: `mail.log.1`, `mail.log-20261124`, ... */
export interface Rotated extends Found {
  /** What follows `base`: ".1", ".2.gz", "-20261124". */
  suffix: string;
  size: bigint;
  mtimeNs: bigint;
  /** 0 where the file system keeps no birth time. */
  birthtimeNs: bigint;
}

/**
 * The regular, uncompressed files in `directory` named `base.SUFFIX` or `base-SUFFIX` (what
 * logrotate makes, numbered or with dateext), oldest write first. Compressed ones are left out:
 * the reader does not decompress (README: the covered layouts).
 */
export async function rotatedSiblings(directory: string, base: string): Promise<Rotated[]> {
  const entries = await listDirectory(directory);
  const found: Rotated[] = [];
  for (const entry of entries) {
    const name = entry.name;
    if (name.length <= base.length + 1 || !name.startsWith(base) || isCompressed(name)) continue;
    const sep = name.charAt(base.length);
    if (sep !== "." && sep !== "-") continue;
    const path = join(directory, name);
    try {
      const st = await lstat(path, { bigint: true });
      if (st.isFile())
        found.push({
          path,
          suffix: name.slice(base.length),
          ino: st.ino,
          size: st.size,
          mtimeNs: st.mtimeNs,
          birthtimeNs: st.birthtimeNs,
        });
    } catch {
      // Gone meanwhile: nothing to read there.
    }
  }
  return found.sort(olderFirst);
}

/** logrotate's numbered names: `.1`, `.2`, ... */
const NUMBERED = /^\.(\d{1,6})$/;

/**
 * By the last write; files written within one clock tick (file times are as coarse as the
 * kernel's tick) by their names where both follow one scheme (`.2` before `.1`, `-20261123`
 * before `-20261124`): a copytruncate copy is born after the file it copied, yet holds the
 * older lines. Across schemes (numbered and dateext), by their birth: a file rotated by
 * rename is born before the next one.
 */
function olderFirst(a: Rotated, b: Rotated): number {
  if (a.mtimeNs !== b.mtimeNs) return a.mtimeNs < b.mtimeNs ? -1 : 1;
  const na = NUMBERED.exec(a.suffix);
  const nb = NUMBERED.exec(b.suffix);
  if (na && nb) return Number(nb[1]) - Number(na[1]);
  const oneScheme = !na && !nb && a.suffix.charAt(0) === b.suffix.charAt(0);
  if (!oneScheme && a.birthtimeNs > 0n && b.birthtimeNs > 0n && a.birthtimeNs !== b.birthtimeNs)
    return a.birthtimeNs < b.birthtimeNs ? -1 : 1;
  return a.suffix < b.suffix ? -1 : a.suffix > b.suffix ? 1 : 0;
}

/**
 * The rotated file written after the one with inode `after` (modified at `afterMtimeNs`) and
 * before the live one: the next link of a rotation chain (log.2, then log.1, then log).
 */
export async function nextRotated(
  directory: string,
  base: string,
  after: { ino: bigint; mtimeNs: bigint; source?: bigint | undefined },
  live: bigint | undefined,
): Promise<Rotated | undefined> {
  const siblings = await rotatedSiblings(directory, base);
  // Where the finished file stands among them now (it may have been renamed again meanwhile).
  const at = siblings.findIndex((s) => s.ino === after.ino);
  // After a copytruncate copy, the file it was copied from holds newer lines (and a later copy
  // of it, older ones: the order tells those). Ordered before its copy, it was last written
  // in the copy's clock tick, and the copy, born later, went after it: it comes next.
  const from = siblings.findIndex((s) => s.ino === after.source && s.ino !== live);
  if (from >= 0 && from < at) return siblings[from];
  // Gone from the listing (deleted, compressed): every file last written since it, including
  // in its last clock tick, may come after it (one read twice is granted twice, nothing more).
  return siblings.find((s, i) => s.ino !== live && (at >= 0 ? i > at : s.mtimeNs >= after.mtimeNs));
}

/**
 * The copy copytruncate made of the followed file: a rotated sibling, other than inode
 * `except`, at least `minSize` bytes long, whose first line has the hash `hash`.
 */
export async function findCopy(
  directory: string,
  base: string,
  hash: string,
  minSize: number,
  except: bigint,
): Promise<Rotated | undefined> {
  const siblings = await rotatedSiblings(directory, base);
  // The newest first: an older rotation with the same first line is not the copy just made.
  for (const candidate of siblings.reverse()) {
    if (candidate.ino === except || candidate.size < BigInt(minSize)) continue;
    let fh: FileHandle | undefined;
    try {
      fh = await openForReading(candidate.path);
      if ((await firstLineHash(fh)).hash === hash) return candidate;
    } catch {
      // Unreadable or gone: not the copy we can use.
    } finally {
      await fh?.close().catch(() => undefined);
    }
  }
  return undefined;
}
