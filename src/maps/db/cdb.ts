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

/**
 * The (key, value) pairs postmap would read from a text map, in file order, keys folded; a
 * repeated key is listed again (the builder keeps its first value).
 */
export function postmapRecords(text: string): [key: string, value: string][] {
  const bytes = Buffer.from(text, "utf8");
  const records: [string, string][] = [];
  eachRecord(bytes, (keyStart, keyEnd, valueStart, valueEnd, fold) => {
    const key = bytes.toString("utf8", keyStart, keyEnd);
    records.push([
      // postmap folds with the C locale: ASCII letters only.
      fold ? key.replace(/[A-Z]+/g, (s) => s.toLowerCase()) : key,
      bytes.toString("utf8", valueStart, valueEnd),
    ]);
  });
  return records;
}

const NEWLINE = 0x0a;
const SPACE = 0x20;
const TAB = 0x09;
const CR = 0x0d;
const HASH = 0x23;
const isBlank = (code: number | undefined) => code === SPACE || code === TAB;

/**
 * Calls `add` for each line postmap would read from the UTF-8 bytes `text`, in file order: where
 * the key and the value are, and whether the key has ASCII capitals to fold. One pass over the
 * bytes, no regular expression and no string: the daemon does this for every grant, over every
 * line of the map. Every byte looked for is ASCII, which UTF-8 never uses inside a character,
 * so this reads the lines as postmap reads them, whatever else they hold.
 */
function eachRecord(
  text: Uint8Array,
  add: (
    keyStart: number,
    keyEnd: number,
    valueStart: number,
    valueEnd: number,
    fold: boolean,
  ) => void,
): void {
  let n = 0;
  for (let start = 0; start < text.length; ) {
    let end = text.indexOf(NEWLINE, start);
    if (end === -1) end = text.length;
    const line = start;
    start = end + 1;
    n++;
    let first = line;
    while (first < end && isBlank(text[first])) first++;
    if (first === end || (first === end - 1 && text[first] === CR)) continue;
    if (text[first] === HASH) continue;
    // postmap joins a line that starts with a blank to the one before; poprelay's templates
    // never write one, so a site's static line that does is refused rather than guessed at.
    if (first !== line) {
      throw new CdbSourceError(`line ${n}: starts with a blank (a continuation line)`);
    }
    let keyEnd = first;
    let upper = false;
    for (let code = text[keyEnd]; keyEnd < end && !isBlank(code); code = text[++keyEnd]) {
      if (code !== undefined && code >= 0x41 && code <= 0x5a) upper = true;
    }
    let value = keyEnd;
    while (value < end && isBlank(text[value])) value++;
    let valueEnd = end;
    while (valueEnd > value && (isBlank(text[valueEnd - 1]) || text[valueEnd - 1] === CR))
      valueEnd--;
    if (value === valueEnd) throw new CdbSourceError(`line ${n}: a key without a value`);
    add(first, keyEnd, value, valueEnd, upper);
  }
}

/** The whole cdb file for these records, in this order. Pure. */
export function cdbBytes(records: readonly (readonly [string, string])[]): Buffer {
  let bytes = 0;
  for (const [key, value] of records) bytes += Buffer.byteLength(key) + Buffer.byteLength(value);
  const table = new CdbBuilder(records.length, bytes);
  for (const [key, value] of records) table.add(key, value);
  return table.finish();
}

/**
 * Builds a cdb in one buffer sized up front, with the records' hashes and positions in typed
 * arrays: a map of 100,000 entries is rebuilt on every grant, and an object or two per record
 * would be garbage the daemon's heap grows for. Keys and values are copied byte by byte (a
 * dozen bytes each: a loop costs less than the subarray and the native copy per record that it
 * replaced, and it folds and hashes the key on the way), and the lengths and slots are written
 * through a DataView, little-endian whatever the machine.
 */
class CdbBuilder {
  private readonly out: Buffer;
  private readonly view: DataView;
  private readonly hashes: Uint32Array;
  private readonly positions: Uint32Array;
  /** Record number + 1 by hash, for seen(); 0: free. */
  private readonly index: Uint32Array;
  private readonly order: Uint32Array;
  /** One hash table's slots as they are filled: (hash, position) pairs. */
  private readonly slots: Uint32Array;
  private count = 0;
  private pos = TOC;

