import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { appendFileSync, copyFileSync, truncateSync } from "node:fs";
import {
  appendFile,
  mkdir,
  readFile,
  rename,
  rm,
  rmdir,
  stat,
  symlink,
  truncate,
  unlink,
  utimes,
  writeFile,
} from "node:fs/promises";
import { dirname, join } from "node:path";
import { describe, it, type TestContext } from "node:test";
import { setTimeout as delay } from "node:timers/promises";
import { memoryLogger } from "../src/log.js";
import { FileReader, type FileReaderOptions } from "../src/readers/file.js";
import { loadPosition, openFound, rotatedSiblings } from "../src/readers/file-state.js";
import type { EntrySink } from "../src/readers/types.js";
import { ROOT, scratch } from "./helpers.js";

/** Records what the sink received, in order, and how it was called. */
class Collector {
  readonly lines: string[] = [];
  calls = 0;
  maxActive = 0;
  private active = 0;

  constructor(
    private readonly behaviour: (batch: string[]) => Promise<boolean> | boolean = () => false,
  ) {}

  readonly sink: EntrySink = async (entries) => {
    this.calls++;
    this.active++;
    this.maxActive = Math.max(this.maxActive, this.active);
    try {
      const texts = entries.map((entry) => {
        assert.equal(entry.kind, "line");
        return entry.kind === "line" ? entry.text : "";
      });
      for (const text of texts) this.lines.push(text);
      return await this.behaviour(texts);
    } finally {
      this.active--;
    }
  };
}

