/**
 * Byte → line splitting shared by the readers (a log file, journalctl's stdout).
 *
 * Splits on the byte 0x0A and decodes each complete line as UTF-8 only once it is whole, so a
 * multi-byte character cut in two by a read boundary is never broken. Invalid UTF-8 becomes
 * U+FFFD. One trailing `\r` is stripped (CRLF logs); a `\r` elsewhere is kept.
 */

const NEWLINE = 0x0a;
const CARRIAGE_RETURN = 0x0d;

/** Default cap on one line's length: longer lines are dropped whole, never cut. */
export const DEFAULT_MAX_LINE_BYTES = 1024 * 1024;

export interface LineSplitterOptions {
  /**
   * Longest line kept, in bytes, without its newline. A longer line is dropped whole (and
   * counted in `dropped`): log text is attacker-controlled, and a line cut short could match
   * what the full line does not. Memory held for a partial line never exceeds this.
   */
  maxLineBytes?: number;
}

/** Decodes `bytes[start, end)` as UTF-8, without one trailing `\r`. */
export function decodeLine(bytes: Uint8Array, start = 0, end = bytes.length): string {
  const stop = end > start && bytes[end - 1] === CARRIAGE_RETURN ? end - 1 : end;
  return asBuffer(bytes).toString("utf8", start, stop);
}

function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
}

/**
 * Incremental splitter: feed it chunks in order with `push`, get back the lines they complete.
 * The bytes after the last newline are held (copied: the caller may reuse its buffer) until a
 * later chunk completes them, or `flush` gives them up as a last line.
 */
export class LineSplitter {
  readonly maxLineBytes: number;
  /** Lines dropped because they were longer than `maxLineBytes`. */
  dropped = 0;
  private held: Buffer[] = [];
  private heldBytes = 0;
  /** Bytes after the last newline, whether held or being skipped. */
  private pending = 0;
  /** The partial line is already too long: skip to the next newline. */
  private skipping = false;

  constructor(options: LineSplitterOptions = {}) {
    this.maxLineBytes = options.maxLineBytes ?? DEFAULT_MAX_LINE_BYTES;
  }

  /**
   * Bytes after the last newline seen (a partial line). The offset just after the last
   * complete line is therefore `bytes pushed - pendingBytes`.
   */
  get pendingBytes(): number {
    return this.pending;
  }

  /** Splits `chunk` and appends the lines it completes to `out` (a new array by default). */
  push(chunk: Uint8Array, out: string[] = []): string[] {
    const bytes = asBuffer(chunk);
    const length = bytes.length;
    let start = 0;
    let newline = bytes.indexOf(NEWLINE, 0);
    if (newline >= 0 && this.pending > 0) {
      this.completeHeld(bytes, newline, out);
      start = newline + 1;
      newline = bytes.indexOf(NEWLINE, start);
    }
    while (newline >= 0) {
      if (newline - start > this.maxLineBytes) this.dropped++;
      else out.push(decodeLine(bytes, start, newline));
      start = newline + 1;
      newline = bytes.indexOf(NEWLINE, start);
    }
    if (start < length) this.hold(bytes, start, length);
    return out;
  }

  /**
   * Gives up the partial line as a last line (the file it came from has been rotated away),
   * or `undefined` when there is none. The splitter is then empty.
   */
  flush(): string | undefined {
    if (this.pending === 0) return undefined;
    const skipped = this.skipping;
    const line = skipped ? undefined : decodeLine(Buffer.concat(this.held, this.heldBytes));
    if (skipped) this.dropped++;
    this.reset();
    return line;
  }

  /** Forgets the partial line (the input starts over, e.g. a truncated file). */
  reset(): void {
    this.held = [];
    this.heldBytes = 0;
    this.pending = 0;
    this.skipping = false;
  }

  private completeHeld(bytes: Buffer, newline: number, out: string[]): void {
    const total = this.pending + newline;
    if (this.skipping || total > this.maxLineBytes) {
      this.dropped++;
    } else {
      this.held.push(bytes.subarray(0, newline));
      out.push(decodeLine(Buffer.concat(this.held, total)));
    }
    this.reset();
  }

  private hold(bytes: Buffer, start: number, end: number): void {
    this.pending += end - start;
    if (this.skipping) return;
    if (this.pending > this.maxLineBytes) {
      this.skipping = true;
      this.held = [];
      this.heldBytes = 0;
      return;
    }
    // A copy: the caller may reuse its read buffer.
    this.held.push(Buffer.from(bytes.subarray(start, end)));
    this.heldBytes += end - start;
  }
}
