/**
 * Postfix's cdb table, written in-process: the same bytes `postmap cdb:FILE` writes (Debian's
 * postfix-cdb builds it with tinycdb), without starting a process per login.
 *
 * The format (D. J. Bernstein's constant database): a 2048-byte table of contents, 256 pairs
 * (position, slot count) of little-endian 32-bit words; the records, each key length, value
 * length, key, value; then the 256 hash tables. A key's hash h starts at 5381 and takes
 * h = (h * 33) ^ byte per byte; table h & 255 has twice as many slots as it has records, and a
 * record sits in the first free slot from (h >>> 8) % slots on, in the order the records were
 * added (tinycdb's order, which makes the bytes postmap's). Each slot is (hash, record position).
 *
 * What postmap puts in: each line's key (up to the first blank, lower-cased: postmap folds case
 * by default) and its value (the rest, without the blanks around it), with no NUL after either
 * (postmap's cdb default); blank lines and `#` lines are skipped; a repeated key keeps its first
 * value (tinycdb's CDB_PUT_INSERT, which postmap uses).
 */
import { open } from "node:fs/promises";

/** A line postmap would not read as `key value`: the in-process writer refuses the whole map. */
export class CdbSourceError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "CdbSourceError";
  }
}

const TOC = 2048;
const BLANK = /[ \t]/;

/** The (key, value) pairs postmap would read from a text map, in file order, keys folded. */
export function postmapRecords(text: string): [key: string, value: string][] {
  const records: [string, string][] = [];
  const seen = new Set<string>();
  const lines = text.split("\n");
  for (let n = 0; n < lines.length; n++) {
    const line = lines[n] as string;
    const trimmed = line.trim();
    if (trimmed === "" || trimmed.startsWith("#")) continue;
    // postmap joins a line that starts with a blank to the one before; poprelay's templates
    // never write one, so a site's static line that does is refused rather than guessed at.
    if (BLANK.test(line[0] as string)) {
      throw new CdbSourceError(`line ${n + 1}: starts with a blank (a continuation line)`);
    }
    const blank = trimmed.search(BLANK);
    if (blank < 0) throw new CdbSourceError(`line ${n + 1}: a key without a value`);
    const key = asciiLower(trimmed.slice(0, blank));
    const value = trimmed.slice(blank).trim();
    if (seen.has(key)) continue;
    seen.add(key);
    records.push([key, value]);
  }
  return records;
}

/** postmap's fold: ASCII letters only (it lower-cases with the C locale). */
function asciiLower(key: string): string {
  return /[A-Z]/.test(key) ? key.replace(/[A-Z]+/g, (s) => s.toLowerCase()) : key;
}

/** The whole cdb file for these records, in this order. Pure. */
export function cdbBytes(records: readonly (readonly [string, string])[]): Buffer {
  let size = TOC + 24 * records.length; // 8 bytes of lengths, 2 slots of 8 bytes, per record
  for (const [key, value] of records) size += Buffer.byteLength(key) + Buffer.byteLength(value);
  if (size > 0xffffffff) throw new CdbSourceError("the map is over cdb's 4 GiB");
  const out = Buffer.alloc(size);

  // Each table's records (hash, position) in the order they were added.
  const tables: Slot[][] = Array.from({ length: 256 }, () => []);
  let pos = TOC;
  for (const [key, value] of records) {
    const keyStart = pos + 8;
    const keyLength = out.write(key, keyStart, "utf8");
    const valueLength = out.write(value, keyStart + keyLength, "utf8");
    out.writeUInt32LE(keyLength, pos);
    out.writeUInt32LE(valueLength, pos + 4);
    const hash = cdbHash(out, keyStart, keyLength);
    tables[hash & 255]?.push({ hash, pos });
    pos = keyStart + keyLength + valueLength;
  }

  tables.forEach((table, t) => {
    const slots = table.length * 2;
    out.writeUInt32LE(pos, t * 8);
    out.writeUInt32LE(slots, t * 8 + 4);
    for (const record of table) {
      let slot = (record.hash >>> 8) % slots;
      // A free slot's record position is 0 (Buffer.alloc): no record lives inside the TOC.
      while (out.readUInt32LE(pos + slot * 8 + 4) !== 0) slot = (slot + 1) % slots;
      out.writeUInt32LE(record.hash, pos + slot * 8);
      out.writeUInt32LE(record.pos, pos + slot * 8 + 4);
    }
    pos += slots * 8;
  });
  return out;
}

/** h = (h * 33) ^ byte from 5381, over the key's bytes as written. */
function cdbHash(bytes: Buffer, start: number, length: number): number {
  let hash = 5381;
  for (let b = start; b < start + length; b++)
    hash = (Math.imul(hash, 33) ^ bytes.readUInt8(b)) >>> 0;
  return hash;
}

interface Slot {
  hash: number;
  /** The record's offset in the file. */
  pos: number;
}

/** Writes `path` (a new file in a private build directory) as postmap cdb:TEXT would. */
export async function writeCdb(text: string, path: string, mode: number): Promise<void> {
  const bytes = cdbBytes(postmapRecords(text));
  const handle = await open(path, "wx", mode);
  try {
    await handle.writeFile(bytes);
  } finally {
    await handle.close();
  }
}
