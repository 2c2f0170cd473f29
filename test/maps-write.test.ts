import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import {
  access,
  chmod,
  mkdir,
  readdir,
  readFile,
  rm,
  stat,
  utimes,
  writeFile,
} from "node:fs/promises";
import { join } from "node:path";
import { describe, it, type TestContext } from "node:test";
import { canonicalIp } from "../src/address/ip.js";
import { defaultConfig } from "../src/config/load.js";
import type { MapConfig } from "../src/config/types.js";
import { memoryLogger } from "../src/log.js";
import { postfixKey } from "../src/maps/keys.js";
import { checkPostfixMapType } from "../src/maps/postconf.js";
import { checkMapTools } from "../src/maps/settings.js";
import { tcprulesReadsIpv6 } from "../src/maps/tcprules.js";
import { STALE_AFTER_MS } from "../src/maps/tempdirs.js";
import { MapRestartError, writeMap } from "../src/maps/write.js";
import type { SpoolEntry } from "../src/spool/types.js";
import { IN_CI, ROOT, run, scratch } from "./helpers.js";

const HEADER = "# Written by poprelay; changes here are overwritten.";
const IPS = [
  "2001:db8::1",
  "10.0.0.10",
  "198.51.100.7",
  "10.0.0.2",
  "2001:db8:0:1:1:1:1:1",
  "10.0.0.2",
];

function mapConfig(file: string, overrides: Partial<MapConfig> = {}): MapConfig {
  return { ...defaultConfig().map, file, ...overrides };
}

const entries = (ips: readonly string[]): SpoolEntry[] =>
  ips.map((ip) => ({ ip, user: "alice", agent: "dovecot", login: 0, expires: 1 }));

const exists = (path: string) =>
  access(path).then(
    () => true,
    () => false,
  );

/** Build directories left in the map's directory. */
const leftovers = async (dir: string) =>
  (await readdir(dir)).filter((name) => name.startsWith(".poprelay-"));

/**
 * The database's answer for an address's line: Postfix maps hold `A/32` and `A/128` keys,
 * which only the cidr reading of the text matches (keys.ts); the database carries them so that
 * smtpd notices a new map.
 */
const postmapQuery = (type: string, file: string, address: string) =>
  run("/usr/sbin/postmap", ["-q", postfixKey(canonicalIp(address)), `${type}:${file}`]);

/**
 * A tool the tests need that scripts/test.sh unpacks into .cache rather than installs. Its
 * absence under CI fails instead of skipping.
 */
async function tool(
  t: TestContext,
  envName: string,
  fallback: string,
): Promise<string | undefined> {
  const path = process.env[envName] || join(ROOT, fallback);
  if (await exists(path)) return path;
  const message = `${path} not found (set ${envName}, or run scripts/test.sh)`;
  if (IN_CI) assert.fail(message);
  t.skip(message);
  return undefined;
}

