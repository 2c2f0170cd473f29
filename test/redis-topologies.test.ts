/**
 * The shared state through each way of reaching Redis the configuration offers: TLS with a
 * password and a private CA, Sentinel, and Cluster, each with real redis-server processes.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, it, type TestContext } from "node:test";
import { promisify } from "node:util";
import type { RedisConfig } from "../src/config/types.js";
import { memoryLogger } from "../src/log.js";
import type { RedisSpoolStore } from "../src/spool/redis/store.js";
import { scratch } from "./helpers.js";
import { waitFor } from "./support/dovecot.js";
import { freePort, REDIS_CLI, redisSkipReason, redisStore, startRedis } from "./support/redis.js";

const exec = promisify(execFile);

const entry = (ip: string) => {
  const login = Date.now();
  return { ip, user: "alice", agent: "dovecot", login, expires: login + 600_000 };
};

const base: RedisConfig = {
  url: "redis://127.0.0.1:6379/0",
  namespace: "topology",
  sentinels: [],
  name: "mymaster",
  cluster: [],
  ca: "",
  timeout: 2,
  backlog: 10,
};

/** A follower (a daemon's view) and a direct store (the command line's) on the same Redis. */
function stores(t: TestContext, dir: string, redis: RedisConfig) {
  const log = memoryLogger();
  const follower = redisStore({ redis, dir, name: "follower", log, backlog: 10 });
  const direct = redisStore({ redis, dir, name: "cli", log });
  t.after(async () => {
    await follower.close();
    await direct.close();
  });
  return { follower, direct, log };
}

/** A put through one store shows in the other's list, and the follower knows it at once. */
async function roundTrip(follower: RedisSpoolStore, direct: RedisSpoolStore, log: string[]) {
  await follower.opened();
  assert.ok(follower.known(), `the follower read the state\n${log.join("\n")}`);
  await direct.put([entry("192.0.2.44")]);
  await waitFor("the follower to see the put", async () =>
    (await follower.list()).some((e) => e.ip === "192.0.2.44") ? true : undefined,
  );
  await follower.put([entry("2001:db8::44")]);
  assert.deepEqual(
    (await direct.list()).map((e) => e.ip),
    ["192.0.2.44", "2001:db8::44"],
  );
  assert.deepEqual(await direct.remove(["192.0.2.44"]), ["192.0.2.44"]);
  await waitFor("the follower to see the removal", async () =>
    (await follower.list()).length === 1 ? true : undefined,
  );
}

// A client that never connects must fail the test, not hold the run until its time limit.
describe("ways to reach Redis", { timeout: 60_000 }, () => {
  it("rediss:// with a password and a private CA", async (t) => {
    const reason = redisSkipReason();
    if (reason) return t.skip(reason);
    const dir = await scratch("poprelay-redis-tls-");
    const file = (name: string) => join(dir, name);
    const openssl = (...args: string[]) => exec("openssl", args, { cwd: dir });
    await openssl(
      "req",
      "-x509",
      "-newkey",
      "rsa:2048",
      "-nodes",
      "-days",
      "2",
      "-subj",
      "/CN=test CA",
      "-keyout",
      "ca.key",
      "-out",
      "ca.pem",
    );
    await openssl(
      "req",
      "-newkey",
      "rsa:2048",
      "-nodes",
      "-subj",
      "/CN=127.0.0.1",
      "-keyout",
      "server.key",
      "-out",
      "server.csr",
    );
    await writeFile(file("san.ext"), "subjectAltName=IP:127.0.0.1\n");
    await openssl(
      "x509",
      "-req",
      "-in",
      "server.csr",
      "-CA",
      "ca.pem",
      "-CAkey",
      "ca.key",
      "-CAcreateserial",
      "-days",
      "2",
      "-extfile",
      "san.ext",
      "-out",
      "server.pem",
    );
    const redis = await startRedis(dir, {
      args: (port) => [
        "--port",
        "0",
        "--tls-port",
        String(port),
        "--tls-cert-file",
        file("server.pem"),
        "--tls-key-file",
        file("server.key"),
        "--tls-ca-cert-file",
        file("ca.pem"),
        "--tls-auth-clients",
        "no",
        "--requirepass",
        "s3cret",
      ],
    });
    t.after(() => redis.stop());
    const url = `rediss://:s3cret@127.0.0.1:${redis.port}/0`;
    const { follower, direct, log } = stores(t, dir, { ...base, url, ca: file("ca.pem") });
    await roundTrip(follower, direct, log.lines);

    // Without the CA the certificate is refused; with a wrong password, so is the login.
    for (const [config, error] of [
      [{ ...base, url }, /certificate/i],
      [
        { ...base, url: url.replace("s3cret", "wrong"), ca: file("ca.pem") },
        /WRONGPASS|invalid password/i,
      ],
    ] as const) {
      const store = redisStore({ redis: config, dir, name: "x" });
      t.after(() => store.close());
      await assert.rejects(store.list(), (e: Error) => {
        assert.match(e.message, error);
        assert.doesNotMatch(e.message, /s3cret|wrong@/, "the password is never shown");
        return true;
      });
    }
  });

  it("Sentinel names the master", async (t) => {
    const reason = redisSkipReason();
    if (reason) return t.skip(reason);
    const dir = await scratch("poprelay-redis-sentinel-");
    await mkdir(join(dir, "master"));
    await mkdir(join(dir, "sentinel"));
    const master = await startRedis(join(dir, "master"));
    t.after(() => master.stop());
    const conf = join(dir, "sentinel", "sentinel.conf");
    await writeFile(
      conf,
      [
        `sentinel monitor poprelay-test 127.0.0.1 ${master.port} 1`,
        "sentinel down-after-milliseconds poprelay-test 5000",
        "",
      ].join("\n"),
    );
    const sentinel = await startRedis(join(dir, "sentinel"), {
      configFile: conf,
      args: () => ["--sentinel"],
      ready: /\+monitor master poprelay-test/,
    });
    t.after(() => sentinel.stop());
    const { follower, direct, log } = stores(t, dir, {
      ...base,
      // Sentinel says where the master is: the url's host and port are not used.
      url: "redis://127.0.0.1:1/0",
      sentinels: [`127.0.0.1:${sentinel.port}`],
      name: "poprelay-test",
    });
    await roundTrip(follower, direct, log.lines);
  });

  it("Cluster: the namespace's keys share one slot, and the change feed reaches every node", async (t) => {
    const reason = redisSkipReason();
    if (reason) return t.skip(reason);
    const dir = await scratch("poprelay-redis-cluster-");
    const ports = [await freePort(), await freePort(), await freePort()];
    for (const [i, port] of ports.entries()) {
      await mkdir(join(dir, `node${i}`));
      const node = await startRedis(join(dir, `node${i}`), {
        port,
        args: () => ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"],
      });
      t.after(() => node.stop());
    }
    const nodes = ports.map((p) => `127.0.0.1:${p}`);
    await exec(REDIS_CLI, [
      "--cluster",
      "create",
      ...nodes,
      "--cluster-replicas",
      "0",
      "--cluster-yes",
    ]);
    await waitFor(
      "the cluster to be up",
      async () => {
        // Every node, not only the first: a client may start from any of them.
        for (const port of ports) {
          const { stdout } = await exec(REDIS_CLI, ["-p", String(port), "cluster", "info"]);
          if (!stdout.includes("cluster_state:ok")) return undefined;
        }
        return true;
      },
      20_000,
      200,
    );
    const { follower, direct, log } = stores(t, dir, { ...base, cluster: nodes });
    await roundTrip(follower, direct, log.lines);
  });
});
