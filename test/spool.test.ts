import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdir, readdir, readFile, symlink, utimes, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, it } from "node:test";
import { memoryLogger } from "../src/log.js";
import { FileSpoolStore } from "../src/spool/file-store.js";
import { FileLock } from "../src/spool/lock.js";
import type { SpoolEntry } from "../src/spool/types.js";
import { configDir, poprelay, ROOT, run, scratch } from "./helpers.js";

const T = Date.parse("2026-11-24T10:00:00Z");
const entry = (ip: string, login = T, user = "alice"): SpoolEntry => ({
  ip,
  user,
  agent: "dovecot",
  login,
  expires: login + 1800_000,
});

async function store(): Promise<{
  spool: FileSpoolStore;
  dir: string;
  log: ReturnType<typeof memoryLogger>;
}> {
  const dir = join(await scratch(), "spool");
  const log = memoryLogger();
  return { spool: new FileSpoolStore({ directory: dir, legacyPeriod: 600, log }), dir, log };
}

describe("file spool", () => {
  it("keeps one file per canonical address, holding user, agent, login and expiry", async () => {
    const { spool, dir } = await store();
    await spool.put([entry("198.51.100.7"), entry("2001:db8::1", T, "bob")]);
    assert.deepEqual((await readdir(dir)).filter((n) => !n.startsWith(".")).sort(), [
      "198.51.100.7",
      "2001:db8::1",
    ]);
    assert.deepEqual(JSON.parse(await readFile(join(dir, "198.51.100.7"), "utf8")), {
      user: "alice",
      agent: "dovecot",
      login: "2026-11-24T10:00:00.000Z",
      expires: "2026-11-24T10:30:00.000Z",
    });
    assert.deepEqual(await spool.list(), [entry("198.51.100.7"), entry("2001:db8::1", T, "bob")]);
  });

  it("a later login refreshes an entry; a replayed or older one changes nothing", async () => {
    const { spool } = await store();
    assert.equal((await spool.put([entry("192.0.2.1", T)])).length, 1);
    assert.equal((await spool.put([entry("192.0.2.1", T)])).length, 0, "replay");
    assert.equal((await spool.put([entry("192.0.2.1", T - 60_000, "mallory")])).length, 0, "older");
    const changed = await spool.put([entry("192.0.2.1", T + 60_000, "carol")]);
    assert.deepEqual(changed, [entry("192.0.2.1", T + 60_000, "carol")]);
    assert.deepEqual(await spool.list(), [entry("192.0.2.1", T + 60_000, "carol")]);
    const batch = await spool.put([
      entry("192.0.2.2", T + 5),
      entry("192.0.2.2", T + 9, "last"),
      entry("192.0.2.2", T + 1),
    ]);
    assert.deepEqual(batch, [entry("192.0.2.2", T + 9, "last")]);
    // A session's end replaces an entry as it is, shorter, in one atomic write.
    const ended = { ...entry("192.0.2.2", T + 9, "last"), expires: T + 10 };
    assert.deepEqual(await spool.put([ended], { replace: true }), [ended]);
    assert.deepEqual(await spool.list(), [entry("192.0.2.1", T + 60_000, "carol"), ended]);
  });

  it("removes given addresses, expired entries, and everything", async () => {
    const { spool } = await store();
    await spool.put([
      entry("192.0.2.1", T),
      entry("192.0.2.2", T + 1000_000),
      entry("192.0.2.3", T),
    ]);
    assert.deepEqual(await spool.remove(["192.0.2.3", "192.0.2.9"]), ["192.0.2.3"]);
    const expired = await spool.removeExpired(T + 1800_000);
    assert.deepEqual(
      expired.map((e) => e.ip),
      ["192.0.2.1"],
    );
    assert.deepEqual(
      (await spool.list()).map((e) => e.ip),
      ["192.0.2.2"],
    );
    assert.equal(await spool.wipe(), 1);
    assert.deepEqual(await spool.list(), []);
  });

  it("refuses anything that is not a canonical address before touching the disk", async () => {
    const { spool, dir } = await store();
    await spool.put([entry("192.0.2.1")]);
    for (const bad of [
      "../escape",
      "1.2.3.4 OK\n0.0.0.0/0",
      "::ffff:1.2.3.4",
      "2001:DB8::1",
      "",
      ".lock",
      "1.2.3.4/32",
    ]) {
      await assert.rejects(spool.put([entry(bad)]), /not an IP address/);
      await assert.rejects(spool.remove([bad]), /not an IP address/);
    }
    // A batch with one bad address writes nothing at all.
    await assert.rejects(spool.put([entry("192.0.2.5"), entry("../x")]), /not an IP address/);
    assert.deepEqual(
      (await readdir(dir)).filter((n) => !n.startsWith(".")),
      ["192.0.2.1"],
    );
    assert.deepEqual(await readdir(join(dir, "..")), ["spool"]);
  });

  it("stores user names printable and bounded", async () => {
    const { spool } = await store();
    await spool.put([entry("192.0.2.1", T, `evil\nuser\u0000\u202e${"x".repeat(400)}`)]);
    const [stored] = await spool.list();
    assert.equal(stored?.user.length, 256);
    assert.ok(stored?.user.startsWith("evil?user??xxx"));
  });

  it("reads Mail::POPRelay's files (the user name, dated by mtime) and skips foreign names", async () => {
    const { spool, dir, log } = await store();
    await spool.put([entry("192.0.2.1")]);
    await writeFile(join(dir, "203.0.113.5"), "olduser\n");
    const mtime = new Date(T);
    await utimes(join(dir, "203.0.113.5"), mtime, mtime);
    await writeFile(join(dir, "not-an-ip"), "x");
    await writeFile(join(dir, "::ffff:1.2.3.4"), "x");
    // A legacy file for an address no client has is skipped too, saying why.
    await writeFile(join(dir, "255.255.255.255"), "olduser\n");
    const entries = await spool.list();
    assert.deepEqual(
      entries.map((e) => [e.ip, e.user, e.agent, e.login, e.expires]),
      [
        ["192.0.2.1", "alice", "dovecot", T, T + 1800_000],
        ["203.0.113.5", "olduser", "legacy", T, T + 600_000],
      ],
    );
    assert.equal(
      log.lines.filter((l) => /ignoring "(not-an-ip|::ffff:1\.2\.3\.4)"/.test(l)).length,
      2,
    );
    assert.match(
      log.lines.join(""),
      /ignoring "255\.255\.255\.255": not a client address.*broadcast/,
    );
  });
});