  /**
   * At most `records` records of at most `bytes` bytes of keys and values together; in the
   * memory `scratch` holds when given (its arrays are cleared where they must be).
   */
  constructor(records: number, bytes: number, scratch?: CdbScratch) {
    // 8 bytes of lengths and 2 slots of 8 bytes per record.
    const size = TOC + 24 * records + bytes;
    if (size > 0xffffffff) throw new CdbSourceError("the map is over cdb's 4 GiB");
    let slots = 16;
    while (slots < records * 2) slots *= 2;
    if (scratch) {
      scratch.fit(size, records, slots);
      // Every byte up to the end of the tables is written by add() and finish(): no clearing.
      this.out = scratch.out.subarray(0, size);
      this.hashes = scratch.hashes;
      this.positions = scratch.positions;
      this.order = scratch.order;
      this.slots = scratch.slots;
      this.index = scratch.index.subarray(0, slots);
      this.index.fill(0);
    } else {
      this.out = Buffer.alloc(size);
      this.hashes = new Uint32Array(records);
      this.positions = new Uint32Array(records);
      this.order = new Uint32Array(records);
      this.slots = new Uint32Array(4 * records);
      this.index = new Uint32Array(slots);
    }
    this.view = new DataView(this.out.buffer, this.out.byteOffset, this.out.length);
  }

  /** Adds a record; a key added before keeps its first value (tinycdb's CDB_PUT_INSERT). */
  add(key: string, value: string): void {
    const bytes = Buffer.from(key + value, "utf8");
    const keyLength = Buffer.byteLength(key, "utf8");
    this.addBytes(bytes, 0, keyLength, keyLength, bytes.length, false);
  }

  /**
   * add() for a key and a value that are byte ranges of `source` (UTF-8), the key's ASCII
   * capitals folded when `fold`: copied in, no string made.
   */
  addBytes(
    source: Uint8Array,
    keyStart: number,
    keyEnd: number,
    valueStart: number,
    valueEnd: number,
    fold: boolean,
  ): void {
    const { out } = this;
    const at = this.pos + 8;
    const keyLength = keyEnd - keyStart;
    let hash = 5381;
    for (let from = keyStart, to = at; from < keyEnd; from++, to++) {
      let code = source[from] as number;
      if (fold && code >= 0x41 && code <= 0x5a) code += 0x20;
      out[to] = code;
      hash = (Math.imul(hash, 33) ^ code) >>> 0;
    }
    if (this.seen(hash, at, keyLength)) return;
    const valueAt = at + keyLength;
    for (let from = valueStart, to = valueAt; from < valueEnd; from++, to++)
      out[to] = source[from] as number;
    const valueLength = valueEnd - valueStart;
    this.view.setUint32(this.pos, keyLength, true);
    this.view.setUint32(this.pos + 4, valueLength, true);
    this.hashes[this.count] = hash;
    this.positions[this.count] = this.pos;
    this.count++;
    this.pos = valueAt + valueLength;
  }

  /**
   * Whether a record with this key (written at `keyStart`) was added before; if not, remembers
   * it as the next record. An open-addressing set of record numbers by hash: no string kept per
   * key.
   */
  private seen(hash: number, keyStart: number, keyLength: number): boolean {
    const { index, out } = this;
    const mask = index.length - 1;
    let slot = hash & mask;
    for (let entry = index[slot] as number; entry !== 0; entry = index[slot] as number) {
      const other = entry - 1;
      if (this.hashes[other] === hash) {
        const at = (this.positions[other] as number) + 8;
        const length = this.view.getUint32(at - 8, true);
        if (
          length === keyLength &&
          out.compare(out, keyStart, keyStart + keyLength, at, at + length) === 0
        )
          return true;
      }
      slot = (slot + 1) & mask;
    }
    index[slot] = this.count + 1;
    return false;
  }

