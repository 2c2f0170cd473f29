import assert from "node:assert/strict";
import { appendFile, mkdir, rename, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, it, type TestContext } from "node:test";
import { mapKeys, run, scratch } from "./helpers.js";
import { startDaemon } from "./support/daemon.js";
import { dovecotSkipReason, startDovecot, waitFor } from "./support/dovecot.js";
import { ensureJournald, loggerLine } from "./support/journald.js";
import { pop3Login, smtpTryRelay } from "./support/mail-clients.js";
import { notifySocket } from "./support/notify-socket.js";
import { postfixSkipReason, startPostfix } from "./support/postfix.js";

interface Setup {
  dir: string;
  map: string;
  log: string;
}

/** A conf.d for one daemon, everything inside `dir`; `extra` is appended YAML. */
async function configure(dir: string, input: string, extra = ""): Promise<Setup> {
  const map = join(dir, "relay");
  const log = join(dir, "dovecot.log");
  await mkdir(join(dir, "conf.d"), { recursive: true });
  const yaml = [
    "agent: dovecot",
    input,
    "match:",
    // Test clients are on loopback, which the shipped defaults never grant.
    "  ignore: []",
    `spool:\n  directory: ${join(dir, "spool")}`,
    `state:\n  directory: ${join(dir, "state")}`,
    `map:\n  mta: postfix\n  file: ${map}`,
    extra,
  ].join("\n");
  await writeFile(join(dir, "conf.d", "50-test.yaml"), `${yaml}\n`);
  return { dir, map, log };
}

/** Dovecot's own log line for a POP3 login, stamped now or `agoMs` earlier. */
function loginLine(user: string, ip: string, agoMs = 0): string {
  const t = new Date(Date.now() - agoMs);
  const month = t.toLocaleString("en-US", { month: "short" });
  const stamp = `${month} ${String(t.getDate()).padStart(2, " ")} ${t.toTimeString().slice(0, 8)}`;
  return `${stamp} pop3-login: Info: Login: user=<${user}>, method=PLAIN, rip=${ip}, lip=127.0.0.1, mpid=1, session=<t>\n`;
}

function skipUnlessServers(t: TestContext): boolean {
  const reason = dovecotSkipReason() || postfixSkipReason();
  if (reason) t.skip(reason);
  return Boolean(reason);
}