describe("a spool entry that is not a regular file", () => {
  /** A directory, a FIFO and a symlink named like addresses, beside a real entry. */
  async function oddSpool() {
    const { spool, dir, log } = await store();
    await spool.put([entry("192.0.2.1")]);
    await mkdir(join(dir, "192.0.2.2"));
    const fifo = await run("mkfifo", [join(dir, "192.0.2.3")]);
    assert.equal(fifo.code, 0, fifo.stderr);
    await writeFile(join(dir, "..target"), JSON.stringify({ ...entry("192.0.2.4") }));
    await symlink(join(dir, "..target"), join(dir, "192.0.2.4"));
    return { spool, dir, log };
  }

  it("is skipped with a warning naming it, and the rest is read", async () => {
    const { spool, dir, log } = await oddSpool();
    for (const read of [() => spool.list(), () => spool.exclusive(() => spool.list())]) {
      log.lines.length = 0;
      assert.deepEqual(
        (await read()).map((e) => e.ip),
        ["192.0.2.1"],
      );
      const text = log.lines.join("");
      assert.match(text, new RegExp(`spool ${join(dir, "192.0.2.2")}: skipped: a directory`));
      assert.match(text, new RegExp(`spool ${join(dir, "192.0.2.3")}: skipped: a FIFO`));
      assert.match(text, new RegExp(`spool ${join(dir, "192.0.2.4")}: skipped: a symbolic link`));
    }
    // A login for the address of the directory: the others are still kept, and the log says why.
    const kept = await spool.put([entry("192.0.2.2", T + 1), entry("192.0.2.5")]);
    assert.deepEqual(
      kept.map((e) => e.ip),
      ["192.0.2.5"],
    );
    assert.match(log.lines.join(""), /192\.0\.2\.2: not a regular file \(EISDIR\)/);
    assert.deepEqual(
      (await spool.removeExpired(T + 3600_000)).map((e) => e.ip),
      ["192.0.2.1", "192.0.2.5"],
    );
  });

  it("fails no command: list, add, clean and generate go on", async () => {
    const { dir } = await oddSpool();
    const conf = await configDir({
      "50.yaml": `spool:\n  directory: ${dir}\nstate:\n  directory: ${join(dir, "..")}\nmap:\n  mta: plain\n  file: ${join(dir, "..", "relay")}\n`,
    });
    for (const args of [["list"], ["add", "198.51.100.7"], ["clean"], ["generate"], ["list"]]) {
      const result = await poprelay([...args, "--config-dir", conf]);
      assert.equal(result.code, 0, `${args.join(" ")}: ${result.stderr}`);
      assert.doesNotMatch(result.stderr, /EISDIR/);
    }
    const listed = await poprelay(["list", "--config-dir", conf]);
    assert.match(listed.stdout, /198\.51\.100\.7/);
    assert.match(listed.stderr, /192\.0\.2\.2: skipped: a directory/);
    assert.match(await readFile(join(dir, "..", "relay"), "utf8"), /^198\.51\.100\.7$/m);
  });
});

describe("spool lock", () => {
  it("serialises holders in one process", async () => {
    const lock = new FileLock(join(await scratch(), "lock"));
    const order: string[] = [];
    const slow = lock.run(async () => {
      order.push("a-in");
      await new Promise((r) => setTimeout(r, 50));
      order.push("a-out");
    });
    const fast = lock.run(async () => {
      order.push("b-in");
    });
    await Promise.all([slow, fast]);
    assert.deepEqual(order, ["a-in", "a-out", "b-in"]);
  });

  it("is released when its holder is killed with SIGKILL", async () => {
    const path = join(await scratch(), "lock");
    const holderScript = `
      import { FileLock } from ${JSON.stringify(join(ROOT, "build/src/spool/lock.js"))};
      await new FileLock(${JSON.stringify(path)}).run(async () => {
        process.stdout.write("held\\n");
        // A timer keeps the process (and so the lock) alive until it is killed.
        await new Promise(() => setInterval(() => {}, 1000));
      });`;
    const holder = spawn(process.execPath, ["--input-type=module", "-e", holderScript], {
      stdio: ["ignore", "pipe", "inherit"],
    });
    await new Promise<void>((resolve) => holder.stdout.once("data", () => resolve()));
    const lock = new FileLock(path);
    let acquired = false;
    const waiting = lock.run(async () => {
      acquired = true;
    });
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(acquired, false, "the live holder keeps the lock");
    holder.kill("SIGKILL");
    await waiting;
    assert.equal(acquired, true);
  });
});
