/**
 * poprelay's Node-API addon (native/) and the program, run by other Node.js versions than the
 * one running the tests, with the same build: the oldest that package.json's engines allows
 * and Debian testing's (scripts/test.sh puts their binaries in .cache/node). Each must load the
 * addon although its V8 ABI (NODE_MODULE_VERSION) differs, take and respect flock(2) locks,
 * run the commands (with the Redis spool too: ioredis 6 declares Node.js 20 as its floor, and
 * this is what shows that the version poprelay ships runs on 18), and send sd_notify datagrams
 * that systemd would credit to it.
 * Outside CI a missing binary skips; under CI=true it fails.
 */
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { open, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, it } from "node:test";
import { native } from "../src/native.js";
import { CLI, configDir, IN_CI, mapKeys, ROOT, run, sandbox, scratch } from "./helpers.js";
import { notifySocket } from "./support/notify-socket.js";
import { redisSkipReason, startRedis } from "./support/redis.js";

const VERSIONS = ["18.19.0", "24.22.3"];

const engines = (
  JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { engines: { node: string } }
).engines.node;

/** An ES module run by `node` with `args`: imports resolve from build/test. */
function script(node: string, source: string, args: readonly string[], env = {}) {
  return run(node, ["--input-type=module", "-e", source, "--", ...args], env);
}

const LOCK = `
import { openSync } from "node:fs";
import { native } from ${JSON.stringify(join(ROOT, "build/src/native.js"))};
const addon = native();
const fd = openSync(process.argv[1], "r+");
try {
  await addon.flock(fd, addon.LOCK_EX | addon.LOCK_NB);
  console.log("locked");
} catch (error) {
  console.log(error.code);
}`;

const NOTIFY = `
import { createNotifier, monotonicUsec } from ${JSON.stringify(join(ROOT, "build/src/daemon/notify.js"))};
import { memoryLogger } from ${JSON.stringify(join(ROOT, "build/src/log.js"))};
const log = memoryLogger();
const notifier = createNotifier(log);
notifier.send({ READY: "1", STATUS: "ready" });
notifier.send({ RELOADING: "1", MONOTONIC_USEC: monotonicUsec() });
notifier.send({ WATCHDOG: "1" });
notifier.send({ STOPPING: "1" });
console.log(JSON.stringify({ pid: process.pid, via: notifier.via, log: log.lines }));`;

describe("the addon and the program on other Node.js versions", () => {
  it("the oldest of them is the lower bound of package.json's engines", () => {
    assert.equal(engines, `>=${VERSIONS[0]?.split(".").slice(0, 2).join(".")}`);
  });

  for (const version of VERSIONS) {
    const node = join(ROOT, ".cache/node", version, "bin/node");
    const skip =
      !IN_CI && !existsSync(node) && `no ${node}: scripts/test.sh installs it (node_binary)`;
    it(`Node.js ${version} loads the same addon: flock, the commands, sd_notify`, {
      skip,
    }, async () => {
      const versions = await run(node, ["-p", "JSON.stringify(process.versions)"]);
      assert.equal(versions.code, 0, versions.stderr);
      const theirs = JSON.parse(versions.stdout) as NodeJS.ProcessVersions;
      assert.equal(theirs.node, version);
      // Another V8 ABI: an addon built against V8 (as fs-ext was) would not load.
      assert.notEqual(theirs.modules, process.versions.modules);

      // A lock this process holds is refused to theirs, then granted once released.
      const dir = await scratch("poprelay-native-");
      const lockFile = join(dir, ".lock");
      const held = await open(lockFile, "w+");
      const addon = native();
      await addon.flock(held.fd, addon.LOCK_EX);
      const refused = await script(node, LOCK, [lockFile]);
      assert.deepEqual([refused.stdout, refused.stderr], ["EAGAIN\n", ""]);
      await held.close();
      const granted = await script(node, LOCK, [lockFile]);
      assert.deepEqual([granted.stdout, granted.stderr], ["locked\n", ""]);

      // The commands that take the spool's lock and write the map.
      const box = await sandbox();
      const add = await run(node, [CLI, "add", "192.0.2.7", "--config-dir", box.dir]);
      assert.equal(add.code, 0, add.stderr);
      assert.deepEqual(await mapKeys(box.map), ["192.0.2.7"]);
      const list = await run(node, [CLI, "list", "--json", "--config-dir", box.dir]);
      assert.equal(list.code, 0, list.stderr);
      assert.equal((JSON.parse(list.stdout) as { ip: string }).ip, "192.0.2.7");

      // sd_notify from their process: every message, credited to its PID (NotifyAccess=main).
      const socket = await notifySocket({ abstract: true });
      const sent = await script(node, NOTIFY, [], { NOTIFY_SOCKET: socket.path });
      assert.equal(sent.code, 0, sent.stderr);
      const { pid, via, log } = JSON.parse(sent.stdout) as {
        pid: number;
        via: string;
        log: string[];
      };
      assert.deepEqual([via, log], ["sd_notify", []]);
      await socket.waitFor("STOPPING", "1");
      assert.deepEqual(
        socket.messages.map((m) => Object.keys(m).join(",")),
        ["READY,STATUS", "RELOADING,MONOTONIC_USEC", "WATCHDOG", "STOPPING"],
      );
      assert.deepEqual(socket.senders, [pid, pid, pid, pid]);
    });

    const noRedis = skip || redisSkipReason();
    it(`Node.js ${version} runs the Redis spool (ioredis)`, { skip: noRedis }, async (t) => {
      const redis = await startRedis(await scratch("poprelay-native-redis-"));
      t.after(() => redis.stop());
      const state = await scratch("poprelay-native-state-");
      const box = { dir: await configDir({}), map: join(state, "relay") };
      await writeFile(
        join(box.dir, "conf.d/50-test.yaml"),
        [
          `spool: {backend: redis, redis: {url: "${redis.url}", namespace: node-${version}}}`,
          `state: {directory: ${state}}`,
          `map: {file: ${box.map}}`,
          "",
        ].join("\n"),
      );
      const add = await run(node, [CLI, "add", "192.0.2.8", "--config-dir", box.dir]);
      assert.equal(add.code, 0, add.stderr);
      assert.deepEqual(await mapKeys(box.map), ["192.0.2.8"]);
      const list = await run(node, [CLI, "list", "--json", "--config-dir", box.dir]);
      assert.equal(list.code, 0, list.stderr);
      assert.equal((JSON.parse(list.stdout) as { ip: string }).ip, "192.0.2.8");
    });
  }
});
