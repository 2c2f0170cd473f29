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
  /** Whole lines only: `from` starts one, `to` ends one (just after its newline, or the end). */
  from = 0,
  to = text.length,
): void {
  for (let start = from; start < to; ) {
    let end = text.indexOf(NEWLINE, start);
    if (end === -1) end = text.length;
    const line = start;
    start = end + 1;
    let first = line;
    while (first < end && isBlank(text[first])) first++;
    if (first === end || (first === end - 1 && text[first] === CR)) continue;
    if (text[first] === HASH) continue;
    // postmap joins a line that starts with a blank to the one before; poprelay's templates
    // never write one, so a site's static line that does is refused rather than guessed at.
    if (first !== line) {
      throw new CdbSourceError(
        `line ${lineNumber(text, line)}: starts with a blank (a continuation line)`,
      );
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
    if (value === valueEnd)
      throw new CdbSourceError(`line ${lineNumber(text, line)}: a key without a value`);
    add(first, keyEnd, value, valueEnd, upper);
  }
}

/** The number of the line that starts at `offset` (1 for the first). */
function lineNumber(text: Uint8Array, offset: number): number {
  return countLines(text, 0, offset) + 1;
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
 * One table's records as built: the file's bytes up to its hash tables, and per record its hash,
 * position and the start of its line in the text it came from. Kept from one build to the next
 * (see writeCdb), in buffers reused: a map of 100,000 entries is rebuilt on every grant, and
 * fresh buffers (7 MB) each time were garbage that stayed until V8's next full collection.
 */
class CdbRecords {
  out = Buffer.alloc(0);
  hashes = new Uint32Array(0);
  positions = new Uint32Array(0);
  lines = new Uint32Array(0);
  count = 0;
  /** A line's key was a repeat, so the line has no record: lines and records do not pair up. */
  dropped = false;
  /** Serial number of the text built (TextOrigin.serial), 0 for none. */
  serial = 0;

  /** Room for `size` bytes and `records` records. */
  fit(size: number, records: number): void {
    // An eighth more than asked, so that a growing map does not reallocate on every grant.
    if (this.out.length < size) this.out = Buffer.allocUnsafe(more(size));
    if (this.hashes.length < records) {
      this.hashes = new Uint32Array(more(records));
      this.positions = new Uint32Array(more(records));
      this.lines = new Uint32Array(more(records));
    }
  }
}

const more = (n: number) => n + (n >>> 3);

/** What one build works in and drops at its end: the key index, the order, one hash table. */
class CdbWork {
  order = new Uint32Array(0);
  slots = new Uint32Array(0);
  index = new Uint32Array(0);

  fit(records: number, indexSlots: number): void {
    if (this.order.length < records) {
      this.order = new Uint32Array(more(records));
      this.slots = new Uint32Array(4 * more(records));
    }
    if (this.index.length < indexSlots) this.index = new Uint32Array(indexSlots);
  }
}

/**
 * Builds a cdb in one buffer sized up front, with the records' hashes and positions in typed
 * arrays: no object per record. Keys and values are copied byte by byte (a dozen bytes each: a
 * loop costs less than the subarray and the native copy per record that it replaced, and it
 * folds and hashes the key on the way), and the lengths and slots are written through a
 * DataView, little-endian whatever the machine.
 */
class CdbBuilder {
  private readonly out: Buffer;
  private readonly view: DataView;
  private readonly records: CdbRecords;
  private readonly work: CdbWork;
  /** Record number + 1 by hash, for seen(); 0: free. */
  private readonly index: Uint32Array;
  private count = 0;
  private pos = TOC;

  /** At most `records` records of at most `bytes` bytes of keys and values together. */
  constructor(records: number, bytes: number, into = new CdbRecords(), work = new CdbWork()) {
    // 8 bytes of lengths and 2 slots of 8 bytes per record.
    const size = TOC + 24 * records + bytes;
    if (size > 0xffffffff) throw new CdbSourceError("the map is over cdb's 4 GiB");
    let slots = 16;
    while (slots < records * 2) slots *= 2;
    into.fit(size, records);
    work.fit(records, slots);
    // Every byte up to the end of the tables is written by add() and finish(): no clearing.
    this.out = into.out.subarray(0, size);
    this.view = new DataView(this.out.buffer, this.out.byteOffset, this.out.length);
    this.records = into;
    this.work = work;
    this.index = work.index.subarray(0, slots);
    this.index.fill(0);
    into.dropped = false;
  }

  /** Adds a record; a key added before keeps its first value (tinycdb's CDB_PUT_INSERT). */
  add(key: string, value: string): void {
    const bytes = Buffer.from(key + value, "utf8");
    const keyLength = Buffer.byteLength(key, "utf8");
    this.addBytes(bytes, 0, keyLength, keyLength, bytes.length, false);
  }

  /**
   * add() for a key and a value that are byte ranges of `source` (UTF-8), the key's ASCII
   * capitals folded when `fold`: copied in, no string made. The key starts its line.
   */
  addBytes(
    source: Uint8Array,
    keyStart: number,
    keyEnd: number,
    valueStart: number,
    valueEnd: number,
    fold: boolean,
  ): void {
    const { out, records } = this;
    const at = this.pos + 8;
    const keyLength = keyEnd - keyStart;
    let hash = 5381;
    for (let from = keyStart, to = at; from < keyEnd; from++, to++) {
      let code = source[from] as number;
      if (fold && code >= 0x41 && code <= 0x5a) code += 0x20;
      out[to] = code;
      hash = (Math.imul(hash, 33) ^ code) >>> 0;
    }
    if (this.seen(hash, at, keyLength)) {
      this.records.dropped = true;
      return;
    }
    const valueAt = at + keyLength;
    for (let from = valueStart, to = valueAt; from < valueEnd; from++, to++)
      out[to] = source[from] as number;
    const valueLength = valueEnd - valueStart;
    this.view.setUint32(this.pos, keyLength, true);
    this.view.setUint32(this.pos + 4, valueLength, true);
    records.hashes[this.count] = hash;
    records.positions[this.count] = this.pos;
    records.lines[this.count] = keyStart;
    this.count++;
    this.pos = valueAt + valueLength;
  }

  /**
   * Copies records `first` to `last - 1` of an earlier build, whose lines moved by `shift` bytes
   * in the text: their bytes in one piece, their hashes as they were. False, with nothing
   * added, when one of their keys is already in this table (it would have to be left out).
   */
  addBuilt(built: CdbRecords, first: number, last: number, shift: number): boolean {
    if (first === last) return true;
    const { records } = this;
    const from = built.positions[first] as number;
    const lastAt = built.positions[last - 1] as number;
    const builtView = new DataView(built.out.buffer, built.out.byteOffset, built.out.length);
    const to =
      lastAt + 8 + builtView.getUint32(lastAt, true) + builtView.getUint32(lastAt + 4, true);
    built.out.copy(this.out, this.pos, from, to);
    const move = this.pos - from;
    for (let r = first; r < last; r++) {
      const pos = (built.positions[r] as number) + move;
      const hash = built.hashes[r] as number;
      if (this.seen(hash, pos + 8, this.view.getUint32(pos, true))) return false;
      records.hashes[this.count] = hash;
      records.positions[this.count] = pos;
      records.lines[this.count] = (built.lines[r] as number) + shift;
      this.count++;
    }
    this.pos += to - from;
    return true;
  }

  /**
   * Whether a record with this key (written at `keyStart`) was added before; if not, remembers
   * it as the next record. An open-addressing set of record numbers by hash: no string kept per
   * key.
   */
  private seen(hash: number, keyStart: number, keyLength: number): boolean {
    const { index, out, records } = this;
    const mask = index.length - 1;
    let slot = hash & mask;
    for (let entry = index[slot] as number; entry !== 0; entry = index[slot] as number) {
      const other = entry - 1;
      if (records.hashes[other] === hash) {
        const at = (records.positions[other] as number) + 8;
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
    const { view, count } = this;
    const { hashes, positions } = this.records;
    const { order, slots: table } = this.work;
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
    this.records.count = count;
    return this.out.subarray(0, pos);
  }
}

/**
 * The cdb file postmap cdb:TEXT would write for the UTF-8 bytes `text`. Pure. The lines are
 * read as postmapRecords reads them, straight from the bytes into the builder: no string per
 * key or value.
 */
export function cdbFromText(text: Uint8Array): Buffer {
  return buildWhole(text, new CdbRecords(), new CdbWork());
}

function buildWhole(text: Uint8Array, into: CdbRecords, work: CdbWork): Buffer {
  const table = new CdbBuilder(countLines(text), text.length, into, work);
  eachRecord(text, (keyStart, keyEnd, valueStart, valueEnd, fold) =>
    table.addBytes(text, keyStart, keyEnd, valueStart, valueEnd, fold),
  );
  return table.finish();
}

/**
 * cdbFromText for a text made mostly of lines of the one `built` was made from (`made.reused`):
 * the records of the lines copied are copied, only the other lines are read. Undefined when
 * that cannot give postmap's bytes (a copied key is a repeat, which postmap leaves out).
 * `built` has a record for every line of its text that has a key.
 */
function buildFromBuilt(
  text: Uint8Array,
  made: TextOrigin,
  built: CdbRecords,
  into: CdbRecords,
  work: CdbWork,
): Buffer | undefined {
  const runs = made.reused?.runs ?? [];
  // Records: at most the ones copied and one per line read.
  let fresh = 0;
  let at = 0;
  for (let k = 0; k < runs.length; k += 3) {
    fresh += countLines(text, at, runs[k + 2] as number);
    at = (runs[k + 2] as number) + (runs[k + 1] as number) - (runs[k] as number);
  }
  fresh += countLines(text, at, text.length);
  const table = new CdbBuilder(built.count + fresh, text.length, into, work);
  const read = (from: number, to: number) =>
    eachRecord(
      text,
      (keyStart, keyEnd, valueStart, valueEnd, fold) =>
        table.addBytes(text, keyStart, keyEnd, valueStart, valueEnd, fold),
      from,
      to,
    );
  at = 0;
  for (let k = 0; k < runs.length; k += 3) {
    const [from, to, place] = [runs[k] as number, runs[k + 1] as number, runs[k + 2] as number];
    read(at, place);
    // The records whose lines are in [from, to) of the earlier text: lines are in order.
    const first = firstAtOrAfter(built.lines, built.count, from);
    const last = firstAtOrAfter(built.lines, built.count, to);
    if (!table.addBuilt(built, first, last, place - from)) return undefined;
    at = place + to - from;
  }
  read(at, text.length);
  return table.finish();
}

/** The first of `count` ascending `values` that is at least `value` (count when none). */
function firstAtOrAfter(values: Uint32Array, count: number, value: number): number {
  let low = 0;
  let high = count;
  while (low < high) {
    const mid = (low + high) >>> 1;
    if ((values[mid] as number) < value) low = mid + 1;
    else high = mid;
  }
  return low;
}

/**
 * Where a text came from, as MapTextMaker tells (src/maps/rerender.ts): its serial number and,
 * when lines were copied from an earlier text, that text's serial and the byte runs copied, as
 * triples (start in the earlier text, its end, start in this one).
 */
export interface TextOrigin {
  serial: number;
  reused?: { from: number; runs: readonly number[] };
}

/**
 * The last table built, the memory for the next, and their work arrays; `busy` while a build
 * uses them (two maps written at once: the second builds apart, from scratch).
 */
const memory = {
  built: new CdbRecords(),
  spare: new CdbRecords(),
  work: new CdbWork(),
  busy: false,
};

/**
 * Writes `path` (a new file in a private build directory) as postmap cdb:TEXT would. With
 * `made`, and the table built last from the text `made` copied its lines from, the records of
 * those lines are copied from that table.
 */
export async function writeCdb(
  text: Uint8Array,
  path: string,
  mode: number,
  made?: TextOrigin,
): Promise<void> {
  const own = !memory.busy;
  if (own) memory.busy = true;
  try {
    let bytes: Buffer | undefined;
    if (own) {
      const { built, spare, work } = memory;
      // Whatever happens below, `spare` is overwritten: it no longer holds a finished table.
      spare.serial = 0;
      // Every line of the earlier text has its record (no repeated key): they can be copied.
      if (made?.reused && built.serial !== 0 && built.serial === made.reused.from && !built.dropped)
        bytes = buildFromBuilt(text, made, built, spare, work);
      bytes ??= buildWhole(text, spare, work);
      spare.serial = made?.serial ?? 0;
      memory.built = spare;
      memory.spare = built;
    } else {
      bytes = cdbFromText(text);
    }
    const handle = await open(path, "wx", mode);
    try {
      await handle.writeFile(bytes);
    } finally {
      await handle.close();
    }
  } finally {
    if (own) memory.busy = false;
  }
}

/** Lines in text[from, to): newlines, and one more for a last line without one. */
function countLines(text: Uint8Array, from = 0, to = text.length): number {
  let count = 0;
  for (
    let at = text.indexOf(NEWLINE, from);
    at !== -1 && at < to;
    at = text.indexOf(NEWLINE, at + 1)
  )
    count++;
  return to > from && text[to - 1] !== NEWLINE ? count + 1 : count;
}