  /** The hash tables and the table of contents; the file's bytes. */
  finish(): Buffer {
    const { view, hashes, positions, count, order, slots: table } = this;
    // Records by table, each table's in the order they were added: a counting sort.
    const starts = new Uint32Array(257);
    for (let i = 0; i < count; i++) {
      const t = ((hashes[i] as number) & 255) + 1;
      starts[t] = (starts[t] as number) + 1;
    }
    for (let t = 0; t < 256; t++) starts[t + 1] = (starts[t + 1] as number) + (starts[t] as number);
    const next = starts.slice(0, 256);
    for (let i = 0; i < count; i++) {
      const t = (hashes[i] as number) & 255;
      const at = next[t] as number;
      order[at] = i;
      next[t] = at + 1;
    }

    let pos = this.pos;
    for (let t = 0; t < 256; t++) {
      const first = starts[t] as number;
      const last = starts[t + 1] as number;
      const slots = (last - first) * 2;
      view.setUint32(t * 8, pos, true);
      view.setUint32(t * 8 + 4, slots, true);
      table.fill(0, 0, slots * 2);
      for (let r = first; r < last; r++) {
        const i = order[r] as number;
        const hash = hashes[i] as number;
        let slot = (hash >>> 8) % slots;
        // A free slot's record position is 0: no record lives inside the TOC.
        while (table[slot * 2 + 1] !== 0) slot = (slot + 1) % slots;
        table[slot * 2] = hash;
        table[slot * 2 + 1] = positions[i] as number;
      }
      for (let k = 0; k < slots * 2; k++) view.setUint32(pos + k * 4, table[k] as number, true);
      pos += slots * 8;
    }
    return this.out.subarray(0, pos);
  }
}

/**
 * The cdb file postmap cdb:TEXT would write for the UTF-8 bytes `text`. Pure. The lines are
 * read as postmapRecords reads them, straight from the bytes into the builder: no string per
 * key or value.
 */
export function cdbFromText(text: Uint8Array): Buffer {
  return buildFromText(text);
}

function buildFromText(text: Uint8Array, scratch?: CdbScratch): Buffer {
  const table = new CdbBuilder(countLines(text), text.length, scratch);
  eachRecord(text, (keyStart, keyEnd, valueStart, valueEnd, fold) =>
    table.addBytes(text, keyStart, keyEnd, valueStart, valueEnd, fold),
  );
  return table.finish();
}

/**
 * The builder's memory, kept from one build to the next: a daemon rebuilds the whole table on
 * every grant (7 MB at 100,000 entries), and fresh buffers each time were garbage that stayed
 * until V8's next full collection.
 */
class CdbScratch {
  out = Buffer.alloc(0);
  hashes = new Uint32Array(0);
  positions = new Uint32Array(0);
  order = new Uint32Array(0);
  slots = new Uint32Array(0);
  index = new Uint32Array(0);
  busy = false;

  /** Room for a table of `size` bytes, `records` records and `slots` index slots. */
  fit(size: number, records: number, slots: number): void {
    // An eighth more than asked, so that a growing map does not reallocate on every grant.
    const more = (n: number) => n + (n >>> 3);
    if (this.out.length < size) this.out = Buffer.allocUnsafe(more(size));
    if (this.hashes.length < records) {
      this.hashes = new Uint32Array(more(records));
      this.positions = new Uint32Array(more(records));
      this.order = new Uint32Array(more(records));
      this.slots = new Uint32Array(4 * more(records));
    }
    if (this.index.length < slots) this.index = new Uint32Array(slots);
  }
}

const scratch = new CdbScratch();

/** Writes `path` (a new file in a private build directory) as postmap cdb:TEXT would. */
export async function writeCdb(text: Uint8Array, path: string, mode: number): Promise<void> {
  // Another build still writing its file from the scratch (two maps at once): build apart.
  const own = scratch.busy ? undefined : scratch;
  if (own) own.busy = true;
  try {
    const bytes = buildFromText(text, own);
    const handle = await open(path, "wx", mode);
    try {
      await handle.writeFile(bytes);
    } finally {
      await handle.close();
    }
  } finally {
    if (own) own.busy = false;
  }
}

function countLines(text: Uint8Array): number {
  let count = 1;
  for (let at = text.indexOf(NEWLINE); at !== -1; at = text.indexOf(NEWLINE, at + 1)) count++;
  return count;
}
