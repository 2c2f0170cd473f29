/**
 * Proves the real-parts harness: a private Postfix that decides relay from poprelay's map, a
 * private Dovecot that logs POP3 logins, and the protocol clients, all on loopback. Uses the
 * admin CLI (`poprelay add/remove`), not the daemon. Outside CI a missing Dovecot or Postfix
 * (or not being root) skips; under CI=true it fails.
 */
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { after, before, describe, it } from "node:test";
import { poprelay, sandbox } from "./helpers.js";
import {
  type Dovecot,
  dovecotSkipReason,
  groupMembers,
  startDovecot,
  waitForLogLine,
} from "./support/dovecot.js";
import { pop3Login, smtpTryRelay } from "./support/mail-clients.js";
import { type Postfix, postfixSkipReason, startPostfix } from "./support/postfix.js";

const tryRelay = (postfix: Postfix, localAddress: string) =>
  smtpTryRelay({
    port: postfix.smtpPort,
    localAddress,
    from: "alice@client.test",
    to: "bob@remote.example",
  });

const RELAY_DENIED = /^5\.7\.1 <bob@remote\.example>: Relay access denied$/;

/** A server's scratch dir, removed by the caller's after() once the server is stopped. */
const serverDir = () => mkdtemp(join(tmpdir(), "poprelay-harness-"));

// At the top level, not in before(): node:test runs an after() registered inside a before()
// hook (scratch() registers one) as soon as that hook ends.
const config = await sandbox();

describe("Postfix harness: relay decided by poprelay's map", { skip: postfixSkipReason() }, () => {
  let dir = "";
  let postfix: Postfix | undefined;
  before(async () => {
    dir = await serverDir();
    // check: the package's own integrity check passes on the harness's layout.
    postfix = await startPostfix({ dir, relayMap: config.map, check: true });
  });
  after(async () => {
    await postfix?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });
  const pf = () => {
    assert.ok(postfix, "Postfix did not start");
    return postfix;
  };

  it("refuses relay, honours `poprelay add`, refuses again after `poprelay remove`", async () => {
    const refused = await tryRelay(pf(), "127.0.0.9");
    assert.equal(refused.accepted, false, refused.transcript.join("\n"));
    assert.equal(refused.code, 554);
    assert.match(refused.text, RELAY_DENIED);

    const add = await poprelay(["add", "127.0.0.9", "--config-dir", config.dir]);
    assert.equal(add.code, 0, add.stderr);
    const granted = await tryRelay(pf(), "127.0.0.9");
    assert.equal(granted.accepted, true, granted.transcript.join("\n"));
    assert.equal(granted.code, 250);
    const stranger = await tryRelay(pf(), "127.0.0.10");
    assert.equal(stranger.accepted, false);
    assert.match(stranger.text, RELAY_DENIED);

    const remove = await poprelay(["remove", "127.0.0.9", "--config-dir", config.dir]);
    assert.equal(remove.code, 0, remove.stderr);
    const again = await tryRelay(pf(), "127.0.0.9");
    assert.equal(again.accepted, false, again.transcript.join("\n"));
    assert.match(again.text, RELAY_DENIED);

    // What Postfix itself logged: the client address it judged, and the map reload.
    const log = await readFile(pf().logFile, "utf8");
    assert.match(log, /NOQUEUE: reject: RCPT from unknown\[127\.0\.0\.9\]: 554 5\.7\.1/);
    assert.match(log, /table hash:\S+\/relay\(.*\) has changed -- restarting/);
  });

  it("measures how soon smtpd honours a replaced map (a diagnostic, not an assertion)", async (t) => {
    // Each try runs the CLI twice (~0.5 s each); raise this to measure more.
    const tries = Number(process.env.POPRELAY_RELAY_DELAY_TRIES ?? 5);
    const delays = {
      grant: [] as number[],
      revoke: [] as number[],
      unchanged: [] as number[],
      attempts: [] as number[],
    };
    const until = async (ip: string, want: boolean, since: number) => {
      for (let attempt = 1; ; attempt++) {
        const result = await tryRelay(pf(), ip);
        if (result.accepted === want) return { ms: result.at - since, attempt };
        assert.ok(result.at - since < 10_000, `map change not honoured after 10 s (${ip})`);
      }
    };
    for (let i = 0; i < tries; i++) {
      const add = await poprelay(["add", "127.0.0.9", "--config-dir", config.dir]);
      assert.equal(add.code, 0, add.stderr);
      const granted = await until("127.0.0.9", true, performance.now());
      delays.grant.push(granted.ms);
      delays.attempts.push(granted.attempt);
      // The same session against an unchanged map (an smtpd process is reused): the baseline.
      const start = performance.now();
      delays.unchanged.push((await tryRelay(pf(), "127.0.0.9")).at - start);
      const remove = await poprelay(["remove", "127.0.0.9", "--config-dir", config.dir]);
      assert.equal(remove.code, 0, remove.stderr);
      const revoked = await until("127.0.0.9", false, performance.now());
      delays.revoke.push(revoked.ms);
      delays.attempts.push(revoked.attempt);
    }
    const summary = (values: number[]) => {
      const sorted = [...values].sort((a, b) => a - b);
      const pick = (q: number) =>
        sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
      const fmt = (v: number | undefined) => (v ?? Number.NaN).toFixed(1);
      return `min ${fmt(sorted[0])} median ${fmt(pick(0.5))} p90 ${fmt(pick(0.9))} max ${fmt(sorted.at(-1))} ms`;
    };
    t.diagnostic(`${tries} tries; CLI returned → first 250: ${summary(delays.grant)}`);
    t.diagnostic(`CLI returned → first 554 again: ${summary(delays.revoke)}`);
    t.diagnostic(`same session, map unchanged: ${summary(delays.unchanged)}`);
    t.diagnostic(`SMTP sessions needed per change: max ${Math.max(...delays.attempts)}`);
  });

  it("a second instance runs side by side with its own map and port, and stops cleanly", async () => {
    const other = await sandbox();
    const otherDir = await serverDir();
    try {
      assert.equal((await poprelay(["add", "127.0.0.10", "--config-dir", other.dir])).code, 0);
      const second = await startPostfix({ dir: otherDir, relayMap: other.map });
      assert.notEqual(second.smtpPort, pf().smtpPort);
      assert.equal((await tryRelay(second, "127.0.0.10")).accepted, true);
      assert.equal((await tryRelay(second, "127.0.0.9")).accepted, false);
      assert.equal((await tryRelay(pf(), "127.0.0.10")).accepted, false);
      await second.stop();
      assert.deepEqual(groupMembers(second.pid), []);
      await assert.rejects(tryRelay(second, "127.0.0.10"), /ECONNREFUSED/);
      assert.equal((await tryRelay(pf(), "127.0.0.9")).accepted, false, "the first one still runs");
    } finally {
      await rm(otherDir, { recursive: true, force: true });
    }
  });
});