/** Waits, boundedly, until `condition` holds. */
async function until(
  condition: () => boolean | Promise<boolean>,
  what: () => string,
  timeoutMs = 3000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what()}`);
    await delay(2);
  }
}

const received = (sink: Collector, count: number, timeoutMs?: number) =>
  until(
    () => sink.lines.length >= count,
    () => `${count} lines, got ${JSON.stringify(sink.lines.slice(-20))} (${sink.lines.length})`,
    timeoutMs,
  );

async function setup(t: TestContext, defaults: Partial<FileReaderOptions> = {}) {
  const dir = await scratch("poprelay-file-");
  const path = join(dir, "mail.log");
  const stateFile = join(dir, "state", "mail.log.json");
  const log = memoryLogger();
  const make = (extra: Partial<FileReaderOptions> = {}) => {
    const reader = new FileReader({
      path,
      stateFile,
      log,
      statIntervalMs: 200,
      ...defaults,
      ...extra,
    });
    t.after(() => reader.stop());
    return reader;
  };
  const state = async () =>
    JSON.parse(await readFile(stateFile, "utf8")) as Record<string, unknown>;
  const logged = (pattern: RegExp) => log.lines.some((line) => pattern.test(line));
  return { dir, path, stateFile, log, make, state, logged };
}

describe("FileReader", () => {
  it("delivers appended lines promptly, woken by the directory watch alone", async (t) => {
    // The stat fallback is a minute away: only the watch can make this pass.
    const { path, make } = await setup(t, { statIntervalMs: 60_000 });
    await writeFile(path, "one\n");
    const sink = new Collector();
    const reader = make();
    await reader.start(sink.sink);
    await received(sink, 1);
    const expected = ["one"];
    for (let i = 0; i < 20; i++) {
      await appendFile(path, `line ${i}\n`);
      expected.push(`line ${i}`);
      await received(sink, expected.length);
    }
    assert.deepEqual(sink.lines, expected);
    assert.match(reader.status(), /^file .*mail\.log: following at byte \d+$/);
  });

  it("falls back to the stat timer when the watch is off", async (t) => {
    const { path, make } = await setup(t, { watch: false, statIntervalMs: 20 });
    await writeFile(path, "a\n");
    const sink = new Collector();
    await make().start(sink.sink);
    await received(sink, 1);
    await appendFile(path, "b\n");
    await received(sink, 2);
    assert.deepEqual(sink.lines, ["a", "b"]);
  });

  it("checks every stat interval a file it reaches through a symbolic link", async (t) => {
    // Writes to the link's target wake no watch on the link's directory: the stat timer must.
    const { dir, path, make } = await setup(t, { statIntervalMs: 20, watchedCheckMs: 60_000 });
    const target = join(dir, "elsewhere", "real.log");
    await mkdir(dirname(target));
    await writeFile(target, "a\n");
    await symlink(target, path);
    const sink = new Collector();
    await make().start(sink.sink);
    await received(sink, 1);
    await appendFile(target, "b\n");
    await received(sink, 2);
    assert.deepEqual(sink.lines, ["a", "b"]);
  });

  it("watches its directory again when the directory is replaced", async (t) => {
    // The old watch hears nothing after its directory is gone (and, while the old file is open,
    // not even of that): the stat timer finds the new directory, the watched check is far away.
    const { dir, make } = await setup(t, { statIntervalMs: 20, watchedCheckMs: 60_000 });
    const logs = join(dir, "logs");
    const path = join(logs, "mail.log");
    await mkdir(logs);
    await writeFile(path, "a\n");
    const sink = new Collector();
    await make({ path }).start(sink.sink);
    await received(sink, 1);
    await rm(logs, { recursive: true });
    await mkdir(logs);
    await writeFile(path, "b\n");
    await received(sink, 2);
    await appendFile(path, "c\n");
    await received(sink, 3);
    assert.deepEqual(sink.lines, ["a", "b", "c"]);
  });

  it("tells its owner when its status line changed, and only then", async (t) => {
    const { path, make } = await setup(t, { statIntervalMs: 60_000 });
    await writeFile(path, "a\n");
    const sink = new Collector();
    const reader = make();
    const seen: string[] = [];
    await reader.start(sink.sink, () => seen.push(reader.status()));
    await received(sink, 1);
    await appendFile(path, "bc\n");
    await received(sink, 2);
    await until(
      () => seen.at(-1) === `file ${path}: following at byte 5`,
      () => JSON.stringify(seen),
    );
    await reader.stop();
    assert.equal(seen.at(-1), `file ${path}: stopped`);
    for (let i = 1; i < seen.length; i++)
      assert.notEqual(seen[i], seen[i - 1], "a change each time");
  });

  it("keeps a multi-byte character whole when it is written in two appends", async (t) => {
    const { path, make } = await setup(t);
    await writeFile(path, "x\n");
    const sink = new Collector();
    const reader = make();
    await reader.start(sink.sink);
    await received(sink, 1);
    // "café" with the é (C3 A9) cut in the middle; the reader must have read the first part.
    await appendFile(path, Buffer.from([0x63, 0x61, 0x66, 0xc3]));
    await until(
      () => reader.status().endsWith("at byte 6"),
      () => `the reader at byte 6: ${reader.status()}`,
    );
    assert.deepEqual(sink.lines, ["x"]);
    await appendFile(path, Buffer.from([0xa9, 0x0a]));
    await received(sink, 2);
    assert.deepEqual(sink.lines, ["x", "café"]);
  });

  it("strips the CR of CRLF line ends", async (t) => {
    const { path, make } = await setup(t);
    await writeFile(path, "a\r\nb\r\n\r\nc\rd\r\n");
    const sink = new Collector();
    await make().start(sink.sink);
    await received(sink, 4);
    assert.deepEqual(sink.lines, ["a", "b", "", "c\rd"]);
  });

  it("holds a partial line until its newline arrives", async (t) => {
    const { path, make } = await setup(t);
    await writeFile(path, "first\npart");
    const sink = new Collector();
    const reader = make();
    await reader.start(sink.sink);
    await received(sink, 1);
    await until(
      () => reader.status().endsWith("at byte 10"),
      () => reader.status(),
    );
    assert.deepEqual(sink.lines, ["first"]);
    await appendFile(path, "ial\nnext\n");
    await received(sink, 3);
    assert.deepEqual(sink.lines, ["first", "partial", "next"]);
  });

  it("coalesces what arrives while the sink is busy into one batch, in order, once", async (t) => {
    const { path, make } = await setup(t);
    await writeFile(path, "");
    let release = () => {};
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    const sink = new Collector(async () => {
      await gate; // the first call holds the sink busy until every append has been read
      return false;
    });
    const reader = make();
    await reader.start(sink.sink);
    await appendFile(path, "first\n");
    await received(sink, 1);
    const expected = ["first"];
    let size = 6;
    for (let i = 0; i < 1000; i++) {
      const line = `line ${i} ${"x".repeat(i % 50)}`;
      expected.push(line);
      size += Buffer.byteLength(line) + 1;
      await appendFile(path, `${line}\n`);
    }
    await until(
      () => reader.status().endsWith(`at byte ${size}`),
      () => `all appends read: ${reader.status()}`,
      8000,
    );
    assert.equal(sink.calls, 1);
    release();
    await received(sink, expected.length);
    assert.deepEqual(sink.lines, expected);
    assert.equal(sink.calls, 2, "everything buffered meanwhile is one batch");
    assert.equal(sink.maxActive, 1, "never called again before the previous call settled");
  });

  it("delivers a file larger than many reads complete and in order", async (t) => {
    const { path, make } = await setup(t);
    const expected = Array.from({ length: 200_000 }, (_, i) => `line ${i}`);
    await writeFile(path, `${expected.join("\n")}\n`);
    const sink = new Collector();
    await make({ maxBatchLines: 1000 }).start(sink.sink);
    await received(sink, expected.length);
    assert.deepEqual(sink.lines, expected);
    assert.equal(sink.maxActive, 1);
    assert.ok(sink.calls > 1, `${sink.calls} calls`);
  });

  it("follows rename-and-create rotation, finishing the old file (appended after the rename) first", async (t) => {
    const { path, make, logged } = await setup(t);
    await writeFile(path, "a\nb\n");
    const sink = new Collector();
    const reader = make();
    await reader.start(sink.sink);
    await received(sink, 2);
    await rename(path, `${path}.1`);
    await appendFile(`${path}.1`, "c\n");
    await appendFile(`${path}.1`, "old tail without newline");
    await writeFile(path, "d\n");
    await received(sink, 5);
    await appendFile(path, "e\n");
    await received(sink, 6);
    assert.deepEqual(sink.lines, ["a", "b", "c", "old tail without newline", "d", "e"]);
    assert.ok(logged(/notice: .*renamed or removed/));
    assert.ok(logged(/finished the old file at byte \d+: reading the new/));
    assert.match(reader.status(), /following at byte 4$/);
  });

  it("keeps reading the old file while the new one stays empty", async (t) => {
    const { path, make } = await setup(t);
    await writeFile(path, "a\n");
    const sink = new Collector();
    const reader = make();
    await reader.start(sink.sink);
    await received(sink, 1);
    await rename(path, `${path}.1`);
    await writeFile(path, "");
    await until(
      () => reader.status().includes("(rotated)"),
      () => reader.status(),
    );
    // The writer has not been told to reopen yet.
    await appendFile(`${path}.1`, "late to the old file\n");
    await received(sink, 2);
    await appendFile(path, "first of the new file\n");
    await received(sink, 3);
    assert.deepEqual(sink.lines, ["a", "late to the old file", "first of the new file"]);
  });

  it("starts again from byte 0 after copytruncate", async (t) => {
    // Watch-driven: the size check catches it, not the timer's first-line check.
    const { path, make, logged } = await setup(t, { statIntervalMs: 60_000 });
    await writeFile(path, "aaaa\nbbbb\n");
    const sink = new Collector();
    await make().start(sink.sink);
    await received(sink, 2);
    const inode = (await stat(path)).ino;
    await truncate(path, 0);
    await appendFile(path, "c\n");
    assert.equal((await stat(path)).ino, inode);
    await received(sink, 3);
    await appendFile(path, "d\n");
    await received(sink, 4);
    assert.deepEqual(sink.lines, ["aaaa", "bbbb", "c", "d"]);
    assert.ok(logged(/notice: .*truncated.*from byte 0/), "a notice");
  });

  it("finishes the copy, then the file from byte 0, when copytruncate's file regrew past the offset unseen", async (t) => {
    // The timer's first-line check is a minute away: only the check made with each read helps.
    const { path, make, logged } = await setup(t, { statIntervalMs: 60_000 });
    await writeFile(path, "first 1\nfirst 2\n");
    const sink = new Collector();
    await make().start(sink.sink);
    await received(sink, 2);
    // In one tick, so that the reader cannot look in between (as a stalled daemon would not):
    // two lines not read yet, the copy, the truncation, and more than the old offset again.
    appendFileSync(path, "tail 3\ntail 4\n");
    copyFileSync(path, `${path}.1`);
    truncateSync(path, 0);
    appendFileSync(path, "new 1\nnew 2\nnew 3\nnew 4\nnew 5\n");
    await received(sink, 9);
    await appendFile(path, "new 6\n");
    await received(sink, 10);
    assert.deepEqual(sink.lines, [
      "first 1",
      "first 2",
      "tail 3",
      "tail 4",
      "new 1",
      "new 2",
      "new 3",
      "new 4",
      "new 5",
      "new 6",
    ]);
    assert.ok(logged(/notice: .*first line changed.*finishing its copy/), "a notice");
  });

  it("notices a file truncated and regrown past the offset by its first line (stat fallback)", async (t) => {
    const { path, make, logged } = await setup(t, { watch: false, statIntervalMs: 20 });
    await writeFile(path, "aaaa\nbbbb\n");
    const sink = new Collector();
    await make().start(sink.sink);
    await received(sink, 2);
    const inode = (await stat(path)).ino;
    // One write after the truncation, longer than the old content: same inode, larger size.
    await writeFile(path, "cccc\ndddddd\n");
    assert.equal((await stat(path)).ino, inode);
    await until(
      () => sink.lines.includes("dddddd"),
      () => `the rewritten file: ${JSON.stringify(sink.lines)}`,
    );
    await appendFile(path, "e\n");
    await until(
      () => sink.lines.at(-1) === "e",
      () => `e: ${JSON.stringify(sink.lines)}`,
    );
    // Without the first-line check "cccc" never comes; checked before each read only, a rewrite
    // landing between the check and the read would yield "d", read from the old offset.
    assert.deepEqual(sink.lines, ["aaaa", "bbbb", "cccc", "dddddd", "e"]);
    assert.ok(logged(/notice: .*(first line changed|truncated)/), "a notice");
  });

  it("waits after deletion and reads the re-created file from byte 0", async (t) => {
    const { path, make, logged } = await setup(t);
    await writeFile(path, "a\n");
    const sink = new Collector();
    const reader = make();
    await reader.start(sink.sink);
    await received(sink, 1);
    await unlink(path);
    await until(
      () => reader.status().includes(`waiting for ${path} to appear`),
      () => reader.status(),
    );
    await writeFile(path, "b\nc\n");
    await received(sink, 3);
    assert.deepEqual(sink.lines, ["a", "b", "c"]);
    assert.ok(logged(/notice: .*renamed or removed/));
  });

  it("waits for a file missing at start, and for a missing directory", async (t) => {
    const { dir, make } = await setup(t);
    const sink = new Collector();
    const reader = make();
    await reader.start(sink.sink);
    const path = join(dir, "mail.log");
    assert.equal(reader.status(), `waiting for ${path} to appear`);
    await writeFile(path, "a\nb\n");
    await received(sink, 2);
    assert.deepEqual(sink.lines, ["a", "b"]);

    const deep = join(dir, "later", "mail.log");
    const other = new Collector();
    const second = make({ path: deep, stateFile: join(dir, "other.json"), statIntervalMs: 20 });
    await second.start(other.sink);
    assert.equal(second.status(), `waiting for ${deep} to appear`);
    await mkdir(join(dir, "later"));
    await writeFile(deep, "x\n");
    await received(other, 1);
    // Once the directory exists, the watch takes over.
    await appendFile(deep, "y\n");
    await received(other, 2);
    assert.deepEqual(other.lines, ["x", "y"]);
  });

  it("logs a read error with the path, and retries on the stat timer", async (t) => {
    const { path, make, log } = await setup(t, { statIntervalMs: 20 });
    await mkdir(path); // not a regular file: cannot be followed
    const sink = new Collector();
    const reader = make();
    await reader.start(sink.sink);
    await until(
      () => reader.status().includes("not a regular file"),
      () => reader.status(),
    );
    assert.equal(reader.status(), `file ${path}: ${path} is not a regular file; retrying`);
    const errors = () => log.lines.filter((line) => line.includes("error:"));
    assert.equal(errors().length, 1, "reported once, not on every retry");
    assert.match(errors()[0] ?? "", new RegExp(`file ${path}: .*not a regular file.*retrying`));
    await rmdir(path);
    await writeFile(path, "a\n");
    await received(sink, 1);
    assert.deepEqual(sink.lines, ["a"]);
    // The problem is cleared once the step that delivered the line has ended.
    await until(
      () => /following at byte 2$/.test(reader.status()),
      () => reader.status(),
    );
    assert.ok(log.lines.some((line) => line.includes("reading again")));
  });

  it("resumes exactly at the saved offset after stop()", async (t) => {
    const { path, make, state } = await setup(t);
    await writeFile(path, "a\nb\npart");
    const first = new Collector();
    const one = make();
    await one.start(first.sink);
    await received(first, 2);
    await one.stop();
    assert.equal(one.status(), `file ${path}: stopped`);
    const saved = await state();
    assert.deepEqual(
      { path: saved.path, inode: saved.inode, offset: saved.offset },
      { path, inode: String((await stat(path, { bigint: true })).ino), offset: 4 },
    );
    assert.match(String(saved.firstLineHash), /^[0-9a-f]{64}$/);

    await appendFile(path, "ial\nc\n");
    const second = new Collector();
    await make().start(second.sink);
    await received(second, 2);
    await appendFile(path, "d\n");
    await received(second, 3);
    assert.deepEqual(second.lines, ["partial", "c", "d"]);
  });

  it("resumes across a rotation that happened while it was stopped", async (t) => {
    const { path, make } = await setup(t);
    await writeFile(path, "a\nb\n");
    const first = new Collector();
    const one = make();
    await one.start(first.sink);
    await received(first, 2);
    await one.stop();

    await appendFile(path, "c\n");
    await rename(path, `${path}.1`);
    // A compressed older generation and an unrelated file: neither is the saved inode's.
    await writeFile(`${path}.2.gz`, "not text");
    await writeFile(path, "d\ne\n");

    const second = new Collector();
    await make().start(second.sink);
    await received(second, 3);
    await appendFile(path, "f\n");
    await received(second, 4);
    assert.deepEqual(second.lines, ["c", "d", "e", "f"]);
  });

  it("reads the copy of a file saved at byte 0, though the position was written after the copy", async (t) => {
    const { path, stateFile, make } = await setup(t);
    await writeFile(path, "");
    const one = make();
    await one.start(new Collector().sink);
    await one.stop(); // saved: this file, from byte 0; nothing of it read
    await appendFile(path, "a\nb\n");
    copyFileSync(path, `${path}.1`);
    truncateSync(path, 0);
    await appendFile(path, "c\n");
    // The position taken before the copy was written only after it (a slow fsync): the state
    // file is newer than the copy, which still holds lines never read.
    const later = new Date(Date.now() + 2000);
    await utimes(stateFile, later, later);
    const second = new Collector();
    await make().start(second.sink);
    await received(second, 3);
    assert.deepEqual(second.lines, ["a", "b", "c"]);
  });

  it("reads from byte 0 when the file at the saved inode has another first line", async (t) => {
    const { path, make, logged } = await setup(t);
    await writeFile(path, "aaa\nbbb\n");
    const first = new Collector();
    const one = make();
    await one.start(first.sink);
    await received(first, 2);
    await one.stop();

    const inode = (await stat(path)).ino;
    await writeFile(path, "xxx\nyyy\n"); // same inode, same size, other content
    assert.equal((await stat(path)).ino, inode);
    const second = new Collector();
    await make().start(second.sink);
    await received(second, 2);
    await appendFile(path, "zzz\n");
    await received(second, 3);
    assert.deepEqual(second.lines, ["xxx", "yyy", "zzz"]);
    assert.ok(logged(/another first line: reading it from byte 0/));
  });

  it("reads from byte 0 when the file is shorter than the saved offset", async (t) => {
    const { path, make } = await setup(t);
    await writeFile(path, "aaa\nbbb\n");
    const first = new Collector();
    const one = make();
    await one.start(first.sink);
    await received(first, 2);
    await one.stop();

    await writeFile(path, "x\n");
    const second = new Collector();
    await make().start(second.sink);
    await received(second, 1);
    await appendFile(path, "y\n");
    await received(second, 2);
    assert.deepEqual(second.lines, ["x", "y"]);
  });

  it("offers a refused batch again until the sink takes it, never moving past it", async (t) => {
    const { path, make, logged, state } = await setup(t);
    await writeFile(path, "a\n");
    let failing = true;
    const first = new Collector((batch) => {
      if (failing && batch.includes("b")) throw new Error("spool is on fire");
      return true;
    });
    const one = make();
    await one.start(first.sink);
    await received(first, 1);
    await until(
      async () => (await state().catch((): Record<string, unknown> => ({}))).offset === 2,
      () => "the position after a, persisted at once for a sink that returned true",
    );
    await appendFile(path, "b\n");
    await until(
      () => one.status().includes("DEGRADED") && first.calls >= 3,
      () => one.status(),
    );
    assert.ok(logged(/error: .*spool is on fire/));
    assert.equal((await state()).offset, 2, "the position stays before the refused batch");
    await appendFile(path, "c\n");
    failing = false;
    await until(
      async () => (await state()).offset === 6,
      () => `the position after c, got ${one.status()}`,
      10_000,
    );
    assert.ok(!one.status().includes("DEGRADED"), one.status());
    assert.ok(logged(/the sink works again/));
    await one.stop();
    assert.deepEqual([...new Set(first.lines)], ["a", "b", "c"]);
  });

  it("stopped while the sink refuses, it keeps the position before the refused batch", async (t) => {
    const { path, make, state } = await setup(t);
    await writeFile(path, "a\n");
    const first = new Collector((batch) => {
      if (batch.includes("b")) throw new Error("spool is on fire");
      return true;
    });
    const one = make();
    await one.start(first.sink);
    await received(first, 1);
    await appendFile(path, "b\n");
    await until(
      () => one.status().includes("DEGRADED"),
      () => one.status(),
    );
    await appendFile(path, "c\n");
    await one.stop();
    assert.equal((await state()).offset, 2);

    const second = new Collector();
    await make().start(second.sink);
    await received(second, 2);
    assert.deepEqual(second.lines, ["b", "c"]);
  });

  it("persists lazily when the sink returns false, and always on stop()", async (t) => {
    const { path, make, stateFile } = await setup(t, { persistIntervalMs: 60_000 });
    await writeFile(path, "a\n");
    const sink = new Collector(() => false);
    const reader = make();
    await reader.start(sink.sink);
    await received(sink, 1);
    // Only the starting point (saved before the first read) may be on disk before stop().
    const early = await readFile(stateFile, "utf8").then(
      (text) => JSON.parse(text).offset as number,
      () => undefined,
    );
    assert.ok(early === undefined || early === 0, `saved ${early} before stop()`);
    await reader.stop();
    assert.equal(JSON.parse(await readFile(stateFile, "utf8")).offset, 2);
  });

  it("drops over-long lines whole, with a warning", async (t) => {
    const { path, make, logged } = await setup(t, { maxLineBytes: 8 });
    await writeFile(path, `short\n${"y".repeat(100)}\nalso ok\n`);
    const sink = new Collector();
    await make().start(sink.sink);
    await received(sink, 2);
    assert.deepEqual(sink.lines, ["short", "also ok"]);
    assert.ok(logged(/warning: .*dropped 1 line\(s\) longer than 8 bytes/));
  });

  it("leaves nothing behind that keeps the process alive after stop()", async () => {
    const dir = await scratch("poprelay-file-exit-");
    const module = join(ROOT, "build/src/readers/file.js");
    const logModule = join(ROOT, "build/src/log.js");
    const script = `
      import { writeFileSync } from "node:fs";
      import { FileReader } from ${JSON.stringify(module)};
      import { memoryLogger } from ${JSON.stringify(logModule)};
      const path = ${JSON.stringify(join(dir, "mail.log"))};
      writeFileSync(path, "a\\nb\\n");
      const reader = new FileReader({ path, stateFile: path + ".state", log: memoryLogger() });
      let got = 0;
      await reader.start(async (entries) => { got += entries.length; return false; });
      while (got < 2) await new Promise((r) => setTimeout(r, 2));
      await reader.stop();
      console.log("stopped", got);
    `;
    const child = spawn(process.execPath, ["--input-type=module", "-e", script], {
      stdio: ["ignore", "pipe", "inherit"],
    });
    let out = "";
    child.stdout.on("data", (chunk: Buffer) => {
      out += chunk.toString();
    });
    const exited = new Promise<number | null>((resolve) => child.on("exit", resolve));
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<"timeout">((resolve) => {
      timer = setTimeout(() => resolve("timeout"), 5000);
    });
    const result = await Promise.race([exited, timeout]);
    clearTimeout(timer);
    if (result === "timeout") child.kill();
    assert.equal(result, 0, "the process exits by itself");
    assert.equal(out.trim(), "stopped 2");
  });
});

describe("openFound", () => {
  it("opens the inode a stale listing named, under the name a rotation gave it meanwhile", async () => {
    const dir = await scratch("poprelay-file-found-");
    const log = join(dir, "mail.log");
    await writeFile(`${log}.2`, "oldest\n");
    await writeFile(`${log}.1`, "next\n");
    const listed = await rotatedSiblings(dir, "mail.log");
    const next = listed.find((s) => s.suffix === ".1");
    assert.ok(next, "mail.log.1 listed");
    // A rotation after the listing: .2 -> .3, .1 -> .2, and a new .1.
    await rename(`${log}.2`, `${log}.3`);
    await rename(`${log}.1`, `${log}.2`);
    await writeFile(`${log}.1`, "newer\n");
    const finds: string[] = [];
    const opened = await openFound(async () => {
      if (finds.push("find") === 1) return next; // the stale listing first
      return (await rotatedSiblings(dir, "mail.log")).find((s) => s.ino === next.ino);
    });
    assert.ok(opened, "found again");
    try {
      assert.equal(opened.found.path, `${log}.2`);
      assert.equal(opened.st.ino, next.ino);
      assert.equal(finds.length, 2, "listed again once");
      assert.equal(await opened.fh.readFile("utf8"), "next\n");
    } finally {
      await opened.fh.close();
    }
  });

  it("gives up with an error, never another file, when the names keep moving", async () => {
    const dir = await scratch("poprelay-file-found-");
    const path = join(dir, "mail.log.1");
    await writeFile(path, "a\n");
    // Every listing names a file that is another inode by the time it is opened.
    const other = (await stat(path, { bigint: true })).ino + 1n;
    await assert.rejects(
      openFound(async () => ({ path, ino: other })),
      /kept being renamed/,
    );
  });
});

describe("rotatedSiblings", () => {
  it("orders files last written in the same clock tick by birth, then by name", async () => {
    const dir = await scratch("poprelay-file-order-");
    const log = join(dir, "mail.log");
    // Born in this order; a dateext name sorts before a numbered one.
    await writeFile(`${log}.1`, "older\n");
    await delay(5);
    await writeFile(`${log}-20261206`, "newer\n");
    const tick = new Date("2026-12-06T12:00:00Z");
    await utimes(`${log}.1`, tick, tick);
    await utimes(`${log}-20261206`, tick, tick);
    const order = (await rotatedSiblings(dir, "mail.log")).map((s) => s.suffix);
    const born = (await stat(`${log}.1`, { bigint: true })).birthtimeNs > 0n;
    assert.deepEqual(order, born ? [".1", "-20261206"] : ["-20261206", ".1"]);
  });

  it("orders a copytruncate copy before the file it copied, born earlier, in the same tick", async () => {
    const dir = await scratch("poprelay-file-order-");
    const log = join(dir, "mail.log");
    // The live file (born first) was copied to .1, truncated, written, then rotated by rename:
    // the copy is .2 now, and holds the older lines.
    await writeFile(`${log}.1`, "after the copy\n");
    await delay(5);
    await writeFile(`${log}.2`, "before the copy\n");
    const tick = new Date("2026-12-06T12:00:00Z");
    await utimes(`${log}.1`, tick, tick);
    await utimes(`${log}.2`, tick, tick);
    const order = (await rotatedSiblings(dir, "mail.log")).map((s) => s.suffix);
    assert.deepEqual(order, [".2", ".1"]);
  });
});

describe("loadPosition", () => {
  const position = { path: "/var/log/mail.log", inode: "12", offset: 40, firstLineHash: "ab" };
  const load = async (content: unknown) => {
    const file = join(await scratch("poprelay-file-position-"), "p.json");
    await writeFile(file, JSON.stringify(content));
    return loadPosition(file);
  };

  it("reads a position with the time it was taken, and one saved before that existed", async () => {
    assert.deepEqual(await load({ ...position, takenAtMs: 1_765_000_000_000 }), {
      ...position,
      takenAtMs: 1_765_000_000_000,
    });
    assert.deepEqual(await load(position), position);
  });

  it("refuses a time that is not a whole number of milliseconds", async () => {
    for (const takenAtMs of ["1765000000000", -1, 1.5, null])
      assert.ok((await load({ ...position, takenAtMs })) instanceof Error, String(takenAtMs));
  });
});
