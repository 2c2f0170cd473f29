/** The file reader's saved position, and the file identity checks used to resume from it. */
import { createHash } from "node:crypto";
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
}

/** O_NONBLOCK: opening a FIFO put where the log should be must not hang a thread. */
const OPEN_FLAGS = constants.O_RDONLY | constants.O_NONBLOCK;

export function openForReading(path: string): Promise<FileHandle> {
  return open(path, OPEN_FLAGS);
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
    const { path, inode, offset, firstLineHash } = data;
    const inodeText = typeof inode === "number" ? String(inode) : inode;
    if (
      typeof path !== "string" ||
      typeof inodeText !== "string" ||
      !/^\d+$/.test(inodeText) ||
      typeof offset !== "number" ||
      !Number.isSafeInteger(offset) ||
      offset < 0 ||
      typeof firstLineHash !== "string"
    )
      return new Error("not a file reader position");
    return { path, inode: inodeText, offset, firstLineHash };
  } catch (error) {
    return error instanceof Error ? error : new Error(String(error));
  }
}

export function formatPosition(position: FilePosition): string {
  return `${JSON.stringify(position)}\n`;
}

/** Names that compression gives a rotated log: such a file is a different inode anyway. */
const COMPRESSED = /\.(gz|bz2|xz|zst|lz4|lzma|lz|z|zip|br)$/i;

/**
 * Finds the regular file in `directory` that has inode `inode` (a log rotated by rename:
 * `mail.log.1`, `mail.log-20261124`, ...), skipping `except` and compressed names.
 */
export async function findByInode(
  directory: string,
  inode: bigint,
  except: string,
): Promise<string | undefined> {
  const entries = await readdir(directory, { withFileTypes: true });
  for (const entry of entries) {
    if (entry.name === except || entry.isDirectory() || COMPRESSED.test(entry.name)) continue;
    const path = join(directory, entry.name);
    try {
      const st = await lstat(path, { bigint: true });
      if (st.isFile() && st.ino === inode) return path;
    } catch {
      // Gone meanwhile, or unreadable: not ours to judge.
    }
  }
  return undefined;
}