describe("end to end: a Dovecot login opens Postfix relay, and the period closes it", () => {
  const cases = [
    { source: "file", client: "127.0.0.9", other: "127.0.0.10" },
    { source: "journal", client: "127.0.0.19", other: "127.0.0.20" },
  ] as const;
  for (const { source, client, other } of cases) {
    it(`${source} input`, async (t) => {
      if (skipUnlessServers(t)) return;
      if (source === "journal") {
        const reason = await ensureJournald();
        if (reason) return t.skip(reason);
      }
      const dir = await scratch("poprelay-e2e-");
      const input =
        source === "file"
          ? `input:\n  source: file\n  file: ${join(dir, "dovecot.log")}`
          : "input:\n  source: journal";
      const setup = await configure(dir, input, "relay:\n  period: 4s");
      const dovecot = await startDovecot({
        dir,
        users: { alice: "secret" },
        logPath: source === "file" ? setup.log : undefined,
      });
      t.after(() => dovecot.stop());
      const postfix = await startPostfix({ dir, relayMap: setup.map });
      t.after(() => postfix.stop());
      const smtp = (from: string) =>
        smtpTryRelay({
          port: postfix.smtpPort,
          localAddress: from,
          from: "a@client.test",
          to: "b@remote.example",
        });

      const daemon = startDaemon(dir);
      await daemon.waitForLog(/running \(notify/);
      assert.equal((await smtp(client)).accepted, false, "no relay before the login");

      const login = await pop3Login({
        port: dovecot.pop3Port,
        localAddress: client,
        user: "alice",
        password: "secret",
      });
      assert.ok(login.ok, login.transcript.join("\n"));
      const granted = await waitFor(
        "Postfix to accept relay",
        async () => ((await smtp(client)).accepted ? performance.now() : undefined),
        5000,
        20,
      );
      assert.ok(granted - login.at < 5000);
      assert.equal((await smtp(other)).accepted, false, "another address still may not relay");
      assert.deepEqual(await mapKeys(setup.map), [client]);

      // No further log line: the daemon's own timer ends the grant.
      const closed = await waitFor(
        "Postfix to refuse again",
        async () => ((await smtp(client)).accepted ? undefined : performance.now()),
        10_000,
        100,
      );
      assert.ok(
        closed - login.at >= 3000,
        `closed after ${Math.round(closed - login.at)} ms, before the 4 s period`,
      );
      assert.deepEqual(await mapKeys(setup.map), []);
      assert.equal(await daemon.stop(), 0);
    });
  }

  it("journal input: `logger -t dovecot` with a Dovecot login text grants nothing", async (t) => {
    if (skipUnlessServers(t)) return;
    const reason = await ensureJournald();
    if (reason) return t.skip(reason);
    const dir = await scratch("poprelay-spoof-");
    const setup = await configure(dir, "input:\n  source: journal", "relay:\n  period: 1m");
    const dovecot = await startDovecot({ dir, users: { alice: "secret" } });
    t.after(() => dovecot.stop());
    const daemon = startDaemon(dir);
    await daemon.waitForLog(/running \(notify/);
    await loggerLine(
      "dovecot",
      "pop3-login: Login: user=<mallory>, method=PLAIN, rip=127.0.0.66, lip=127.0.0.1, mpid=1, session=<s>",
    );
    // A real login after it: once that is granted, the spoofed line (earlier in the journal) was read.
    assert.ok(
      (
        await pop3Login({
          port: dovecot.pop3Port,
          localAddress: "127.0.0.21",
          user: "alice",
          password: "secret",
        })
      ).ok,
    );
    await waitFor("the real login in the map", async () =>
      (await mapKeys(setup.map)).includes("127.0.0.21") ? true : undefined,
    );
    // (Earlier tests' logins within the period are in the map too: the first start reads back.)
    assert.ok(!(await mapKeys(setup.map)).includes("127.0.0.66"));
    assert.equal(
      (await run("/usr/sbin/postmap", ["-q", "127.0.0.66", `hash:${setup.map}`])).stdout,
      "",
    );
    assert.equal(await daemon.stop(), 0);
  });
});

describe("crash and rotation", () => {
  it("kill -9 during a burst, the log rotated while down: every live login is granted, no expired one", async () => {
    const dir = await scratch("poprelay-crash-");
    const setup = await configure(
      dir,
      `input:\n  source: file\n  file: ${join(dir, "dovecot.log")}`,
      // Synthetic logins with no end lines: no relay beyond the period for an open session.
      "relay:\n  period: 10m\n  session_max: 10m",
    );
    await writeFile(setup.log, "");
    const ip = (i: number) => `10.0.${Math.floor(i / 200)}.${(i % 200) + 1}`;
    const expected: string[] = [];
    const write = async (from: number, to: number) => {
      let text = "";
      for (let i = from; i < to; i++) {
        text += loginLine(`user${i}`, ip(i));
        expected.push(ip(i));
      }
      await appendFile(setup.log, text);
    };

    const first = startDaemon(dir);
    await first.waitForLog(/running \(notify/);
    // A burst in small appends, killed in the middle of it.
    for (let i = 0; i < 300; i += 10) {
      await write(i, i + 10);
      if (i === 150) assert.equal(await first.stop("SIGKILL"), "SIGKILL");
    }
    // While it is down: more lines, then logrotate's rename-and-create, then lines in the new file,
    // among them logins whose period ended long ago.
    await write(300, 400);
    await rename(setup.log, `${setup.log}.1`);
    await writeFile(
      setup.log,
      loginLine("old", "10.9.9.9", 11 * 60_000) + loginLine("older", "10.9.9.8", 60 * 60_000),
    );
    await write(400, 450);

    const second = startDaemon(dir);
    await second.waitForLog(/running \(notify/);
    const want = [...new Set(expected)].sort();
    await waitFor("every live login in the map", async () =>
      JSON.stringify([...(await mapKeys(setup.map))].sort()) === JSON.stringify(want)
        ? true
        : undefined,
    ).catch((error: Error) => {
      throw new Error(`${error.message}\n${second.log()}`);
    });
    const keys = await mapKeys(setup.map);
    assert.equal(keys.length, 450);
    assert.ok(
      !keys.includes("10.9.9.9") && !keys.includes("10.9.9.8"),
      "expired logins are not granted",
    );
    assert.equal(await second.stop(), 0);
  });
});

describe("systemd protocol", () => {
  it("READY after the map is written, STATUS, WATCHDOG, reload (bad config kept out, good one applied), STOPPING", async () => {
    const dir = await scratch("poprelay-notify-");
    const setup = await configure(
      dir,
      `input:\n  source: file\n  file: ${join(dir, "dovecot.log")}`,
      // Synthetic logins with no end lines: no relay beyond the period for an open session.
      "relay:\n  period: 10m\n  session_max: 10m",
    );
    await writeFile(setup.log, "");
    const socket = await notifySocket();
    const daemon = startDaemon(dir, { NOTIFY_SOCKET: socket.path, WATCHDOG_USEC: "200000" });

    const ready = await socket.waitFor("READY", "1");
    assert.match(ready.STATUS ?? "", /^0 relays active; 0 logins seen; /);
    assert.deepEqual(await mapKeys(setup.map), [], "the map exists when READY=1 is sent");
    await socket.waitFor("WATCHDOG", "1");

    await appendFile(setup.log, loginLine("alice", "198.51.100.7"));
    await waitFor("a STATUS with the login", async () =>
      socket.messages.find((m) =>
        /1 relay active; 1 logins seen; last alice from 198\.51\.100\.7/.test(m.STATUS ?? ""),
      ),
    );

    // A broken configuration: the daemon says so and keeps running on the old one.
    const conf = join(dir, "conf.d", "60-reload.yaml");
    await writeFile(conf, "relay:\n  period: whenever\n");
    let mark = socket.messages.length;
    daemon.child.kill("SIGHUP");
    const reloading = await socket.waitFor("RELOADING", "1", mark);
    assert.match(reloading.MONOTONIC_USEC ?? "", /^\d+$/);
    const kept = await socket.waitFor("READY", "1", mark);
    assert.match(kept.STATUS ?? "", /reload failed: .*60-reload\.yaml:2: relay\.period/);
    await daemon.waitForLog(/reload failed, still running on the previous configuration/);
    await appendFile(setup.log, loginLine("bob", "203.0.113.5"));
    await waitFor("bob granted under the old configuration", async () =>
      (await mapKeys(setup.map)).includes("203.0.113.5") ? true : undefined,
    );

    // A good one: only 198.51.100.0/24 may relay from now on.
    await writeFile(conf, "match:\n  ignore: []\n  allow: [198.51.100.0/24]\n");
    mark = socket.messages.length;
    daemon.child.kill("SIGHUP");
    await socket.waitFor("RELOADING", "1", mark);
    const applied = await socket.waitFor("READY", "1", mark);
    assert.doesNotMatch(applied.STATUS ?? "", /reload failed/);
    await appendFile(
      setup.log,
      loginLine("carol", "203.0.113.6") + loginLine("dave", "198.51.100.8"),
    );
    await waitFor("dave granted", async () =>
      (await mapKeys(setup.map)).includes("198.51.100.8") ? true : undefined,
    );
    assert.deepEqual(await mapKeys(setup.map), ["198.51.100.7", "198.51.100.8", "203.0.113.5"]);

    mark = socket.messages.length;
    assert.equal(await daemon.stop(), 0);
    await socket.waitFor("STOPPING", "1", mark);
  });
});
