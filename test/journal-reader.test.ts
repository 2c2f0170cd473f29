import assert from "node:assert/strict";
import { chmod, mkdir, readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { memoryLogger } from "../src/log.js";
import {
  formatDuration,
  JournalReader,
  type JournalReaderOptions,
  journalctlArguments,
  validateMatches,
} from "../src/readers/journal.js";
import type { EntrySink, LogEntry } from "../src/readers/types.js";
import { scratch } from "./helpers.js";
import {
  type EntrySpec,
  ensureJournald,
  journalEntry,
  journalRemoteSkipReason,
  loggerLine,
  readJournal,
  systemdCat,
  writeJournal,
} from "./support/journald.js";

/** What the dovecot profile asks for: the unit, or Dovecot's log process run by root. */
const MATCHES = ["_SYSTEMD_UNIT=dovecot.service", "+", "_EXE=/usr/lib/dovecot/log", "_UID=0"];
const MINUTE = 60_000;

const readers: JournalReader[] = [];
afterEach(async () => {
  await Promise.all(readers.splice(0).map((r) => r.stop()));
});

function newReader(options: Partial<JournalReaderOptions> & { stateFile: string }) {
  const log = memoryLogger();
  const reader = new JournalReader({ matches: MATCHES, firstStartSince: 1800, log, ...options });
  readers.push(reader);
  return { reader, log };
}

/** A sink that records every batch; `answer` says what each batch resolves to (or throws). */
function recorder(answer: (batch: LogEntry[]) => boolean = () => false) {
  const batches: LogEntry[][] = [];
  const sink: EntrySink = async (batch) => {
    batches.push(batch);
    return answer(batch);
  };
  const entries = () => batches.flat();
  const messages = () =>
    entries().map((e) => (e.kind === "journal" ? e.fields.MESSAGE : `line: ${e.text}`));
  const has = (message: string) => messages().includes(message);
  return { sink, batches, entries, messages, has };
}

async function until(what: string, done: () => boolean | Promise<boolean>, timeoutMs = 8000) {
  const deadline = Date.now() + timeoutMs;
  while (!(await done())) {
    if (Date.now() > deadline) throw new Error(`waited ${timeoutMs} ms for ${what}`);
    await sleep(10);
  }
}

/** The commands of this process's live child processes, from /proc. */
async function children(): Promise<string[]> {
  const found: string[] = [];
  for (const pid of await readdir("/proc")) {
    if (!/^\d+$/.test(pid)) continue;
    const stat = await readFile(`/proc/${pid}/stat`, "utf8").catch(() => "");
    // pid (comm) state ppid ...
    const match = /^\d+ \((.*)\) (\S) (\d+) /.exec(stat);
    if (match && Number(match[3]) === process.pid && match[2] !== "Z") found.push(match[1] ?? "");
  }
  return found;
}

async function place() {
  const dir = await scratch("poprelay-journal-");
  const journal = join(dir, "journal");
  await mkdir(journal);
  return { dir, journal, stateFile: join(dir, "state", "journal.cursor") };
}

const savedCursor = (stateFile: string) =>
  readFile(stateFile, "utf8").then(
    (text) => text.trim(),
    () => undefined,
  );

/** The cursors of a journal directory's entries, by MESSAGE. */
async function cursors(journal: string): Promise<Map<string, string>> {
  const map = new Map<string, string>();
  for (const fields of await readJournal(journal)) {
    map.set(String(fields.MESSAGE), String(fields.__CURSOR));
  }
  return map;
}

/** Dovecot logins, one second apart, the first `ago` ms before now. */
function logins(names: string[], ago: number, spec: Partial<EntrySpec> = {}) {
  const start = Date.now() - ago;
  return names.map((message, i) =>
    journalEntry({ unit: "dovecot.service", ...spec, time: start + i * 1000, message }),
  );
}

describe("journalctl arguments and matches", () => {
  it("catch-up without --follow, then --follow (--merge only for a directory), --lines=all always", () => {
    assert.deepEqual(
      journalctlArguments({ matches: MATCHES, position: { since: 1700000000 }, follow: false }),
      [
        "--output=json",
        "--all",
        "--no-pager",
        "--lines=all",
        "--since=@1700000000",
        "--",
        ...MATCHES,
      ],
    );
    assert.deepEqual(
      journalctlArguments({
        matches: ["_UID=0"],
        directory: "/d",
        position: { cursor: "s=1;i=2" },
        follow: true,
      }),
      [
        "--output=json",
        "--all",
        "--no-pager",
        "--lines=all",
        "--directory=/d",
        "--follow",
        "--merge",
        "--cursor=s=1;i=2",
        "--",
        "_UID=0",
      ],
    );
    assert.ok(
      !journalctlArguments({ matches: [], position: { since: 1 }, follow: true }).includes(
        "--merge",
      ),
      "never --merge on the system journal: it would add remote and container journals",
    );
  });

  it("accepts FIELD=value and + between them, nothing journalctl could read as an option", () => {
    validateMatches(MATCHES);
    validateMatches([]);
    validateMatches(["MESSAGE=", "_A=-x"]);
    for (const bad of [
      ["--directory=/tmp"],
      ["-n"],
      ["lower=x"],
      ["/usr/sbin/dovecot"],
      ["=x"],
      ["+"],
      ["+", "_UID=0"],
      ["_UID=0", "+"],
      ["_UID=0", "+", "+", "_UID=1"],
      ["_UID=0\0"],
    ]) {
      assert.throws(() => validateMatches(bad), /journal match/, JSON.stringify(bad));
      assert.throws(() => newReader({ stateFile: "/nonexistent", matches: bad }), /journal match/);
    }
  });

  it("formats durations for the status line", () => {
    assert.deepEqual([500, 1000, 4000, 9960, 30_000, 200_000, 9_000_000].map(formatDuration), [
      "0.5 s",
      "1 s",
      "4 s",
      "10 s",
      "30 s",
      "3 min",
      "3 h",
    ]);
  });
});

describe("journal reader on journal directories (systemd-journal-remote)", {
  skip: await journalRemoteSkipReason(),
}, () => {
  it("first start: entries since firstStartSince only, filtered by journalctl on trusted fields", async () => {
    const { journal, stateFile } = await place();
    const now = Date.now();
    await writeJournal(journal, [
      journalEntry({ time: now - 120 * MINUTE, unit: "dovecot.service", message: "old-1" }),
      journalEntry({ time: now - 31 * MINUTE, unit: "dovecot.service", message: "old-2" }),
      journalEntry({ time: now - 20 * MINUTE, unit: "dovecot.service", message: "new-1" }),
      journalEntry({ time: now - 19 * MINUTE, unit: "other.service", message: "other-unit" }),
      journalEntry({ time: now - 18 * MINUTE, exe: "/usr/lib/dovecot/log", message: "log-root" }),
      journalEntry({
        time: now - 17 * MINUTE,
        exe: "/usr/lib/dovecot/log",
        uid: "1000",
        message: "log-uid-1000",
      }),
      // `logger -t dovecot` by a local user: right identifier, wrong trusted fields.
      journalEntry({
        time: now - 16 * MINUTE,
        unit: "session-3.scope",
        exe: "/usr/bin/logger",
        uid: "1000",
        message: "forged",
      }),
      journalEntry({ time: now - 10_000, unit: "dovecot.service", message: "new-2" }),
    ]);
    const { reader, log } = newReader({ directory: journal, stateFile });
    const sink = recorder();
    assert.equal(reader.status(), "journal: not started");
    const seen: string[] = [];
    await reader.start(sink.sink, () => seen.push(reader.status()));
    await until("new-2", () => sink.has("new-2"));
    assert.deepEqual(sink.messages(), ["new-1", "log-root", "new-2"]);
    const first = sink.entries()[0];
    assert.equal(first?.kind, "journal");
    if (first?.kind === "journal") {
      assert.equal(first.fields._SYSTEMD_UNIT, "dovecot.service");
      assert.equal(typeof first.fields.__CURSOR, "string");
      assert.equal(
        first.fields.__REALTIME_TIMESTAMP,
        String((now - 20 * MINUTE) * 1000),
        "the time the server logged it",
      );
    }
    await until("following, cursor saved", () =>
      /^journal: following \(cursor saved at \d{4}-\d\d-\d\dT[\d:.]+Z\)$/.test(reader.status()),
    );
    assert.deepEqual(await children(), ["journalctl"]);
    // Its owner heard of each change (the STATUS= line follows it without polling).
    assert.equal(seen.at(-1), reader.status());
    await reader.stop();
    assert.equal(reader.status(), "journal: stopped");
    assert.equal(seen.at(-1), "journal: stopped");
    assert.deepEqual(await children(), [], "stop() leaves no journalctl behind");
    assert.equal(await savedCursor(stateFile), (await cursors(journal)).get("new-2"));
    assert.match(log.lines.join(""), /first start: reading in .* \(1800 s back\) on/);
  });

  it("resumes after the saved cursor: every entry exactly once across restarts and appends", async () => {
    const { journal, stateFile } = await place();
    const now = Date.now();
    await writeJournal(journal, logins(["a1", "a2", "a3"], 10 * MINUTE));
    const one = recorder();
    const first = newReader({ directory: journal, stateFile }).reader;
    await first.start(one.sink);
    await until("a3", () => one.has("a3"));
    await first.stop();
    assert.deepEqual(one.messages(), ["a1", "a2", "a3"]);
    assert.equal(await savedCursor(stateFile), (await cursors(journal)).get("a3"));

    // Logged while no reader ran: another journal file in the directory.
    await writeJournal(journal, [
      journalEntry({ time: now - 5 * MINUTE, unit: "dovecot.service", message: "a4" }),
      journalEntry({ time: now - 4 * MINUTE, unit: "dovecot.service", message: "a5" }),
    ]);
    const two = recorder();
    const second = newReader({ directory: journal, stateFile }).reader;
    await second.start(two.sink);
    await until("a5", () => two.has("a5"));
    await until("following", () => second.status().startsWith("journal: following"));
    // Logged while it follows.
    await writeJournal(journal, logins(["a6"], 3 * MINUTE));
    await until("a6", () => two.has("a6"));
    await second.stop();
    assert.deepEqual(two.messages(), ["a4", "a5", "a6"]);

    await writeJournal(journal, logins(["a7"], 2 * MINUTE));
    const three = recorder();
    const third = newReader({ directory: journal, stateFile }).reader;
    await third.start(three.sink);
    await until("a7", () => three.has("a7"));
    await third.stop();
    assert.deepEqual(three.messages(), ["a7"]);
  });

  it("resuming under --follow: nothing at or before the cursor again, nothing after it skipped", async () => {
    // 40 entries, more than journalctl -f's default 10; two boots, the cursor in the first
    // (--follow alone would show only the last boot); e5 does not match (with --after-cursor,
    // journalctl 252 would then skip e6, systemd#30288).
    const { journal } = await place();
    const start = Date.now() - 20 * MINUTE;
    const all = Array.from({ length: 40 }, (_, i) => i + 1);
    await writeJournal(
      journal,
      all.map((n) =>
        journalEntry({
          time: start + n * 1000,
          message: `e${n}`,
          unit: n === 5 ? "other.service" : "dovecot.service",
          bootId: n <= 20 ? "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa1" : "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb2",
        }),
      ),
    );
    const byMessage = await cursors(journal);
    for (const after of [5, 6]) {
      const { dir } = await place();
      const stateFile = join(dir, "cursor");
      await writeFile(stateFile, `${byMessage.get(`e${after}`)}\n`);
      const sink = recorder();
      const reader = newReader({ directory: journal, stateFile }).reader;
      await reader.start(sink.sink);
      await until("e40", () => sink.has("e40"));
      await reader.stop();
      assert.deepEqual(
        sink.messages(),
        all.filter((n) => n > after).map((n) => `e${n}`),
        `after e${after}`,
      );
      assert.equal(await savedCursor(stateFile), byMessage.get("e40"));
    }
  });

  it("saves the cursor at once when the sink changed state, lazily otherwise, and on stop", async () => {
    const { journal, stateFile } = await place();
    await writeJournal(journal, logins(["s1", "s2"], 10 * MINUTE));
    let durable = false;
    const sink = recorder(() => durable);
    const reader = newReader({ directory: journal, stateFile, saveIntervalMs: 60_000 }).reader;
    await reader.start(sink.sink);
    const saved = async (message: string) =>
      (await savedCursor(stateFile)) === (await cursors(journal)).get(message);
    // The first lazy save is not held back; the next one would wait a minute.
    await until("s2 saved", () => saved("s2"));
    await until("following", () => reader.status().startsWith("journal: following"));
    await writeJournal(journal, logins(["s3"], 5 * MINUTE));
    await until("s3", () => sink.has("s3"));
    await sleep(300);
    assert.ok(await saved("s2"), "not yet saved: the sink changed nothing durable");
    durable = true;
    await writeJournal(journal, logins(["s4"], 4 * MINUTE));
    await until("s4 saved at once", () => saved("s4"), 3000);
    durable = false;
    await writeJournal(journal, logins(["s5"], 3 * MINUTE));
    await until("s5", () => sink.has("s5"));
    await sleep(100);
    assert.ok(await saved("s4"));
    await reader.stop();
    assert.ok(await saved("s5"), "saved on stop");
  });

  it("coalesces what is read while a batch is in flight, and pauses journalctl past maxBatch", async () => {
    const { journal, stateFile } = await place();
    const names = Array.from({ length: 2000 }, (_, i) => `b${i + 1}`);
    await writeJournal(
      journal,
      names.map((message, i) =>
        journalEntry({ time: Date.now() - 10 * MINUTE + i, unit: "dovecot.service", message }),
      ),
    );
    let release: () => void = () => undefined;
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    const batches: LogEntry[][] = [];
    const sink: EntrySink = async (batch) => {
      batches.push(batch);
      if (batches.length === 1) await gate;
      return false;
    };
    const reader = newReader({ directory: journal, stateFile, maxBatch: 100 }).reader;
    await reader.start(sink);
    await until("the first batch", () => batches.length === 1);
    // journalctl's output meanwhile: read up to maxBatch entries (whole pipe reads), then held.
    await sleep(300);
    assert.equal(batches.length, 1, "nothing delivered while a batch is in flight");
    release();
    await until("b2000", () => batches.flat().length === 2000);
    await reader.stop();
    const second = batches[1]?.length ?? 0;
    assert.ok(second >= 100, `the second batch holds all that was read meanwhile: ${second}`);
    assert.ok(second < 400, `reading paused at maxBatch (plus the last read): ${second}`);
    assert.deepEqual(
      batches.flat().map((e) => (e.kind === "journal" ? e.fields.MESSAGE : "")),
      names,
    );
  });

  it("a refused batch is offered again; the cursor stays before it; stopped meanwhile, the next reader redelivers", async () => {
    const { journal, stateFile } = await place();
    await writeJournal(journal, logins(["d1", "d2", "d3"], 10 * MINUTE));
    let failing = true;
    const sink = recorder((batch) => {
      if (failing && batch.some((e) => e.kind === "journal" && e.fields.MESSAGE === "d4"))
        throw new Error("spool is on fire");
      return true;
    });
    const { reader, log } = newReader({ directory: journal, stateFile });
    await reader.start(sink.sink);
    await until("d3", () => sink.has("d3"));
    await until("following", () => reader.status().startsWith("journal: following"));
    await writeJournal(journal, logins(["d4", "d5"], 5 * MINUTE));
    await until("the failure", () => reader.status().includes("sink failed"));
    assert.equal(
      reader.status(),
      "journal: DEGRADED: the sink failed (spool is on fire), retrying",
    );
    assert.match(
      log.lines.join(""),
      /the sink failed: spool is on fire; offering the entries again/,
    );
    await writeJournal(journal, logins(["d6"], 4 * MINUTE));
    await until("two offers", () => sink.batches.filter((b) => b.length > 0).length >= 3);
    assert.equal(await savedCursor(stateFile), (await cursors(journal)).get("d3"));
    await reader.stop();
    assert.equal(await savedCursor(stateFile), (await cursors(journal)).get("d3"));

    const again = recorder();
    const next = newReader({ directory: journal, stateFile }).reader;
    await next.start(again.sink);
    await until("d6", () => again.has("d6"));
    assert.deepEqual(again.messages(), ["d4", "d5", "d6"]);
    failing = false;
    await next.stop();
  });

  it("a refused batch is granted once the sink works again, without a restart", async () => {
    const { journal, stateFile } = await place();
    await writeJournal(journal, logins(["e1"], 10 * MINUTE));
    let failing = true;
    const sink = recorder((batch) => {
      if (failing && batch.some((e) => e.kind === "journal" && e.fields.MESSAGE === "e2"))
        throw new Error("disk full");
      return true;
    });
    const { reader, log } = newReader({ directory: journal, stateFile });
    await reader.start(sink.sink);
    await until("following", () => reader.status().startsWith("journal: following"));
    await writeJournal(journal, logins(["e2"], 5 * MINUTE));
    await until("the failure", () => reader.status().includes("DEGRADED"));
    failing = false;
    await writeJournal(journal, logins(["e3"], 4 * MINUTE));
    await until("the cursor after e3", async () => {
      return (await savedCursor(stateFile).catch(() => "")) === (await cursors(journal)).get("e3");
    });
    assert.ok(!reader.status().includes("DEGRADED"), reader.status());
    assert.match(log.lines.join(""), /the sink works again/);
    await reader.stop();
  });

  it("restarts journalctl with backoff, says so, and still delivers every entry exactly once", async () => {
    const { dir, journal, stateFile } = await place();
    await writeJournal(journal, logins(["f1", "f2", "f3"], 10 * MINUTE));
    // Run 1 fails at once; run 3 (the first --follow) is killed after a second.
    const script = join(dir, "journalctl-flaky");
    await writeFile(
      script,
      `#!/bin/sh
count=${JSON.stringify(join(dir, "count"))}
n=$(( $(cat "$count" 2>/dev/null || echo 0) + 1 ))
echo "$n" > "$count"
case $n in
  1) echo "flaky: simulated failure" >&2; exit 1 ;;
  3) exec timeout 1 journalctl "$@" ;;
esac
exec journalctl "$@"
`,
    );
    await chmod(script, 0o755);
    const sink = recorder();
    const { reader, log } = newReader({ directory: journal, stateFile, journalctl: script });
    await reader.start(sink.sink);
    await until(
      "the first restart in status()",
      () =>
        /^journal: journalctl exited with status 1, restarting in 0\.5 s \(at [\dTZ:.-]+\)$/.test(
          reader.status(),
        ),
      2000,
    );
    await until("f3", () => sink.has("f3"));
    await writeJournal(journal, logins(["f4"], 5 * MINUTE));
    await until("f4", () => sink.has("f4"));
    await until("the second restart", () => reader.status().includes("status 124"), 3000);
    assert.match(
      reader.status(),
      /^journal: journalctl exited with status 124, restarting in 1 s \(at [\dTZ:.-]+\)$/,
    );
    await writeJournal(journal, logins(["f5"], 4 * MINUTE));
    await until("f5", () => sink.has("f5"));
    await until("following again", () => reader.status().startsWith("journal: following"));
    const count = () => readFile(join(dir, "count"), "utf8").then((n) => n.trim());
    await until("run 5", async () => (await count()) === "5");
    await sleep(200);
    await reader.stop();
    assert.deepEqual(sink.messages(), ["f1", "f2", "f3", "f4", "f5"]);
    const text = log.lines.join("");
    assert.match(
      text,
      /journal: journalctl exited with status 1, restarting in 0\.5 s: flaky: simulated failure/,
    );
    assert.match(text, /journal: journalctl exited with status 124, restarting in 1 s/);
    assert.equal(await count(), "5");
  });

  it("reports a journalctl that cannot start, and stops cleanly while waiting to retry", async () => {
    const { dir, journal, stateFile } = await place();
    const missing = join(dir, "no-journalctl");
    const { reader, log } = newReader({ directory: journal, stateFile, journalctl: missing });
    await reader.start(recorder().sink);
    await until("the failure", () => reader.status().includes("restarting"), 2000);
    assert.match(
      reader.status(),
      new RegExp(
        `^journal: journalctl failed to start \\(spawn ${missing} ENOENT\\), restarting in 0\\.5 s \\(at [\\dTZ:.-]+\\)$`,
      ),
    );
    assert.match(log.lines.join(""), /journalctl failed to start .* restarting in 0\.5 s/);
    await reader.stop();
    assert.equal(reader.status(), "journal: stopped");
  });

  it("logs and skips output that is not a journal entry, and starts each run where the last ended", async () => {
    const { dir, journal, stateFile } = await place();
    // Run 1 prints junk, one entry and half an entry; run 2 (--follow) prints nothing.
    const script = join(dir, "journalctl-junk");
    const args = join(dir, "args");
    await writeFile(
      script,
      `#!/bin/sh
printf '%s\\n' "$*" >> ${JSON.stringify(args)}
case "$*" in
  *--follow*) exec sleep 30 ;;
esac
printf 'garbage\\n\\n{"MESSAGE":"ok","__CURSOR":"s=1;i=1"}\\n{"MESSAGE":"half'
`,
    );
    await chmod(script, 0o755);
    const sink = recorder();
    const { reader, log } = newReader({
      directory: journal,
      stateFile,
      journalctl: script,
      matches: ["_UID=0"],
      firstStartSince: 60,
    });
    const before = Math.floor(Date.now() / 1000) - 60;
    await reader.start(sink.sink);
    const runs = async () => (await readFile(args, "utf8").catch(() => "")).trim().split("\n");
    await until("run 2", async () => (await runs()).length === 2);
    assert.ok(reader.status().startsWith("journal: following"));
    await reader.stop();
    assert.deepEqual(sink.messages(), ["ok"]);
    const text = log.lines.join("");
    assert.match(text, /skipping a line of journalctl output: not JSON .*"garbage"/);
    assert.match(text, /output ended inside an entry, dropped: "\{\\"MESSAGE\\":\\"half"/);
    const [first, second] = await runs();
    const since = Number(/--since=@(\d+)/.exec(first ?? "")?.[1]);
    assert.ok(since >= before && since <= before + 2, `${since} vs ${before}`);
    assert.equal(
      second,
      `--output=json --all --no-pager --lines=all --directory=${journal} --follow --merge --cursor=s=1;i=1 -- _UID=0`,
    );
    assert.equal(await savedCursor(stateFile), "s=1;i=1");
  });

  it("ignores a state file that holds no cursor, as on a first start", async () => {
    const { journal, stateFile } = await place();
    await writeJournal(journal, [
      ...logins(["too-old"], 50 * MINUTE),
      ...logins(["recent"], 5 * MINUTE),
    ]);
    await mkdir(join(stateFile, ".."), { recursive: true });
    await writeFile(stateFile, "--directory=/etc\n");
    const sink = recorder();
    const { reader, log } = newReader({ directory: journal, stateFile });
    await reader.start(sink.sink);
    await until("recent", () => sink.has("recent"));
    await reader.stop();
    assert.deepEqual(sink.messages(), ["recent"]);
    assert.match(log.lines.join(""), /holds no journal cursor .* ignoring it/);
  });
  it("drops a cursor journalctl refuses and reads as on a first start", async () => {
    const { journal, stateFile } = await place();
    await writeJournal(journal, [
      ...logins(["too-old"], 50 * MINUTE),
      ...logins(["recent"], 5 * MINUTE),
    ]);
    await mkdir(join(stateFile, ".."), { recursive: true });
    await writeFile(stateFile, "s=zz;i=zz\n");
    const sink = recorder();
    const { reader, log } = newReader({ directory: journal, stateFile });
    await reader.start(sink.sink);
    await until("recent", () => sink.has("recent"), 4000);
    await reader.stop();
    assert.deepEqual(sink.messages(), ["recent"]);
    const text = log.lines.join("");
    assert.match(text, /journalctl refused the cursor "s=zz;i=zz"; dropping it/);
    assert.match(text, /exited with status 1, restarting in 0\.5 s: Failed to seek to cursor/);
    assert.equal(await savedCursor(stateFile), (await cursors(journal)).get("recent"));
  });
});

describe("journal reader following the live journald", { skip: await ensureJournald() }, () => {
  it("delivers what is logged through systemd-cat and syslog, and resumes after a restart", async () => {
    const { stateFile } = await place();
    const tag = `poprelay-test-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
    await systemdCat(tag, "before start");
    const sink = recorder();
    const options = { stateFile, matches: [`SYSLOG_IDENTIFIER=${tag}`], firstStartSince: 60 };
    const reader = newReader(options).reader;
    await reader.start(sink.sink);
    await systemdCat(tag, "via systemd-cat");
    await loggerLine(tag, "via logger");
    await until("both lines", () => sink.has("via systemd-cat") && sink.has("via logger"), 5000);
    await until("following", () => reader.status().startsWith("journal: following"));
    await reader.stop();
    assert.equal(sink.messages()[0], "before start");
    assert.deepEqual([...sink.messages()].sort(), [
      "before start",
      "via logger",
      "via systemd-cat",
    ]);
    const transports = sink
      .entries()
      .map((e) => (e.kind === "journal" ? `${e.fields.MESSAGE}: ${e.fields._TRANSPORT}` : ""))
      .sort();
    assert.deepEqual(transports, [
      "before start: stdout",
      "via logger: syslog",
      "via systemd-cat: stdout",
    ]);

    await systemdCat(tag, "while stopped");
    const again = recorder();
    const next = newReader(options).reader;
    await next.start(again.sink);
    await until("while stopped", () => again.has("while stopped"), 5000);
    await systemdCat(tag, "after restart");
    await until("after restart", () => again.has("after restart"), 5000);
    await next.stop();
    assert.deepEqual(again.messages(), ["while stopped", "after restart"]);
  });
});