describe("Dovecot harness: POP3 logins and their log lines", { skip: dovecotSkipReason() }, () => {
  let dir = "";
  let dovecot: Dovecot | undefined;
  before(async () => {
    dir = await serverDir();
    dovecot = await startDovecot({
      dir,
      logPath: join(dir, "dovecot.log"),
      users: { alice: "secret", bob: "hunter2" },
    });
  });
  after(async () => {
    await dovecot?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });
  const dc = () => {
    assert.ok(dovecot, "Dovecot did not start");
    return dovecot;
  };
  const STAMP = String.raw`^[A-Z][a-z]{2} \d{2} \d{2}:\d{2}:\d{2} `;

  it("a passwd-file user logs in from 127.0.0.9, and Dovecot's log says rip=127.0.0.9", async () => {
    const login = await pop3Login({
      port: dc().pop3Port,
      localAddress: "127.0.0.9",
      user: "alice",
      password: "secret",
    });
    assert.equal(login.ok, true, login.transcript.join("\n"));
    assert.equal(login.reply, "+OK Logged in.");
    assert.match(login.lines[0] ?? "", /^\+OK Dovecot .*ready\.$/);
    assert.ok(login.at > 0);
    const logFile = dc().logFile ?? "";
    await waitForLogLine(
      logFile,
      new RegExp(
        `${STAMP}pop3-login: Info: Login: user=<alice>, method=PLAIN, rip=127\\.0\\.0\\.9, lip=127\\.0\\.0\\.1, mpid=\\d+, session=<[^>]+>$`,
      ),
    );
    await waitForLogLine(
      logFile,
      new RegExp(`${STAMP}pop3\\(alice\\)<\\d+><[^>]+>: Info: Disconnected: Logged out top=0/0`),
    );
  });

  it("a wrong password fails, and is logged as a failure, not a login", async () => {
    const login = await pop3Login({
      port: dc().pop3Port,
      localAddress: "127.0.0.10",
      user: "bob",
      password: "wrong",
    });
    assert.equal(login.ok, false);
    assert.equal(login.reply, "-ERR [AUTH] Authentication failed.");
    const logFile = dc().logFile ?? "";
    await waitForLogLine(
      logFile,
      /pop3-login: Info: Disconnected: Aborted login by logging out \(auth failed, 1 attempts in \d+ secs\): user=<bob>, method=PLAIN, rip=127\.0\.0\.10, lip=127\.0\.0\.1, session=<[^>]+>$/,
    );
    const log = await readFile(logFile, "utf8");
    assert.doesNotMatch(log, /Login: user=<bob>/);
    assert.doesNotMatch(log, /rip=127\.0\.0\.1,/, "readiness is judged without connecting");
  });

  it("a second instance logging to syslog runs side by side and stops cleanly", async () => {
    const otherDir = await serverDir();
    try {
      // Whether or not /dev/log exists: without a listener Dovecot's syslog lines are dropped.
      const second = await startDovecot({
        dir: otherDir,
        users: { carol: "pw" },
        authFailureDelay: "0",
      });
      assert.notEqual(second.pop3Port, dc().pop3Port);
      assert.equal(second.logFile, undefined);
      const ok = await pop3Login({
        port: second.pop3Port,
        localAddress: "127.0.0.11",
        user: "carol",
        password: "pw",
        end: "close",
      });
      assert.equal(ok.ok, true, ok.transcript.join("\n"));
      const bad = await pop3Login({
        port: second.pop3Port,
        localAddress: "127.0.0.11",
        user: "alice",
        password: "secret",
      });
      assert.equal(bad.ok, false, "each instance has its own users");
      await second.stop();
      assert.deepEqual(groupMembers(second.pid), []);
      await assert.rejects(
        pop3Login({ port: second.pop3Port, localAddress: "127.0.0.11", user: "x", password: "y" }),
        /ECONNREFUSED/,
      );
    } finally {
      await rm(otherDir, { recursive: true, force: true });
    }
  });
});