describe("writeMap with the real postmap", () => {
  const types: [string, string][] = [
    ["hash", ".db"],
    ["lmdb", ".lmdb"],
    ["cdb", ".cdb"],
  ];
  for (const [type, suffix] of types) {
    it(`${type}: the database holds the cidr keys, and a rewrite of the same text is skipped`, async () => {
      const dir = await scratch("poprelay-maps-");
      const file = join(dir, "relay");
      const config = mapConfig(file, { type });
      const log = memoryLogger();
      const first = await writeMap(entries(IPS), config, { log });
      assert.deepEqual(first, { changed: true, entries: 5, file, products: [file + suffix] });
      assert.equal(
        await readFile(file, "utf8"),
        `${HEADER}\n10.0.0.2/32 OK\n10.0.0.10/32 OK\n198.51.100.7/32 OK\n` +
          "2001:db8::1/128 OK\n2001:db8:0:1:1:1:1:1/128 OK\n",
      );
      // The text read as a cidr table (what smtpd looks up) answers for each address.
      for (const address of ["198.51.100.7", "2001:db8::1"])
        assert.equal(
          (await run("/usr/sbin/postmap", ["-q", address, `cidr:${file}`])).stdout,
          "OK\n",
        );
      // The database matches no address: only the cidr table decides.
      for (const address of ["198.51.100.7", "2001:db8::1"])
        assert.equal((await run("/usr/sbin/postmap", ["-q", address, `${type}:${file}`])).code, 1);
      assert.deepEqual(await postmapQuery(type, file, "198.51.100.7"), {
        code: 0,
        stdout: "OK\n",
        stderr: "",
      });
      assert.deepEqual(await postmapQuery(type, file, "2001:db8::1"), {
        code: 0,
        stdout: "OK\n",
        stderr: "",
      });
      assert.deepEqual(await postmapQuery(type, file, "192.0.2.99"), {
        code: 1,
        stdout: "",
        stderr: "",
      });
      assert.equal((await stat(file)).mode & 0o777, 0o644);
      assert.equal((await stat(file + suffix)).mode & 0o777, 0o644);
      assert.deepEqual(await leftovers(dir), []);

      const before = [(await stat(file)).mtimeMs, (await stat(file + suffix)).mtimeMs];
      const second = await writeMap(entries([...IPS].reverse()), config, { log });
      assert.deepEqual(second, { changed: false, entries: 5, file, products: [] });
      assert.deepEqual([(await stat(file)).mtimeMs, (await stat(file + suffix)).mtimeMs], before);

      const third = await writeMap(entries([...IPS, "192.0.2.99"]), config, { log });
      assert.equal(third.changed, true);
      assert.equal((await postmapQuery(type, file, "192.0.2.99")).stdout, "OK\n");
    });
  }

  it("force rewrites unchanged text; a missing database is rebuilt even without force", async () => {
    const dir = await scratch("poprelay-maps-");
    const file = join(dir, "relay");
    const config = mapConfig(file);
    const log = memoryLogger();
    await writeMap(entries(IPS), config, { log });
    assert.equal((await writeMap(entries(IPS), config, { log, force: true })).changed, true);
    await rm(`${file}.db`);
    assert.equal((await writeMap(entries(IPS), config, { log })).changed, true);
    assert.equal((await postmapQuery("hash", file, "10.0.0.2")).stdout, "OK\n");
  });

  it("creates the map's directory", async () => {
    const dir = await scratch("poprelay-maps-");
    const file = join(dir, "var/lib/poprelay/relay");
    await writeMap(entries(["192.0.2.1"]), mapConfig(file), { log: memoryLogger() });
    assert.equal((await postmapQuery("hash", file, "192.0.2.1")).stdout, "OK\n");
  });
});

