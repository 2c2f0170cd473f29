import assert from "node:assert/strict";
import { appendFile, mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, it } from "node:test";
import { mapKeys, run, scratch } from "./helpers.js";
import { startDaemon } from "./support/daemon.js";
import { waitFor } from "./support/dovecot.js";
import {
  countLogins,
  dovecotFailedLogin,
  dovecotLogin,
  formatCounts,
} from "./support/login-counts.js";
import { REDIS_CLI, redisSkipReason, startRedis } from "./support/redis.js";

const NS = "faults";
const LOGINS = 20;

/** One host's conf.d under `dir`, with its own state directory. */
async function host(dir: string, lines: string[]): Promise<string> {
  await mkdir(join(dir, "conf.d"), { recursive: true });
  const yaml = [...lines, `state:\n  directory: ${join(dir, "state")}`].join("\n");
  await writeFile(join(dir, "conf.d", "50-test.yaml"), `${yaml}\n`);
  return dir;
}

describe("Redis comes back empty: no live login is lost", { timeout: 240_000 }, () => {
  it("restarted without persistence, FLUSHDB, and a POP host killed meanwhile", async (t) => {
    const reason = redisSkipReason();
    if (reason) return t.skip(reason);
    const dir = await scratch("poprelay-faults-redis-");
    await mkdir(join(dir, "redis"));
    // No persistence at all: a restart brings Redis back empty.
    const redis = await startRedis(join(dir, "redis"), {
      args: () => ["--appendonly", "no", "--save", ""],
    });
    t.after(() => redis.stop());
    const cli = (...args: string[]) => run(REDIS_CLI, ["-p", String(redis.port), "--raw", ...args]);
    /** The addresses Redis holds now (what a host starting now would read). */
    const inRedis = async () =>
      (await cli("ZRANGE", `{${NS}}:index`, "0", "-1")).stdout.split("\n").filter(Boolean);

    const spool = [
      "spool:",
      "  backend: redis",
      "  redis:",
      `    url: ${redis.url}`,
      `    namespace: ${NS}`,
      "    timeout: 1s",
    ].join("\n");
    const log = join(dir, "pop", "dovecot.log");
    const pop = await host(join(dir, "pop"), [
      "agent: dovecot",
      `input:\n  source: file\n  file: ${log}`,
      "match:\n  ignore: []",
      "relay:\n  period: 1h",
      spool,
      "map:\n  mta: none",
    ]);
    await writeFile(log, "");
    const smtpMap = join(dir, "smtp", "relay");
    const smtp = await host(join(dir, "smtp"), [
      "input:\n  source: none",
      spool,
      `map:\n  mta: plain\n  file: ${smtpMap}`,
    ]);

    let popHost = startDaemon(pop, {}, "dovecot");
    const smtpHost = startDaemon(smtp, {}, "smtp");
    await popHost.waitForLog(/running \(notify/);
    await smtpHost.waitForLog(/running \(notify/);

    const written: string[] = [];
    for (let i = 1; i <= LOGINS; i++) {
      const ip = `192.0.2.${i}`;
      written.push(ip);
      // A failed login from another address beside each: never granted.
      await appendFile(
        log,
        dovecotLogin(`u${i}`, ip) + dovecotFailedLogin(`x${i}`, `198.51.100.${i}`),
      );
    }
    const all = (keys: string[]) => written.every((ip) => keys.includes(ip));
    await waitFor("the SMTP host's map to hold every login", async () =>
      all(await mapKeys(smtpMap)) ? true : undefined,
    );

    // The SMTP host's map is sampled all along: a login missing from it at any moment is lost.
    let missing = new Set<string>();
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        const keys = await mapKeys(smtpMap);
        for (const ip of written) if (!keys.includes(ip)) missing.add(ip);
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    })();
    const scenario = async (name: string, fault: () => Promise<void>) => {
      missing = new Set();
      await fault();
      await waitFor(
        `${name}: Redis to hold every live login again`,
        async () => (all(await inRedis()) ? true : undefined),
        30_000,
        100,
      );
      // Granted: in the map at the end and at every sample meanwhile.
      const keys = await mapKeys(smtpMap);
      const counts = countLogins(
        name,
        written,
        keys.filter((ip) => !missing.has(ip)),
      );
      t.diagnostic(formatCounts(counts));
      assert.equal(
        counts.lost,
        0,
        `lost on the SMTP host: ${counts.lostAddresses.join(", ")}\n--- SMTP host ---\n${smtpHost.log()}\n--- POP host ---\n${popHost.log()}`,
      );
      assert.equal(counts.wrong, 0, `wrongly granted: ${counts.wrongAddresses.join(", ")}`);
      const fresh = countLogins(`${name}, Redis itself`, written, await inRedis());
      t.diagnostic(formatCounts(fresh));
      assert.equal(fresh.lost + fresh.wrong, 0);
    };

    await scenario("Redis restarted without persistence", async () => {
      await redis.stop();
      // Empty when it starts: the POP host publishes its logins again as soon as it connects.
      await redis.start();
    });
    await popHost.waitForLog(/live logins granted here published again/);
    await smtpHost.waitForLog(/came back with another state/);

    await scenario("FLUSHDB", async () => {
      const flushed = await cli("FLUSHDB");
      assert.equal(flushed.stdout.trim(), "OK");
    });

    await scenario(
      "the POP host killed, Redis restarted empty, the POP host started again",
      async () => {
        assert.equal(await popHost.stop("SIGKILL"), "SIGKILL");
        await redis.stop();
        await redis.start();
        popHost = startDaemon(pop, {}, "dovecot");
        await popHost.waitForLog(/running \(notify/);
      },
    );

    sampling = false;
    await sampler;
    assert.equal(await popHost.stop(), 0);
    assert.equal(await smtpHost.stop(), 0);
  });
});
