import assert from "node:assert/strict";
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { Redis } from "ioredis";
import type { RedisConfig } from "../src/config/types.js";
import { memoryLogger } from "../src/log.js";
import { parseRedisUrl, redactRedisUrl } from "../src/spool/redis/address.js";
import { parseFeedMessage } from "../src/spool/redis/feed.js";
import type { SpoolEntry } from "../src/spool/types.js";
import { configDir, poprelay, scratch } from "./helpers.js";
import { waitFor } from "./support/dovecot.js";
import { type RedisServer, redisSkipReason, redisStore, startRedis } from "./support/redis.js";

const entry = (ip: string, loginAgoMs = 0, user = "alice", periodMs = 600_000): SpoolEntry => {
  const login = Date.now() - loginAgoMs;
  return { ip, user, agent: "dovecot", login, expires: login + periodMs };
};

const ips = (entries: readonly SpoolEntry[]) => entries.map((e) => e.ip);

describe("redis settings", () => {
  it("reads redis:// and rediss:// URLs, and refuses what is not one", () => {
    assert.deepEqual(parseRedisUrl("rediss://:s%40cret@redis.example:6380/2"), {
      tls: true,
      host: "redis.example",
      port: 6380,
      username: undefined,
      password: "s@cret",
      db: 2,
    });
    assert.equal(parseRedisUrl("redis://[::1]").host, "::1");
    assert.equal(parseRedisUrl("redis://127.0.0.1").port, 6379);
    for (const bad of ["http://x", "redis://", "redis://h:99999", "redis://h/x", "redis://h?a=1"])
      assert.throws(() => parseRedisUrl(bad), TypeError, bad);
  });

  it("never shows the password", () => {
    assert.equal(redactRedisUrl("redis://:secret@h:1/0"), "redis://:***@h:1/0");
    assert.equal(redactRedisUrl("redis://h:1/0"), "redis://h:1/0");
  });

  it("takes from the change channel only changes it can check", () => {
    const login = "2026-11-24T10:00:00.000Z";
    const good = { user: "a", agent: "dovecot", login, expires: login };
    assert.deepEqual(
      parseFeedMessage(JSON.stringify({ v: 3, op: "put", entries: { "192.0.2.1": good } }))
        ?.version,
      3,
    );
    for (const bad of [
      "not json",
      JSON.stringify({ v: 0, op: "remove", ips: [] }),
      JSON.stringify({ v: 1, op: "put", entries: { "0x7f.1": good } }),
      JSON.stringify({ v: 1, op: "put", entries: { "192.0.2.1": { ...good, login: 5 } } }),
      JSON.stringify({ v: 1, op: "remove", ips: ["192.0.2.1; rm -rf /"] }),
      JSON.stringify({ v: 1, op: "drop" }),
    ])
      assert.equal(parseFeedMessage(bad), undefined, bad);
  });
});

