import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, it } from "node:test";
import { CLI, poprelay, run, sandbox, scratch } from "./helpers.js";

const postmapQuery = (key: string, map: string) =>
  run("/usr/sbin/postmap", ["-q", key, `hash:${map}`]);

describe("admin commands against a real Postfix map", () => {
  it("add makes postmap -q answer OK; remove makes it answer nothing", async () => {
    const { dir, map } = await sandbox();
    const add = await poprelay(["add", "198.51.100.7", "--user", "alice", "--config-dir", dir]);
    assert.equal(add.code, 0, add.stderr);
    assert.match(add.stdout, /^198\.51\.100\.7 may relay until \S+; map .*relay: 1 entry\n$/);
    assert.deepEqual(await postmapQuery("198.51.100.7", map), {
      code: 0,
      stdout: "OK\n",
      stderr: "",
    });
    assert.equal((await postmapQuery("198.51.100.8", map)).stdout, "");

    const remove = await poprelay(["remove", "198.51.100.7", "--config-dir", dir]);
    assert.equal(remove.code, 0, remove.stderr);
    assert.match(remove.stdout, /198\.51\.100\.7 removed; map .*: 0 entries/);
    const after = await postmapQuery("198.51.100.7", map);
    assert.equal(after.stdout, "");
    assert.equal(after.code, 1);
    const again = await poprelay(["remove", "198.51.100.7", "--config-dir", dir]);
    assert.match(again.stdout, /was not in the spool/);
  });

  it("canonicalises what it is given and refuses what is not an address", async () => {
    const { dir, map } = await sandbox();
    assert.equal((await poprelay(["add", "::FFFF:192.0.2.4", "--config-dir", dir])).code, 0);
    assert.equal((await poprelay(["add", "2001:DB8:0::7", "--config-dir", dir])).code, 0);
    assert.equal((await postmapQuery("192.0.2.4", map)).stdout, "OK\n");
    assert.equal((await postmapQuery("2001:db8::7", map)).stdout, "OK\n");
    for (const bad of [
      "1.2.3.4 OK\n0.0.0.0/0",
      "../../etc/passwd",
      "300.1.1.1",
      "fe80::1%lo",
      "0.0.0.0/0",
    ]) {
      const result = await poprelay(["add", bad, "--config-dir", dir]);
      assert.equal(result.code, 1, bad);
      assert.match(result.stderr, /not an IP address/);
    }
    const text = await readFile(map, "utf8");
    assert.deepEqual(
      text.split("\n").filter((l) => l && !l.startsWith("#")),
      ["192.0.2.4 OK", "2001:db8::7 OK"],
    );
  });

  it("list, clean, wipe and generate do what the seed's methods did", async () => {
    const { dir, map, spool } = await sandbox("relay:\n  period: 1h\n");
    for (const ip of ["192.0.2.10", "192.0.2.2"])
      assert.equal((await poprelay(["add", ip, "--config-dir", dir])).code, 0);
    // An entry that expired an hour ago, written as the daemon would have.
    await writeFile(
      join(spool, "192.0.2.3"),
      JSON.stringify({
        user: "old",
        agent: "dovecot",
        login: "2020-01-01T00:00:00Z",
        expires: "2020-01-01T00:30:00Z",
      }),
    );
    const list = await poprelay(["list", "--json", "--config-dir", dir]);
    const rows = list.stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    assert.deepEqual(
      rows.map((r) => [r.ip, r.user, r.agent, r.expired]),
      [
        ["192.0.2.2", "-", "manual", false],
        ["192.0.2.3", "old", "dovecot", true],
        ["192.0.2.10", "-", "manual", false],
      ],
    );
    const table = await poprelay(["list", "--config-dir", dir]);
    assert.match(table.stdout, /^ADDRESS\s+USER\s+AGENT\s+LOGIN\s+EXPIRES\n192\.0\.2\.2 /);
    assert.match(table.stdout, /192\.0\.2\.3\s+old\s+dovecot\s+2020-01-01T00:00:00Z\s+expired/);

    // generate: expired entries are never in the map, even before clean removes them.
    assert.match((await poprelay(["generate", "--config-dir", dir])).stdout, /: 2 entries\n$/);
    assert.equal((await postmapQuery("192.0.2.3", map)).stdout, "");
    const clean = await poprelay(["clean", "--config-dir", dir]);
    assert.match(clean.stdout, /^1 expired entry removed; .* 2 entries \(unchanged\)\n$/);
    assert.equal(
      (await poprelay(["list", "--json", "--config-dir", dir])).stdout.trim().split("\n").length,
      2,
    );
    const wipe = await poprelay(["wipe", "--config-dir", dir]);
    assert.match(wipe.stdout, /^2 entries removed; .*: 0 entries\n$/);
    assert.equal((await postmapQuery("192.0.2.2", map)).stdout, "");
    assert.equal(
      (await poprelay(["list", "--config-dir", dir])).stdout,
      "ADDRESS  USER  AGENT  LOGIN  EXPIRES\n",
    );
  });

  it("a failing database command is reported, exits 1, and leaves the previous map", async () => {
    const { dir, map } = await sandbox();
    assert.equal((await poprelay(["add", "192.0.2.1", "--config-dir", dir])).code, 0);
    const before = await readFile(`${map}.db`);
    const conf = join(dir, "conf.d", "60-broken.yaml");
    await writeFile(conf, "map:\n  command: /bin/false %r\n");
    const result = await poprelay(["add", "192.0.2.2", "--config-dir", dir]);
    assert.equal(result.code, 1);
    assert.match(result.stderr, /\/bin\/false/);
    assert.deepEqual(await readFile(`${map}.db`), before);
    assert.equal((await postmapQuery("192.0.2.1", map)).stdout, "OK\n");
    assert.equal((await postmapQuery("192.0.2.2", map)).stdout, "");
  });
});