describe("writeMap leaves the previous map in place when it fails", () => {
  async function liveMap() {
    const dir = await scratch("poprelay-maps-");
    const file = join(dir, "relay");
    await writeMap(entries(["192.0.2.1"]), mapConfig(file), { log: memoryLogger() });
    const snapshot = async () => [await readFile(file), await readFile(`${file}.db`)];
    return { dir, file, snapshot, before: await snapshot() };
  }

  for (const command of [
    "false",
    "head -c 100 %r > %r.db; echo postmap: fatal: disk full >&2; exit 1",
  ]) {
    it(`when the command fails: ${command}`, async () => {
      const { dir, file, snapshot, before } = await liveMap();
      const log = memoryLogger();
      await assert.rejects(
        writeMap(entries(["192.0.2.2"]), mapConfig(file, { command }), { log }),
        (error: Error) => {
          assert.match(
            error.message,
            new RegExp(
              `^map ${file} not updated, the previous map is left in place: command failed: `,
            ),
          );
          assert.match(error.message, /exit status 1/);
          if (command !== "false") assert.match(error.message, /\n {2}postmap: fatal: disk full$/);
          return true;
        },
      );
      assert.deepEqual(await snapshot(), before);
      assert.deepEqual(await leftovers(dir), []);
      assert.match(
        log.lines.join(""),
        /error: map: .* not updated, the previous map is left in place/,
      );
      assert.equal((await postmapQuery("hash", file, "192.0.2.1")).stdout, "OK\n");
    });
  }

  it("when an entry is not a canonical address, nothing is written at all", async () => {
    const dir = await scratch("poprelay-maps-");
    const file = join(dir, "relay");
    for (const bad of ["1.2.3.4 OK\n0.0.0.0/0", "../etc", "1.2.3.4\r"]) {
      await assert.rejects(
        writeMap(entries(["192.0.2.1", bad]), mapConfig(file), { log: memoryLogger() }),
        /not an IP address/,
      );
    }
    assert.deepEqual(await readdir(dir), []);
  });

  it("when map.static is missing, naming the key and the path", async () => {
    const { dir, file, snapshot, before } = await liveMap();
    const config = mapConfig(file, { static: join(dir, "tcp.smtp") });
    await assert.rejects(writeMap(entries(["192.0.2.2"]), config, { log: memoryLogger() }), {
      message: `map.static: ${join(dir, "tcp.smtp")}: no such file`,
    });
    assert.deepEqual(await snapshot(), before);
  });

  it("when the writer is killed mid-build; the next write removes its leftovers", async () => {
    const { dir, file, snapshot, before } = await liveMap();
    const pidFile = join(dir, "command.pid");
    const config = mapConfig(file, { command: `echo $$ > ${pidFile}; sleep 5; postmap hash:%r` });
    const writeUrl = new URL("../src/maps/write.js", import.meta.url).href;
    const logUrl = new URL("../src/log.js", import.meta.url).href;
    const code =
      `import { writeMap } from ${JSON.stringify(writeUrl)};\n` +
      `import { memoryLogger } from ${JSON.stringify(logUrl)};\n` +
      // A big map: 20,000 addresses in 10.0.0.1 to 10.78.31.1.
      "const entries = Array.from({ length: 20000 }, (_, n) =>\n" +
      "  ({ ip: ['10', n >> 8, n & 255, '1'].join('.'), user: 'u', agent: 'a', login: 0, expires: 1 }));\n" +
      "await writeMap(entries, JSON.parse(process.env.POPRELAY_TEST_CONFIG), { log: memoryLogger() });\n";
    const child = spawn(process.execPath, ["--input-type=module", "-e", code], {
      env: { ...process.env, POPRELAY_TEST_CONFIG: JSON.stringify(config) },
      stdio: "inherit",
    });
    const exited = new Promise((resolve) => child.once("exit", resolve));
    let commandPid = "";
    for (let waited = 0; commandPid === "" && waited < 5000; waited += 20) {
      await new Promise((resolve) => setTimeout(resolve, 20));
      commandPid = (await readFile(pidFile, "utf8").catch(() => "")).trim();
    }
    assert.notEqual(commandPid, "", "the command never started");
    child.kill("SIGKILL");
    assert.equal(await exited, null);
    // The command runs in its own process group, so the writer's death leaves it running.
    process.kill(-Number(commandPid), "SIGKILL");

    assert.deepEqual(await snapshot(), before);
    assert.equal((await postmapQuery("hash", file, "192.0.2.1")).stdout, "OK\n");
    assert.equal((await postmapQuery("hash", file, "10.0.0.1")).stdout, "");
    const left = await leftovers(dir);
    assert.equal(left.length, 1);
    assert.match(left[0] ?? "", new RegExp(`^\\.poprelay-${child.pid}-`));

    const log = memoryLogger();
    await writeMap(entries(["192.0.2.3"]), mapConfig(file), { log });
    assert.deepEqual(await leftovers(dir), []);
    assert.match(
      log.lines.join(""),
      new RegExp(`removed ${join(dir, left[0] ?? "")}, left by a writer that was killed`),
    );
    assert.equal((await postmapQuery("hash", file, "192.0.2.3")).stdout, "OK\n");
  });

  it("removes an old build directory even when its pid is alive (reused), and keeps a fresh one", async () => {
    const dir = await scratch("poprelay-maps-");
    const file = join(dir, "relay");
    const old = join(dir, `.poprelay-${process.pid}-aaaaaa`);
    const fresh = join(dir, `.poprelay-${process.pid}-bbbbbb`);
    await mkdir(old);
    await mkdir(fresh);
    const long = (Date.now() - STALE_AFTER_MS - 60_000) / 1000;
    await utimes(old, long, long);
    await writeMap(entries(["192.0.2.1"]), mapConfig(file), { log: memoryLogger() });
    assert.deepEqual(await leftovers(dir), [`.poprelay-${process.pid}-bbbbbb`]);
  });
});

