import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { appendFile, mkdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { connect } from "node:net";
import { join } from "node:path";
import { describe, it, type TestContext } from "node:test";
import { CLI, processRunning, scratch } from "./helpers.js";
import { startDaemon } from "./support/daemon.js";
import { waitFor } from "./support/dovecot.js";
import {
  countLogins,
  dovecotFailedLogin,
  dovecotLogin,
  formatCounts,
} from "./support/login-counts.js";
import { freePort } from "./support/redis.js";

const LOGINS = 10;

interface Setup {
  dir: string;
  log: string;
  spool: string;
  pids: string;
  port: number;
}

/** A daemon's conf.d reading a Dovecot log file, with a policy service and `map` settings. */
async function configure(map: (pids: string) => string): Promise<Setup> {
  const dir = await scratch("poprelay-faults-commands-");
  const log = join(dir, "dovecot.log");
  const spool = join(dir, "spool");
  const pids = join(dir, "command.pids");
  const port = await freePort();
  await mkdir(join(dir, "conf.d"));
  await mkdir(join(dir, "map"));
  await writeFile(log, "");
  const yaml = [
    "agent: dovecot",
    `input:\n  source: file\n  file: ${log}`,
    "match:\n  ignore: []",
    `spool:\n  directory: ${spool}`,
    `state:\n  directory: ${join(dir, "state")}`,
    `policy:\n  listen: inet:127.0.0.1:${port}`,
    map(pids),
  ].join("\n");
  await writeFile(join(dir, "conf.d", "50-test.yaml"), `${yaml}\n`);
  return { dir, log, spool, pids, port };
}

/** Postfix's question for one client address; the action the policy service answers. */
function ask(port: number, ip: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, "127.0.0.1");
    let reply = "";
    socket.setEncoding("utf8");
    socket.on("data", (chunk: string) => {
      reply += chunk;
      if (!reply.endsWith("\n\n")) return;
      socket.end();
      resolve(/^action=(\S+)/.exec(reply)?.[1] ?? reply);
    });
    socket.on("error", reject);
    socket.write(
      `request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\nclient_address=${ip}\n\n`,
    );
  });
}

/** Writes LOGINS logins and as many failed ones; counts what the policy service grants. */
async function loginsAnswered(t: TestContext, setup: Setup, scenario: string) {
  const written: string[] = [];
  const refused: string[] = [];
  for (let i = 1; i <= LOGINS; i++) {
    written.push(`192.0.2.${i}`);
    refused.push(`198.51.100.${i}`);
    await appendFile(
      setup.log,
      dovecotLogin(`u${i}`, `192.0.2.${i}`) + dovecotFailedLogin(`x${i}`, `198.51.100.${i}`),
    );
  }
  // Durable in the spool: the policy service answers from that, map written or not.
  await waitFor("every login in the spool", async () => {
    for (const ip of written) if (!(await stat(join(setup.spool, ip)).catch(() => false))) return;
    return true;
  });
  const granted: string[] = [];
  for (const ip of [...written, ...refused])
    if ((await ask(setup.port, ip)) === "OK") granted.push(ip);
  const counts = countLogins(scenario, written, granted);
  t.diagnostic(formatCounts(counts));
  assert.equal(counts.lost, 0, `lost: ${counts.lostAddresses.join(", ")}`);
  assert.equal(counts.wrong, 0, `wrongly granted: ${counts.wrongAddresses.join(", ")}`);
}

async function pidsIn(file: string): Promise<number[]> {
  return (await readFile(file, "utf8").catch(() => "")).split("\n").filter(Boolean).map(Number);
}