describe("redis spool", { timeout: 120_000 }, () => {
  let server: RedisServer;
  let dir: string;
  let admin: Redis;
  let namespaces = 0;

  before(async () => {
    const reason = redisSkipReason();
    if (reason) return;
    dir = await scratch("poprelay-redis-");
    server = await startRedis(dir);
    admin = new Redis(server.port, "127.0.0.1");
  });
  after(async () => {
    admin?.disconnect();
    await server?.stop();
  });

  const config = (namespace: string): RedisConfig => ({
    url: server.url,
    namespace,
    sentinels: [],
    name: "mymaster",
    cluster: [],
    ca: "",
    timeout: 1,
    backlog: 3,
  });

  /** A store on a namespace of its own; `follow` makes it a daemon's follower with a backlog. */
  function open(namespace: string, follow = false) {
    const log = memoryLogger();
    const store = redisStore({
      redis: config(namespace),
      dir,
      name: namespace,
      log,
      backlog: follow ? 3 : undefined,
    });
    after(() => store.close());
    return { store, log };
  }
  const namespace = () => `test${++namespaces}`;

  it("stores entries under the namespace, each key expiring with its entry", async (t) => {
    const reason = redisSkipReason();
    if (reason) return t.skip(reason);
    {
      const ns = namespace();
      const { store } = open(ns);
      const e = entry("198.51.100.7");
      assert.deepEqual(ips(await store.put([e, entry("2001:db8::1")])), [
        "198.51.100.7",
        "2001:db8::1",
      ]);
      const pexpire = await admin.pexpiretime(`{${ns}}:entry:198.51.100.7`);
      assert.ok(Math.abs(pexpire - e.expires) <= 1, `expires at ${pexpire}, entry ${e.expires}`);
      assert.deepEqual(ips(await store.list()), ["198.51.100.7", "2001:db8::1"]);
      assert.equal((await store.list())[0]?.user, "alice");
      // Another namespace on the same Redis sees none of it.
      assert.deepEqual(await open(namespace()).store.list(), []);
    }
  });

  it("keeps the later login, whatever order they arrive in", async (t) => {
    const reason = redisSkipReason();
    if (reason) return t.skip(reason);
    const { store } = open(namespace());
    const newer = entry("192.0.2.5", 0, "new");
    const older = entry("192.0.2.5", 60_000, "old");
    await store.put([newer]);
    assert.deepEqual(await store.put([older]), [], "an older login changes nothing");
    assert.deepEqual(await store.put([newer]), [], "a replay changes nothing");
    assert.equal((await store.list())[0]?.user, "new");
    // A session's end replaces the entry as it is, shorter: one script, no instant without it.
    const ended = { ...newer, expires: newer.login + 1000 };
    assert.deepEqual(await store.put([ended], { replace: true }), [ended]);
    assert.equal((await store.list())[0]?.expires, ended.expires);
  });

  it("removes, expires and wipes", async (t) => {
    const reason = redisSkipReason();
    if (reason) return t.skip(reason);
    const { store } = open(namespace());
    await store.put([entry("192.0.2.1"), entry("192.0.2.2"), entry("192.0.2.3", 0, "x", 300)]);
    assert.deepEqual(await store.remove(["192.0.2.1", "192.0.2.9"]), ["192.0.2.1"]);
    await new Promise((resolve) => setTimeout(resolve, 400));
    // Redis dropped the short entry's key by itself; clean tidies the index and counts it.
    assert.deepEqual(ips(await store.list()), ["192.0.2.2"]);
    assert.deepEqual(ips(await store.removeExpired(Date.now())), ["192.0.2.3"]);
    assert.equal(await store.wipe(), 1);
    assert.deepEqual(await store.list(), []);
  });

  it("refuses an address that is not canonical before it reaches Redis", async (t) => {
    const reason = redisSkipReason();
    if (reason) return t.skip(reason);
    const { store } = open(namespace());
    await assert.rejects(store.put([entry("010.0.0.1")]), /canonical/);
    await assert.rejects(store.remove(["1.2.3.4\r\nFLUSHALL"]), /canonical/);
  });

  it("a follower sees another host's changes at once, and a forged message changes nothing", async (t) => {
    const reason = redisSkipReason();
    if (reason) return t.skip(reason);
    const ns = namespace();
    const { store: follower, log } = open(ns, true);
    const { store: other } = open(ns);
    await follower.opened();
    assert.ok(follower.known());
    let changes = 0;
    follower.watch(() => changes++);
    await other.put([entry("203.0.113.4")]);
    await waitFor("the change to arrive", async () =>
      (await follower.list()).length === 1 ? true : undefined,
    );
    assert.ok(changes >= 1);
    await admin.publish(`{${ns}}:changes`, '{"v":99,"op":"remove","ips":"203.0.113.4"}');
    await admin.publish(`{${ns}}:changes`, "garbage");
    await waitFor("the forged message to be logged", () =>
      log.lines.some((l) => l.includes("ignoring a message")) ? true : undefined,
    );
    assert.deepEqual(ips(await follower.list()), ["203.0.113.4"]);
    // A change published with a version it did not expect: it reads everything again.
    await admin.incrby(`{${ns}}:version`, 5);
    await other.remove(["203.0.113.4"]);
    await waitFor("a full read", async () =>
      (await follower.list()).length === 0 ? true : undefined,
    );
    assert.ok(log.lines.some((l) => l.includes("were missed")));
  });

  it("while Redis is down a follower keeps what it knew, keeps logins on disk (bounded), and sends them when it is back", async (t) => {
    const reason = redisSkipReason();
    if (reason) return t.skip(reason);
    // A Redis of its own: this test stops it.
    const own = await startRedis(await scratch("poprelay-redis-down-"));
    t.after(() => own.stop());
    const ns = namespace();
    const log = memoryLogger();
    const backlogDir = join(dir, `${ns}.backlog`);
    const follower = redisStore({
      redis: { ...config(ns), url: own.url },
      dir,
      name: ns,
      log,
      backlog: 3,
    });
    t.after(() => follower.close());
    await follower.opened();
    // Under the store's lock, as the daemon puts: a full read (one per connection's "ready")
    // replaces the state under it.
    await follower.exclusive(() => follower.put([entry("192.0.2.10")]));
    assert.deepEqual(ips(await follower.list()), ["192.0.2.10"]);

    await own.stop();
    await waitFor("the outage to show", () =>
      follower.status().startsWith("DEGRADED") ? true : undefined,
    );
    const during = ["192.0.2.11", "192.0.2.12", "192.0.2.13", "192.0.2.14"].map((ip) => entry(ip));
    assert.deepEqual(
      await follower.exclusive(() => follower.put(during)),
      [],
      "nothing opens while Redis is away",
    );
    assert.deepEqual(ips(await follower.list()), ["192.0.2.10"], "what it knew stays");
    assert.deepEqual(
      (await readdir(backlogDir)).filter((n) => !n.startsWith(".")).sort(),
      ["192.0.2.11", "192.0.2.12", "192.0.2.13"],
      "three kept on disk: the backlog's limit",
    );
    assert.ok(log.lines.some((l) => l.includes("192.0.2.14 is not kept")));
    assert.match(follower.status(), /3 logins waiting on disk/);
    // A session's end is not kept for later: the entry keeps its longer expiry, and the log says so.
    const ended = { ...entry("192.0.2.10"), expires: Date.now() + 1000 };
    assert.deepEqual(await follower.exclusive(() => follower.put([ended], { replace: true })), []);
    assert.ok(log.lines.some((l) => l.includes("session ends not recorded")));
    assert.match(follower.status(), /3 logins waiting on disk/);

    await own.start();
    await waitFor(
      "the backlog to reach Redis",
      async () => ((await follower.list()).length === 4 ? true : undefined),
      15_000,
    );
    assert.deepEqual(ips(await follower.list()), [
      "192.0.2.10",
      "192.0.2.11",
      "192.0.2.12",
      "192.0.2.13",
    ]);
    await waitFor("the backlog to empty once sent", async () =>
      (await readdir(backlogDir)).every((n) => n.startsWith(".")) ? true : undefined,
    );
    await waitFor("the outage to end", () =>
      follower.status().startsWith("DEGRADED") ? undefined : true,
    );
    assert.doesNotMatch(follower.status(), /waiting on disk/);
  });

  it("a command that times out on a live connection: the login waits on disk, and the outage ends by itself", async (t) => {
    const reason = redisSkipReason();
    if (reason) return t.skip(reason);
    const ns = namespace();
    const { store: follower } = open(ns, true);
    await follower.opened();
    // Redis stalls writes for longer than spool.redis.timeout (1 s), the connection stays up.
    await admin.client("PAUSE", 2500, "WRITE");
    assert.deepEqual(await follower.put([entry("192.0.2.30")]), []);
    assert.match(follower.status(), /^DEGRADED: .*timed out.*1 logins waiting on disk/);
    await waitFor(
      "the login to reach Redis once it answers again",
      async () => ((await follower.list()).length === 1 ? true : undefined),
      15_000,
    );
    await waitFor("the outage to end", () =>
      follower.status().startsWith("DEGRADED") ? undefined : true,
    );
  });

  it("a user name cut in the middle of a surrogate pair is stored, and stored again", async (t) => {
    const reason = redisSkipReason();
    if (reason) return t.skip(reason);
    const { store } = open(namespace());
    // 255 letters, then an emoji: cutting at 256 UTF-16 units would leave half of it.
    const user = `${"a".repeat(255)}\u{1F600}tail`;
    await store.put([entry("192.0.2.31", 60_000, user)]);
    await store.put([entry("192.0.2.31", 0, user), entry("192.0.2.32", 0, "bob")]);
    const stored = await store.list();
    assert.deepEqual(ips(stored), ["192.0.2.31", "192.0.2.32"]);
    assert.equal(stored[0]?.user, `${"a".repeat(255)}\u{1F600}`);
  });

  it("a follower that never reached Redis knows nothing, and says so", async (t) => {
    const reason = redisSkipReason();
    if (reason) return t.skip(reason);
    const follower = redisStore({
      redis: { ...config(namespace()), url: "redis://127.0.0.1:1/0" },
      dir,
      name: "nowhere",
      backlog: 3,
    });
    t.after(() => follower.close());
    await follower.opened();
    assert.equal(follower.known(), false);
    assert.match(follower.status(), /^DEGRADED: redis redis:\/\/127\.0\.0\.1:1\/0 unreachable/);
  });

  it("a follower starting while Redis is unreachable works from the state it left at its last stop", async (t) => {
    const reason = redisSkipReason();
    if (reason) return t.skip(reason);
    const ns = namespace();
    const { store: first } = open(ns, true);
    await first.opened();
    await first.put([entry("192.0.2.40"), entry("192.0.2.41", 0, "short", 1500)]);
    await first.close();
    await new Promise((resolve) => setTimeout(resolve, 1600));
    // The same name: the same state file, left by the first when it closed.
    const later = redisStore({
      redis: { ...config(ns), url: "redis://127.0.0.1:1/0" },
      dir,
      name: ns,
      backlog: 3,
    });
    t.after(() => later.close());
    await later.opened();
    assert.ok(later.known(), "it knows what it held");
    assert.deepEqual(ips(await later.list()), ["192.0.2.40"], "the expired one is gone");
    assert.match(later.status(), /^DEGRADED/);
  });

  it("the command line gets a clear error when Redis cannot be reached", async (t) => {
    const reason = redisSkipReason();
    if (reason) return t.skip(reason);
    const store = redisStore({
      redis: { ...config("x"), url: "redis://:secret@127.0.0.1:1/0" },
      dir,
      name: "cli",
    });
    t.after(() => store.close());
    await assert.rejects(store.list(), (error: Error) => {
      assert.match(error.message, /^redis redis:\/\/:\*\*\*@127\.0\.0\.1:1\/0: /);
      assert.match(error.message, /ECONNREFUSED/);
      return true;
    });
  });

  it("the command line adds, lists, removes and writes this host's map through Redis", async (t) => {
    const reason = redisSkipReason();
    if (reason) return t.skip(reason);
    const home = await scratch("poprelay-redis-cli-");
    const map = join(home, "relay");
    const yaml = (url: string) =>
      [
        "spool:",
        "  backend: redis",
        `  redis: {url: "${url}", namespace: ${namespace()}, timeout: 1s}`,
        `state: {directory: ${join(home, "state")}}`,
        `map: {mta: plain, file: ${map}}`,
      ].join("\n");
    const dir = await configDir({ "50-redis.yaml": yaml(server.url) });
    const cli = (...args: string[]) => poprelay(["--config-dir", dir, ...args]);
    const add = await cli("add", "198.51.100.23", "--user", "carol");
    assert.equal(add.code, 0, add.stderr);
    assert.equal(await readFile(map, "utf8"), "198.51.100.23\n");
    const list = await cli("list", "--json");
    assert.equal(JSON.parse(list.stdout).user, "carol", list.stdout);
    assert.equal((await cli("remove", "198.51.100.23")).code, 0);
    assert.equal(await readFile(map, "utf8"), "");

    const down = await configDir({ "50-redis.yaml": yaml("redis://:pw@127.0.0.1:1/0") });
    const refused = await poprelay(["--config-dir", down, "add", "198.51.100.24"]);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /redis redis:\/\/:\*\*\*@127\.0\.0\.1:1\/0: .*ECONNREFUSED/);
  });
});