describe("writeMap restarts the MTA", () => {
  it("after a change only, with %r the live map", async () => {
    const dir = await scratch("poprelay-maps-");
    const file = join(dir, "relay");
    const config = mapConfig(file, { restart: { enabled: true, command: "touch %r.%m-reloaded" } });
    const marker = `${file}.postfix-reloaded`;
    await writeMap(entries(["192.0.2.1"]), config, { log: memoryLogger() });
    assert.equal(await exists(marker), true);
    await rm(marker);
    await writeMap(entries(["192.0.2.1"]), config, { log: memoryLogger() });
    assert.equal(await exists(marker), false);
  });

  it("reports a failed restart as an error that still carries the written map", async () => {
    const dir = await scratch("poprelay-maps-");
    const file = join(dir, "relay");
    const config = mapConfig(file, { restart: { enabled: true, command: "false" } });
    await assert.rejects(
      writeMap(entries(["192.0.2.1"]), config, { log: memoryLogger() }),
      (error: unknown) => {
        assert.ok(error instanceof MapRestartError);
        assert.equal(
          error.message,
          `map ${file} written, but the restart command failed: command failed: false: exit status 1`,
        );
        assert.deepEqual(error.result, {
          changed: true,
          entries: 1,
          file,
          products: [`${file}.db`],
        });
        return true;
      },
    );
    assert.equal((await postmapQuery("hash", file, "192.0.2.1")).stdout, "OK\n");
  });
});

describe("writeMap with sendmail's makemap", () => {
  it("builds relay.db that makemap -u reads back", async (t) => {
    const makemap = await tool(
      t,
      "POPRELAY_TEST_MAKEMAP",
      ".cache/sendmail/usr/libexec/sendmail/makemap",
    );
    if (!makemap) return;
    const dir = await scratch("poprelay-maps-");
    const file = join(dir, "relay");
    // No /etc/mail/sendmail.cf here: makemap needs some -C file.
    const cf = join(dir, "empty.cf");
    await writeFile(cf, "");
    const config = mapConfig(file, {
      mta: "sendmail",
      command: `${makemap} -C ${cf} hash %r < %r`,
    });
    const result = await writeMap(entries(IPS), config, { log: memoryLogger() });
    assert.deepEqual(result, { changed: true, entries: 5, file, products: [`${file}.db`] });
    // makemap made it 0640; the MTA reads it as its own user.
    assert.equal((await stat(`${file}.db`)).mode & 0o777, 0o644);
    const dump = await run(makemap, ["-C", cf, "-u", "hash", file]);
    assert.equal(dump.code, 0, dump.stderr);
    // makemap folds keys to lower case; sendmail looks them up so.
    assert.deepEqual(dump.stdout.split("\n").filter(Boolean).sort(), [
      "connect:10.0.0.10\tRELAY",
      "connect:10.0.0.2\tRELAY",
      "connect:198.51.100.7\tRELAY",
      "connect:ipv6:2001:db8:0:1:1:1:1:1\tRELAY",
      "connect:ipv6:2001:db8::1\tRELAY",
    ]);
  });
});

