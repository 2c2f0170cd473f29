/**
 * Interleavings of the file reader with rotations that lost lines (found by review, each
 * failing before its fix). Each test asserts the promise: every line written is delivered at
 * least once, across a restart from the saved state. The rotations happen within one tick,
 * or right before a chosen fs call of the reader: a reader stalled at that instant.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import {
  appendFileSync,
  copyFileSync,
  mkdirSync,
  renameSync,
  statSync,
  truncateSync,
  unlinkSync,
  utimesSync,
  writeFileSync,
} from "node:fs";
import { createRequire, syncBuiltinESMExports } from "node:module";
import { dirname, join } from "node:path";
import { describe, it, type TestContext } from "node:test";
import { setTimeout as delay } from "node:timers/promises";
import { memoryLogger } from "../src/log.js";
import { FileReader, type FileReaderOptions } from "../src/readers/file.js";
import type { EntrySink } from "../src/readers/types.js";
import { scratch } from "./helpers.js";

const require = createRequire(import.meta.url);
const fsp = require("node:fs/promises") as Record<string, (...args: unknown[]) => unknown>;

/**
 * Runs `action` synchronously just before the first call of fs/promises `name` whose first
 * argument is `path` (the reader "stalled" right before that fs operation). Undone by t.after.
 */
function before(t: TestContext, name: string, path: string, action: () => void): void {
  const original = fsp[name] as (...args: unknown[]) => unknown;
  let done = false;
  fsp[name] = (...args: unknown[]) => {
    if (!done && args[0] === path) {
      done = true;
      action();
    }
    return original(...args);
  };
  syncBuiltinESMExports();
  t.after(() => {
    fsp[name] = original;
    syncBuiltinESMExports();
  });
}

class Collector {
  readonly lines: string[] = [];
  readonly sink: EntrySink = async (entries) => {
    for (const e of entries) if (e.kind === "line") this.lines.push(e.text);
    return true; // persist every acknowledged batch at once
  };
}