describe("commands never block logins, READY or the stop", { timeout: 120_000 }, () => {
  const commands = [
    ["a hung map.command", (pids: string) => `echo $$ >> ${pids}; exec sleep 1000`],
    [
      "a map.command that leaves a child holding its output",
      (pids: string) => `sleep 1000 & echo $! >> ${pids}; exit 0`,
    ],
    ["a failing map.command", (pids: string) => `echo $$ >> ${pids}; exit 1`],
    [
      "a hung restart command",
      (pids: string) =>
        `  restart:\n    enabled: true\n    command: ${JSON.stringify(`echo $$ >> ${pids}; exec sleep 1000`)}`,
    ],
  ] as const;
  for (const [what, command] of commands) {
    it(what, async (t) => {
      const setup = await configure((pids) => {
        const file = join(pids, "..", "map", "relay");
        const setting = command(pids);
        return setting.startsWith("  restart:")
          ? `map:\n  mta: plain\n  file: ${file}\n${setting}`
          : `map:\n  mta: postfix\n  file: ${file}\n  command: ${JSON.stringify(setting)}`;
      });
      const daemon = startDaemon(setup.dir);
      // Well before the command's own 30 s timeout.
      await daemon.waitForLog(/running \(notify/, 0, 15_000);
      await loginsAnswered(t, setup, what);

      const before = (await pidsIn(setup.pids)).length;
      assert.equal(await daemon.stop(), 0, daemon.log());
      const pids = await pidsIn(setup.pids);
      t.diagnostic(`${pids.length} commands run, ${pids.length - before} after SIGTERM`);
      assert.equal(pids.length, before, "no command starts after SIGTERM");
      // Killed with their process group: nothing the commands started is left running.
      await waitFor("every command's processes to be gone", () =>
        pids.every((pid) => !processRunning(pid)) ? true : undefined,
      );
      assert.doesNotMatch(daemon.log(), /EISDIR|uncaught|TypeError/);
    });
  }

  it("SIGTERM before READY stops gracefully", async () => {
    const setup = await configure(
      (pids) =>
        `map:\n  mta: postfix\n  file: ${join(pids, "..", "map", "relay")}\n  command: ${JSON.stringify(`echo $$ >> ${pids}; exec sleep 1000`)}`,
    );
    const daemon = startDaemon(setup.dir);
    // The first map write's command runs: the daemon is starting, READY not sent yet.
    await waitFor("the first command to start", async () =>
      (await pidsIn(setup.pids)).length > 0 ? true : undefined,
    );
    assert.equal(await daemon.stop(), 0, daemon.log());
    assert.match(daemon.log(), /SIGTERM: stopping/);
    assert.doesNotMatch(daemon.log(), /running \(notify/);
    for (const pid of await pidsIn(setup.pids)) assert.equal(processRunning(pid), false);
  });
});

describe("the policy service answers from the spool while the map cannot be written", () => {
  it("map.static gone: every map write fails, every login is still answered OK", async (t) => {
    let staticFile = "";
    const setup = await configure((pids) => {
      staticFile = join(pids, "..", "static");
      return `map:\n  mta: plain\n  file: ${join(pids, "..", "map", "relay")}\n  static: ${staticFile}`;
    });
    await writeFile(staticFile, "");
    const daemon = startDaemon(setup.dir);
    await daemon.waitForLog(/running \(notify/);
    await rm(staticFile);
    await loginsAnswered(t, setup, "map writes failing");
    assert.match(daemon.log(), /map\.static: .*: no such file/);
    assert.equal(await daemon.stop(), 0);
  });
});

describe("stderr", () => {
  it("a log reader that went away (EPIPE) does not end the daemon", async (t) => {
    const setup = await configure(
      (pids) => `map:\n  mta: plain\n  file: ${join(pids, "..", "map", "relay")}`,
    );
    const child = spawn(
      process.execPath,
      [CLI, "run", "--config-dir", setup.dir, "--instance", "dovecot"],
      {
        stdio: ["ignore", "ignore", "pipe"],
      },
    );
    t.after(() => {
      if (child.exitCode === null) child.kill("SIGKILL");
    });
    const exited = new Promise<number | string>((resolve) =>
      child.on("exit", (code, signal) => resolve(code ?? signal ?? -1)),
    );
    let text = "";
    child.stderr?.on("data", (chunk: Buffer) => {
      text += chunk.toString();
    });
    await waitFor("the daemon to run", () => (/running \(notify/.test(text) ? true : undefined));
    // The reader goes away: every later log line is an EPIPE.
    child.stderr?.destroy();
    await loginsAnswered(t, setup, "stderr closed");
    assert.equal(child.exitCode, null, "still running");
    child.kill("SIGTERM");
    assert.equal(await exited, 0);
  });
});