describe("writeMap with qmail's tcprules", () => {
  const check = (cdb: string, ip: string) =>
    run("/usr/bin/tcprulescheck", [cdb], { TCPREMOTEIP: ip });
  const RELAY = "set environment variable RELAYCLIENT=\nallow connection\n";

  async function qmailMap(command = "") {
    const dir = await scratch("poprelay-maps-");
    const file = join(dir, "tcp.smtp");
    const staticRules = join(dir, "static.rules");
    await writeFile(staticRules, '127.:allow,RELAYCLIENT=""\n:allow\n');
    return { dir, file, config: mapConfig(file, { mta: "qmail", static: staticRules, command }) };
  }

  it("the tcprules on PATH: generated rules first, static ones last; IPv6 only if it reads them", async () => {
    const { dir, file, config } = await qmailMap();
    const probe = join(dir, "probe");
    await mkdir(probe);
    const readsIpv6 = await tcprulesReadsIpv6("tcprules", probe);
    const log = memoryLogger();
    const result = await writeMap(entries(["192.0.2.1", "2001:db8::1", "10.0.0.2"]), config, {
      log,
    });
    assert.deepEqual(result, {
      changed: true,
      entries: readsIpv6 ? 3 : 2,
      file,
      products: [`${file}.cdb`],
    });
    const ipv6Line = readsIpv6 ? '2001:db8::1:allow,RELAYCLIENT=""\n' : "";
    assert.equal(
      await readFile(file, "utf8"),
      `${HEADER}\n10.0.0.2:allow,RELAYCLIENT=""\n192.0.2.1:allow,RELAYCLIENT=""\n${ipv6Line}` +
        '127.:allow,RELAYCLIENT=""\n:allow\n',
    );
    if (!readsIpv6) {
      assert.match(
        log.lines.join(""),
        new RegExp(
          "warning: map: tcprules cannot compile IPv6 rules \\(install ucspi-tcp-ipv6\\); " +
            `1 IPv6 address\\(es\\) left out of ${file}: 2001:db8::1\n`,
        ),
      );
    }
    assert.deepEqual(await check(`${file}.cdb`, "192.0.2.1"), {
      code: 0,
      stdout: `rule 192.0.2.1:\n${RELAY}`,
      stderr: "",
    });
    assert.deepEqual(await check(`${file}.cdb`, "127.0.0.1"), {
      code: 0,
      stdout: `rule 127.:\n${RELAY}`,
      stderr: "",
    });
    assert.deepEqual(await check(`${file}.cdb`, "203.0.113.9"), {
      code: 0,
      stdout: "rule :\nallow connection\n",
      stderr: "",
    });
    assert.deepEqual(await leftovers(dir), []);
  });

  it("Debian's IPv6 tcprules: IPv6 rules in tcpserver's spelling", async (t) => {
    const tcprules = await tool(
      t,
      "POPRELAY_TEST_TCPRULES6",
      ".cache/ucspi-tcp-ipv6/usr/bin/tcprules",
    );
    if (!tcprules) return;
    const { file, config } = await qmailMap(`${tcprules} %r.cdb %r.tmp < %r`);
    const log = memoryLogger();
    const result = await writeMap(entries(["192.0.2.1", "2001:db8:0:1:1:1:1:1"]), config, { log });
    assert.equal(result.entries, 2);
    assert.doesNotMatch(log.lines.join(""), /warning/);
    // tcpserver sets TCPREMOTEIP=2001:db8::1:1:1:1:1 for this client.
    assert.deepEqual(await check(`${file}.cdb`, "2001:db8::1:1:1:1:1"), {
      code: 0,
      stdout: `rule 2001:db8::1:1:1:1:1:\n${RELAY}`,
      stderr: "",
    });
    assert.equal((await check(`${file}.cdb`, "2001:db8::2")).stdout, "rule :\nallow connection\n");
  });
});

describe("checking the installed tools", () => {
  it("asks postconf -m for the Postfix table type", async () => {
    const dir = await scratch("poprelay-maps-");
    const file = join(dir, "relay");
    assert.deepEqual(await checkPostfixMapType(mapConfig(file, { type: "lmdb" })), []);
    assert.deepEqual(await checkPostfixMapType(mapConfig(file, { type: "cdb" })), []);
    const postconf = join(dir, "postconf");
    await writeFile(postconf, "#!/bin/sh\nprintf 'btree\\ncidr\\nhash\\n'\n");
    await chmod(postconf, 0o755);
    assert.deepEqual(await checkPostfixMapType(mapConfig(file, { type: "lmdb" }), postconf), [
      "map.type: lmdb: postconf -m does not list it; install postfix-lmdb",
    ]);
    assert.deepEqual(await checkPostfixMapType(mapConfig(file, { type: "hash" }), postconf), []);
    assert.deepEqual(await checkPostfixMapType(mapConfig(file, { type: "none" }), postconf), []);
    assert.deepEqual(
      await checkPostfixMapType(mapConfig(file, { mta: "sendmail" }), "/nonexistent"),
      [],
    );
  });

  it("names a default command's program missing from PATH", async () => {
    const dir = await scratch("poprelay-maps-");
    const path = process.env.PATH;
    process.env.PATH = dir;
    try {
      await assert.rejects(checkMapTools(mapConfig(join(dir, "relay"), { mta: "sendmail" })), {
        name: "MapConfigError",
        message:
          "map.type: hash: its command needs makemap, which is not on PATH (install sendmail-bin)",
      });
      await checkMapTools(mapConfig(join(dir, "relay"), { mta: "exim" }));
    } finally {
      process.env.PATH = path;
    }
    await checkMapTools(mapConfig(join(dir, "relay"), { type: "lmdb" }));
  });
});