async function until(condition: () => boolean, what: () => string, ms = 3000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what()}`);
    await delay(5);
  }
}

/** Waits until `run` has delivered `line`, lets it settle, then stops it (its position saved). */
async function stopAfter(run: { reader: FileReader; sink: Collector }, line: string) {
  await until(
    () => run.sink.lines.includes(line),
    () => JSON.stringify(run.sink.lines),
  );
  await delay(200);
  await run.reader.stop();
}

async function setup(t: TestContext, defaults: Partial<FileReaderOptions> = {}) {
  const dir = await scratch("poprelay-race-");
  const path = join(dir, "mail.log");
  const stateFile = join(dir, "state", "mail.log.json");
  const log = memoryLogger();
  const all = new Set<string>();
  const make = () => {
    const reader = new FileReader({ path, stateFile, log, statIntervalMs: 200, ...defaults });
    t.after(() => reader.stop());
    return reader;
  };
  const run = async () => {
    const sink = new Collector();
    const reader = make();
    await reader.start(sink.sink);
    return { reader, sink };
  };
  /** Delivered by any run so far. */
  const seen = (...runs: Collector[]) => {
    for (const r of runs) for (const l of r.lines) all.add(l);
    return all;
  };
  /** A restart from the saved state, then waiting until `last` arrives: did `lost` come? */
  const assertDelivered = async (runs: Collector[], wanted: string[], last: string) => {
    const { reader, sink } = await run();
    await until(
      () => sink.lines.includes(last),
      () => `${last} after restart: ${JSON.stringify(sink.lines)}`,
    );
    await delay(300);
    await reader.stop();
    const got = seen(...runs, sink);
    const missing = wanted.filter((l) => !got.has(l));
    assert.deepEqual(missing, [], `lost lines; log:\n${log.lines.join("\n")}`);
  };
  return { dir, path, stateFile, log, make, run, assertDelivered };
}

const hash = (line: string) => createHash("sha256").update(line).digest("hex");
const ino = (p: string) => String(statSync(p, { bigint: true }).ino);

describe("FileReader: rotations at the worst instant", () => {
  it("copytruncate before the first read of a file opened at byte 0", async (t) => {
    const { path, run, assertDelivered } = await setup(t, { statIntervalMs: 60_000 });
    writeFileSync(path, "");
    const one = await run();
    await delay(100); // caught up on the empty file: cursor at byte 0, no first-line hash
    // One tick (a stalled reader, or just a fast writer and logrotate):
    appendFileSync(path, "y1 only in the copy\n");
    copyFileSync(path, `${path}.1`);
    truncateSync(path, 0);
    appendFileSync(path, "y2 after the truncation\n");
    await until(
      () => one.sink.lines.includes("y2 after the truncation"),
      () => JSON.stringify(one.sink.lines),
    );
    await one.reader.stop();
    appendFileSync(path, "y3\n");
    await assertDelivered([one.sink], ["y1 only in the copy", "y2 after the truncation"], "y3");
  });

  it("rotation between the first position's save and the first open (no state file yet)", async (t) => {
    const { path, run, assertDelivered } = await setup(t);
    writeFileSync(path, "a1\na2\n");
    // The reader is slow right after saving {A, byte 0} (its fsync), and opens `path` only
    // after a rename rotation.
    before(t, "open", path, () => {
      renameSync(path, `${path}.1`);
      writeFileSync(path, "b1\n");
    });
    const one = await run();
    await stopAfter(one, "b1");
    appendFileSync(path, "b2\n");
    await assertDelivered([one.sink], ["a1", "a2", "b1"], "b2");
  });

  it("saved file gone (compressed), the next file last written over 1 s before the position", async (t) => {
    const { path, stateFile, assertDelivered } = await setup(t);
    // A was live; rotated to .1 while the reader lagged in it; C became live and got c1, c2;
    // the reader finished A some seconds later, saved {A, end}, and was killed before C.
    writeFileSync(path, "a1\na2\n");
    const inodeA = ino(path);
    const sizeA = statSync(path).size;
    renameSync(path, `${path}.1`);
    writeFileSync(path, "c1\nc2\n");
    const past = new Date(Date.now() - 5000);
    utimesSync(path, past, past);
    mkdirSync(dirname(stateFile), { recursive: true });
    writeFileSync(
      stateFile,
      `${JSON.stringify({ path, inode: inodeA, offset: sizeA, firstLineHash: hash("a1"), takenAtMs: Date.now() })}\n`,
    );
    // While stopped, logrotate (compress, delaycompress): .1 -> .2 -> .2.gz, log -> .1, create.
    renameSync(`${path}.1`, `${path}.2`);
    renameSync(path, `${path}.1`);
    writeFileSync(path, "d1\n");
    writeFileSync(`${path}.2.gz`, "compressed");
    unlinkSync(`${path}.2`);
    await assertDelivered([], ["c1", "c2", "d1"], "d1");
  });

  it("a copy (numbered) and its original renamed by dateext in one clock tick: the copy first", async (t) => {
    const { path, run, assertDelivered } = await setup(t, { statIntervalMs: 60_000 });
    writeFileSync(path, "x1 first\n");
    const one = await run();
    await until(
      () => one.sink.lines.includes("x1 first"),
      () => JSON.stringify(one.sink.lines),
    );
    // One tick: a line not read yet, copytruncate, a line in the truncated file, then a dateext
    // rotation of it; both rotated files last written in the same clock tick.
    appendFileSync(path, "x2 only in the copy\n");
    copyFileSync(path, `${path}.1`);
    truncateSync(path, 0);
    appendFileSync(path, "x3\n");
    renameSync(path, `${path}-20260001`);
    writeFileSync(path, "y1\n");
    const tick = new Date(Math.floor(Date.now() / 1000) * 1000);
    utimesSync(`${path}.1`, tick, tick);
    utimesSync(`${path}-20260001`, tick, tick);
    await stopAfter(one, "y1");
    appendFileSync(path, "y2\n");
    await assertDelivered([one.sink], ["x1 first", "x2 only in the copy", "x3", "y1"], "y2");
  });

  it("copytruncate regrown to exactly the offset, then a rename rotation", async (t) => {
    const { path, run, assertDelivered } = await setup(t, { statIntervalMs: 60_000 });
    writeFileSync(path, "aaaa\n");
    const one = await run();
    await until(
      () => one.sink.lines.includes("aaaa"),
      () => JSON.stringify(one.sink.lines),
    );
    appendFileSync(path, "bbbb\n"); // not read: only in the copy
    copyFileSync(path, `${path}.1`);
    truncateSync(path, 0);
    appendFileSync(path, "cccc\n"); // exactly the old offset
    renameSync(`${path}.1`, `${path}.2`);
    renameSync(path, `${path}.1`);
    writeFileSync(path, "d1\n");
    await stopAfter(one, "d1");
    appendFileSync(path, "d2\n");
    await assertDelivered([one.sink], ["aaaa", "bbbb", "cccc", "d1"], "d2");
  });

  it("stalled before stat(path): copytruncate, regrowth past the offset, rename", async (t) => {
    const { path, run, assertDelivered } = await setup(t, { statIntervalMs: 60_000 });
    writeFileSync(path, "first 1\n");
    const one = await run();
    await until(
      () => one.sink.lines.includes("first 1"),
      () => JSON.stringify(one.sink.lines),
    );
    // The next step reads to the end (nothing new), checks the size, then stat()s `path`:
    // the reader stalls right there while logrotate copytruncates, the file regrows, and a
    // rename rotation follows.
    before(t, "stat", path, () => {
      appendFileSync(path, "tail 2\n"); // only in the copy
      copyFileSync(path, `${path}.1`);
      truncateSync(path, 0);
      appendFileSync(path, "new 1\nnew 2\nnew 3\n");
      renameSync(`${path}.1`, `${path}.2`);
      renameSync(path, `${path}.1`);
      writeFileSync(path, "next 1\n");
    });
    const now = new Date();
    utimesSync(path, now, now); // a watch event (IN_ATTRIB): a step, with nothing new to read
    await stopAfter(one, "next 1");
    appendFileSync(path, "next 2\n");
    await assertDelivered(
      [one.sink],
      ["first 1", "tail 2", "new 1", "new 2", "new 3", "next 1"],
      "next 2",
    );
  });

  it("a finished file deleted, the next one last written in the same clock tick", async (t) => {
    const { path, run, assertDelivered } = await setup(t, { statIntervalMs: 60_000 });
    writeFileSync(path, "a1\n");
    const one = await run();
    await until(
      () => one.sink.lines.includes("a1"),
      () => JSON.stringify(one.sink.lines),
    );
    // One tick: rename rotation, c1 in the new file, then a second rotation with `rotate 1`
    // (the old .1 deleted) — A and C last written in the same clock tick.
    const tick = new Date(Math.floor(Date.now() / 1000) * 1000);
    utimesSync(path, tick, tick);
    renameSync(path, `${path}.1`);
    writeFileSync(path, "c1\n");
    utimesSync(path, tick, tick);
    unlinkSync(`${path}.1`);
    renameSync(path, `${path}.1`);
    writeFileSync(path, "d1\n");
    await stopAfter(one, "d1");
    appendFileSync(path, "d2\n");
    await assertDelivered([one.sink], ["a1", "c1", "d1"], "d2");
  });

  it("two rename rotations before the first read of a file: the newer file is no copy of it", async (t) => {
    const { path, run, assertDelivered } = await setup(t, { statIntervalMs: 60_000 });
    writeFileSync(path, "a1\na2\n");
    // Stalled between opening A at byte 0 and its first read: two rename rotations. B is new
    // in the listing, but A left `path`: B came after it, and was no copy to read first.
    before(t, "lstat", path, () => {
      renameSync(path, `${path}.1`);
      writeFileSync(path, "b1\n");
      renameSync(`${path}.1`, `${path}.2`);
      renameSync(path, `${path}.1`);
      writeFileSync(path, "c1\n");
    });
    const one = await run();
    await stopAfter(one, "c1");
    assert.deepEqual(one.sink.lines, ["a1", "a2", "b1", "c1"]);
    appendFileSync(path, "c2\n");
    await assertDelivered([one.sink], ["a1", "a2", "b1", "c1"], "c2");
  });

  it("a missing file created and copytruncated right before the reader lists the directory", async (t) => {
    const { path, run, assertDelivered } = await setup(t);
    const one = await run(); // path missing: waiting for it
    // The file appears, is copied and truncated, and written again, right before the reader
    // lists the directory on a later look (if it does; else a moment later). The copy is in
    // that listing: only the one from when the file went missing tells that it is new.
    let appeared = false;
    const appear = () => {
      if (appeared) return;
      appeared = true;
      writeFileSync(path, "m1 only in the copy\n");
      copyFileSync(path, `${path}.1`);
      truncateSync(path, 0);
      appendFileSync(path, "m2\n");
    };
    before(t, "readdir", dirname(path), appear);
    await delay(500); // more than two stat intervals
    appear();
    await stopAfter(one, "m2");
    appendFileSync(path, "m3\n");
    await assertDelivered([one.sink], ["m1 only in the copy", "m2"], "m3");
  });
  it("two copytruncates, then a rename, while stopped: the second copy comes before the original", async (t) => {
    const { path, run, assertDelivered } = await setup(t);
    writeFileSync(path, "x1\n");
    const one = await run();
    await until(
      () => one.sink.lines.includes("x1"),
      () => JSON.stringify(one.sink.lines),
    );
    await one.reader.stop(); // saved: this file, after x1
    appendFileSync(path, "x2\n");
    copyFileSync(path, `${path}.1`); // copy 1: x1 x2
    truncateSync(path, 0);
    appendFileSync(path, "y1\n");
    renameSync(`${path}.1`, `${path}.2`);
    copyFileSync(path, `${path}.1`); // copy 2: y1
    truncateSync(path, 0);
    appendFileSync(path, "z1\n");
    renameSync(`${path}.2`, `${path}.3`);
    renameSync(`${path}.1`, `${path}.2`);
    renameSync(path, `${path}.1`); // the original: z1
    writeFileSync(path, "w1\n");
    await assertDelivered([one.sink], ["x1", "x2", "y1", "z1"], "w1");
  });
});
