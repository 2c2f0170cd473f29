import assert from "node:assert/strict";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, it } from "node:test";
import { mapKeys, scratch } from "./helpers.js";
import { startDaemon } from "./support/daemon.js";
import { dovecotSkipReason, startDovecot, waitFor } from "./support/dovecot.js";
import { pop3Login, relayAccepted } from "./support/mail-clients.js";
import { postfixSkipReason, startPostfix } from "./support/postfix.js";
import { freePort, redisSkipReason, startRedis } from "./support/redis.js";

/** One host's conf.d under `dir`: the lines given, plus its own state directory. */
async function host(dir: string, lines: string[]): Promise<string> {
  await mkdir(join(dir, "conf.d"), { recursive: true });
  const yaml = [...lines, `state:\n  directory: ${join(dir, "state")}`].join("\n");
  await writeFile(join(dir, "conf.d", "50-test.yaml"), `${yaml}\n`);
  return dir;
}

describe("several hosts: a login on a POP host opens relay on an SMTP host, through Redis", {
  timeout: 180_000,
}, () => {
  it("Dovecot on host A, Postfix with check_policy_service on host B, Redis restarted between", async (t) => {
    const reason = dovecotSkipReason() || postfixSkipReason() || redisSkipReason();
    if (reason) return t.skip(reason);
    const dir = await scratch("poprelay-hosts-");
    await mkdir(join(dir, "redis"));
    const redis = await startRedis(join(dir, "redis"));
    t.after(() => redis.stop());
    const spool = [
      "spool:",
      "  backend: redis",
      "  redis:",
      `    url: ${redis.url}`,
      "    namespace: test-hosts",
      "    timeout: 1s",
    ].join("\n");
    const period = 8000;

    // Host A: POP only. Reads Dovecot's log, keeps no map.
    const dovecotLog = join(dir, "a", "dovecot.log");
    const a = await host(join(dir, "a"), [
      "agent: dovecot",
      `input:\n  source: file\n  file: ${dovecotLog}`,
      // Test clients are on loopback, which the shipped defaults never grant.
      "match:\n  ignore: []",
      // No relay while connected here: a session that ends while Redis is down is not recorded
      // (the follower cannot see the login it keeps on disk), so it would last session_max.
      `relay:\n  period: ${period / 1000}s\n  session_max: ${period / 1000}s`,
      spool,
      "map:\n  mta: none",
    ]);
    // Host B: SMTP only. No input; its map and its policy service follow Redis.
    const policyPort = await freePort();
    const bMap = join(dir, "b", "relay");
    const b = await host(join(dir, "b"), [
      "input:\n  source: none",
      spool,
      `map:\n  mta: postfix\n  file: ${bMap}`,
      `policy:\n  listen: inet:127.0.0.1:${policyPort}`,
    ]);

    const dovecot = await startDovecot({ dir, users: { alice: "secret" }, logPath: dovecotLog });
    t.after(() => dovecot.stop());
    // Postfix asks B's policy service only: it needs no map file.
    const postfix = await startPostfix({
      dir,
      policyService: `inet:127.0.0.1:${policyPort}`,
    });
    t.after(() => postfix.stop());
    const relays = (from: string) => relayAccepted(postfix.smtpPort, from);
    const login = async (from: string) => {
      const result = await pop3Login({
        port: dovecot.pop3Port,
        localAddress: from,
        user: "alice",
        password: "secret",
      });
      assert.ok(result.ok, result.transcript.join("\n"));
      return result.at;
    };

    const hostA = startDaemon(a, {}, "dovecot");
    const hostB = startDaemon(b, {}, "smtp");
    await hostA.waitForLog(/running \(notify/);
    await hostB.waitForLog(/running \(notify/);
    assert.equal(await relays("127.0.0.9"), false, "no relay before the login");

    const at = await login("127.0.0.9");
    const opened = await waitFor(
      "B's Postfix to accept relay",
      async () => ((await relays("127.0.0.9")) ? performance.now() : undefined),
      5000,
      10,
    );
    t.diagnostic(`login on A → relay accepted on B: ${Math.round(opened - at)} ms`);
    assert.ok(opened - at < 1000, `relay opened ${Math.round(opened - at)} ms after the login`);
    assert.equal(await relays("127.0.0.10"), false, "another address still may not relay");
    await waitFor("B's map to hold the address", async () =>
      (await mapKeys(bMap)).includes("127.0.0.9") ? true : undefined,
    );

    // Redis goes away: nothing is lost, nothing opens, and both hosts say so.
    await redis.stop();
    await hostA.waitForLog(/unreachable/);
    await hostB.waitForLog(/unreachable/);
    const during = await login("127.0.0.11");
    await hostA.waitForLog(/kept on disk until it answers/);
    assert.equal(await relays("127.0.0.11"), false, "no relay while the state is unknown");
    assert.equal(await relays("127.0.0.9"), true, "B keeps what it knew");

    await redis.start();
    await waitFor(
      "the login made while Redis was down to open relay on B",
      async () => ((await relays("127.0.0.11")) ? true : undefined),
      15_000,
      50,
    );
    await hostA.waitForLog(/sent 1 logins kept on disk/);

    // The period ends each grant on B, with no further log line.
    const closed = await waitFor(
      "B's Postfix to refuse 127.0.0.9 again",
      async () => ((await relays("127.0.0.9")) ? undefined : performance.now()),
      period + 10_000,
      100,
    );
    assert.ok(
      closed - at >= period - 1000,
      `closed ${Math.round(closed - at)} ms after the login, before the period`,
    );
    await waitFor(
      "B's Postfix to refuse 127.0.0.11 again",
      async () => ((await relays("127.0.0.11")) ? undefined : true),
      period + 10_000,
      100,
    );
    assert.ok(performance.now() - during >= period - 1000);
    // The policy service stops answering OK at the expiry itself; the map follows its timer.
    await waitFor("B's map to be empty", async () =>
      (await mapKeys(bMap)).length === 0 ? true : undefined,
    ).catch((error: Error) => {
      throw new Error(`${error.message}\n--- host B ---\n${hostB.log()}`);
    });
    assert.equal(await hostA.stop(), 0);
    assert.equal(await hostB.stop(), 0);
  });
});