describe("concurrent writers", () => {
  it("parallel add and clean processes lose no entry", async () => {
    const { dir, map } = await sandbox();
    const ips = Array.from({ length: 24 }, (_, i) => `203.0.113.${i + 1}`);
    const jobs = [
      ...ips.map((ip) => poprelay(["add", ip, "--config-dir", dir])),
      ...Array.from({ length: 6 }, () => poprelay(["clean", "--config-dir", dir])),
      ...Array.from({ length: 4 }, () => poprelay(["generate", "--config-dir", dir])),
    ];
    const results = await Promise.all(jobs);
    for (const r of results) assert.equal(r.code, 0, r.stderr);
    const lines = (await readFile(map, "utf8")).split("\n").filter((l) => l && !l.startsWith("#"));
    assert.deepEqual(
      lines,
      ips.map((ip) => `${ip} OK`),
    );
    for (const ip of ips) assert.equal((await postmapQuery(ip, map)).stdout, "OK\n", ip);
  });
});

describe("clean without --instance", () => {
  it("cleans the base spool and every instance's own spool and map, each once", async () => {
    const { dir, map } = await sandbox();
    const courierSpool = join(dir, "courier-spool");
    const courierMap = join(dir, "courier-relay");
    await writeFile(
      join(dir, "conf.d", "60-instances.yaml"),
      `instances:\n  courier:\n    spool:\n      directory: ${courierSpool}\n    map:\n      file: ${courierMap}\n  dovecot:\n    relay:\n      period: 1h\n`,
    );
    const expired = JSON.stringify({
      user: "old",
      agent: "x",
      login: "2020-01-01T00:00:00Z",
      expires: "2020-01-01T00:30:00Z",
    });
    assert.equal((await poprelay(["add", "192.0.2.1", "--config-dir", dir])).code, 0);
    assert.equal(
      (await poprelay(["add", "192.0.2.2", "--config-dir", dir, "--instance", "courier"])).code,
      0,
    );
    await writeFile(join(dir, "spool", "192.0.2.9"), expired);
    await writeFile(join(courierSpool, "192.0.2.8"), expired);
    const result = await poprelay(["clean", "--config-dir", dir]);
    assert.equal(result.code, 0, result.stderr);
    assert.deepEqual(result.stdout.trim().split("\n"), [
      `(base): 1 expired entry removed; map ${map}: 1 entry (unchanged)`,
      `courier: 1 expired entry removed; map ${courierMap}: 1 entry (unchanged)`,
    ]);
    assert.equal((await postmapQuery("192.0.2.2", courierMap)).stdout, "OK\n");
  });
});

/**
 * Runs poprelay with the read end of stdout (and of stderr, if asked) closed before it starts
 * writing: its writes then fail with EPIPE, as under `poprelay agents | head`, only always.
 */
function readerGone(
  args: readonly string[],
  closeStderr: boolean,
): Promise<{ code: number | null; signal: string | null; stderr: string }> {
  const child = spawn(process.execPath, [CLI, ...args], { stdio: ["ignore", "pipe", "pipe"] });
  child.stdout.destroy();
  if (closeStderr) child.stderr.destroy();
  let stderr = "";
  child.stderr.on("data", (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  return new Promise((resolve) =>
    child.on("close", (code, signal) => resolve({ code, signal, stderr })),
  );
}

describe("a command whose reader goes away", () => {
  it("stops quietly with status 0: no EPIPE stack trace (agents, check --print, list, match)", async () => {
    const { dir } = await sandbox();
    assert.equal((await poprelay(["add", "192.0.2.1", "--config-dir", dir])).code, 0);
    const log = join(await scratch("poprelay-epipe-"), "mail.log");
    const line = (i: number) =>
      `Nov 24 03:12:01 mail dovecot: pop3-login: Login: user=<u${i}>, method=PLAIN, rip=198.51.100.${i % 250}, lip=192.0.2.1`;
    await writeFile(log, `${Array.from({ length: 20_000 }, (_, i) => line(i)).join("\n")}\n`);
    for (const args of [
      ["agents"],
      ["check", "--print", "--config-dir", dir],
      ["list", "--config-dir", dir],
      ["match", "--agent", "dovecot", "--json", "--config-dir", dir, log],
    ]) {
      const result = await readerGone(args, false);
      assert.deepEqual(result, { code: 0, signal: null, stderr: "" }, args.join(" "));
    }
    // Its summary on stderr has no reader either.
    const both = await readerGone(["match", "--agent", "dovecot", "--config-dir", dir, log], true);
    assert.deepEqual(both, { code: 0, signal: null, stderr: "" });
  });
});
