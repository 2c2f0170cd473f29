/**
 * Fault injection, file input: rotations (rename, dateext, copytruncate) while running and
 * while stopped, and kill -9 at the instants where a position is saved. The real daemon
 * (`poprelay run`) reads a scratch log; every scenario prints its counts and loses nothing.
 */
import {
  access,
  copyFile,
  cp,
  mkdir,
  readdir,
  rename,
  truncate,
  utimes,
  writeFile,
} from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import {
  address,
  assertNoLoss,
  count,
  type FaultSetup,
  faultSetup,
  LoginWriter,
  runDaemon,
  settle,
} from "./support/fault.js";

/** Whether the log exists: logrotate's `missingok` rotates nothing without it. */
const present = (log: string) =>
  access(log).then(
    () => true,
    () => false,
  );

/** logrotate's numbered rotation: .N → .N+1, then the live file → .1 (rename or copy). */
async function rotateNumbered(log: string, mode: "rename" | "copytruncate"): Promise<void> {
  if (!(await present(log))) return;
  const dir = dirname(log);
  const base = basename(log);
  const numbers = (await readdir(dir))
    .map((name) => (name.startsWith(`${base}.`) ? name.slice(base.length + 1) : ""))
    .filter((n) => /^\d+$/.test(n))
    .map(Number)
    .sort((a, b) => b - a);
  for (const n of numbers) await rename(`${log}.${n}`, `${log}.${n + 1}`);
  if (mode === "rename") {
    await rename(log, `${log}.1`);
    await writeFile(log, "");
  } else {
    await copyFile(log, `${log}.1`);
    await truncate(log, 0);
  }
}

let dateext = 0;
/** logrotate's dateext: the live file → log-YYYYMMDD (fake dates, in order). */
async function rotateDateext(log: string): Promise<void> {
  if (!(await present(log))) return;
  dateext++;
  await rename(log, `${log}-2026${String(dateext).padStart(4, "0")}`);
  await writeFile(log, "");
}

/**
 * A daemon run once over `lines` logins, then stopped. With none, over an empty log: its
 * position is then "this file, from byte 0".
 */
async function ranOnce(lines: number): Promise<{ setup: FaultSetup; writer: LoginWriter }> {
  const setup = await faultSetup();
  const writer = new LoginWriter(() => setup.log);
  if (lines > 0) await writer.write(lines);
  else await writeFile(setup.log, "");
  const first = await runDaemon(setup);
  await settle(writer.written, setup.spool);
  await first.stop();
  return { setup, writer };
}

async function finish(name: string, setup: FaultSetup, writer: LoginWriter, log = "") {
  const daemon = await runDaemon(setup);
  // Generous: catching up on 2,000 logins is 2,000 fsyncs, slow on a loaded machine.
  await settle(writer.written, setup.spool, 60_000);
  await daemon.stop();
  assertNoLoss(await count(name, writer.written, setup.spool), log + daemon.log());
}

/**
 * kill -9 at random instants during bursts of logins, with rename, dateext and copytruncate
 * rotations while the daemon runs (even trials; half of them while it is stalled) and while it
 * is stopped (odd ones); then one daemon catches up, and every login written must be granted.
 */
async function killTrials(trials: number, label: string, sessionMax?: string): Promise<void> {
  const setup = await faultSetup(sessionMax ? { sessionMax } : {});
  const writer = new LoginWriter(() => setup.log);
  // A fixed seed unless given: a failure can be replayed with FAULT_SEED.
  let seed = Number(process.env.FAULT_SEED ?? 13);
  const random = () => {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return seed / 2147483648;
  };
  const kinds = ["rename", "dateext", "copytruncate"] as const;
  let actions = "";
  const act = (what: string) => {
    actions += `${new Date().toISOString()} TEST ${what}\n`;
  };
  const rotate = (kind: (typeof kinds)[number]) => {
    act(`rotate ${kind}`);
    return kind === "dateext" ? rotateDateext(setup.log) : rotateNumbered(setup.log, kind);
  };
  const tally = { running: 0, stalled: 0, stopped: 0 };
  let logs = "";
  for (let trial = 0; trial < trials; trial++) {
    const whileRunning = trial % 2 === 0;
    const kind = kinds[Math.floor(random() * kinds.length)] ?? "rename";
    const daemon = await runDaemon(setup);
    const chunks = 4 + Math.floor(random() * 8);
    const killAt = Math.floor(random() * chunks);
    const rotateAt = Math.floor(random() * chunks);
    // Half the rotations while running find the daemon stalled (SIGSTOP), as reads queued
    // behind slow fsyncs leave it: from the chunk before the rotation to two chunks after it,
    // so that lines it has not read are rotated away, and the new file grows, unseen.
    const stalled = whileRunning && random() < 0.5;
    let killed = false;
    for (let c = 0; c < chunks; c++) {
      if (stalled && c === Math.max(rotateAt - 1, 0)) {
        act("stall");
        daemon.child.kill("SIGSTOP");
      }
      if (stalled && c === rotateAt + 3 && !killed) {
        act("resume");
        daemon.child.kill("SIGCONT");
      }
      if (whileRunning && c === rotateAt) await rotate(kind);
      if (c === killAt) {
        await sleep(random() * 30);
        act("kill");
        await daemon.stop("SIGKILL");
        killed = true;
      }
      const n = 1 + Math.floor(random() * 6);
      const from = writer.written.size;
      if (random() < 0.5) await writer.burst(n);
      else await writer.write(n);
      act(`wrote ${address(from)}..${address(writer.written.size - 1)}`);
      await sleep(random() * 15);
    }
    if (!killed) await daemon.stop("SIGKILL");
    if (!whileRunning) {
      // Stopped: one or two rotations, with logins before and between them.
      await rotate(kind);
      await writer.write(1 + Math.floor(random() * 3));
      if (random() < 0.5) {
        await rotate(kind);
        await writer.write(1 + Math.floor(random() * 3));
      }
    }
    tally[whileRunning ? "running" : "stopped"]++;
    if (stalled) tally.stalled++;
    logs += daemon.log();
  }
  const daemon = await runDaemon(setup);
  await settle(writer.written, setup.spool, 60_000);
  await daemon.stop();
  const files = (await readdir(join(setup.dir, "log"))).length;
  // FAULT_DUMP=DIR keeps what a failure needs: the daemons' logs (stamped), the scratch tree.
  const dump = process.env.FAULT_DUMP;
  if (dump) {
    await mkdir(join(dump, label), { recursive: true });
    const lines = `${actions}${logs}${daemon.log()}`.split("\n").sort();
    await writeFile(join(dump, label, "daemon.log"), lines.join("\n"));
    await cp(setup.dir, join(dump, label, "setup"), { recursive: true, preserveTimestamps: true });
  }
  assertNoLoss(
    await count(
      `kill -9, ${label}: ${trials} trials (${tally.running} rotating while running, ${tally.stalled} of them stalled, ${tally.stopped} while stopped), ${files} log files`,
      writer.written,
      setup.spool,
    ),
    logs.slice(-20_000) + daemon.log(),
  );
}

describe("fault injection: file rotation and kill -9", () => {
  it("two rotations while stopped (log -> log.1 -> log.2): log.1 is read too", async () => {
    const { setup, writer } = await ranOnce(3);
    await writer.write(3); // read from log.2 at the saved offset
    await rotateNumbered(setup.log, "rename");
    await writer.write(3); // only in log.1
    await rotateNumbered(setup.log, "rename");
    await writer.write(3);
    await finish("two rotations while stopped", setup, writer);
  });

  it("two dateext rotations while stopped", async () => {
    const { setup, writer } = await ranOnce(3);
    await writer.write(3);
    await rotateDateext(setup.log);
    await writer.write(3);
    await rotateDateext(setup.log);
    await writer.write(3);
    await finish("two dateext rotations while stopped", setup, writer);
  });

  it("kill -9 right after finishing a rotated file at start", async () => {
    const { setup, writer } = await ranOnce(1);
    await writer.burst(2000);
    await rotateNumbered(setup.log, "rename");
    await writer.write(1);
    const second = await runDaemon(setup);
    await second.waitForLog(/finished .* at byte \d+/, 0, 30_000);
    await second.stop("SIGKILL");
    await finish("kill -9 after finishing a rotated file at start", setup, writer, second.log());
  });

  it("copytruncate, then kill -9, then a rename rotation", async () => {
    const setup = await faultSetup();
    const writer = new LoginWriter(() => setup.log);
    await writer.write(20);
    const first = await runDaemon(setup);
    await settle(writer.written, setup.spool);
    await rotateNumbered(setup.log, "copytruncate");
    await writer.write(5);
    await first.waitForLog(/truncated/);
    await first.stop("SIGKILL");
    await rotateNumbered(setup.log, "rename");
    await writer.write(5);
    await finish("copytruncate, kill -9, rename rotation", setup, writer, first.log());
  });

  it("copytruncate while the daemon is stalled, its file regrown past the offset", async () => {
    const setup = await faultSetup();
    const writer = new LoginWriter(() => setup.log);
    await writer.write(20);
    const daemon = await runDaemon(setup);
    await settle(writer.written, setup.spool);
    // A reader that cannot look for a while (its reads queued behind slow fsyncs): the file
    // it follows is copied and truncated, then written past the old offset, before it reads.
    daemon.child.kill("SIGSTOP");
    await writer.write(5); // only in the copy, after the offset
    await rotateNumbered(setup.log, "copytruncate");
    await writer.write(30); // longer than the copied part: the size shows no truncation
    daemon.child.kill("SIGCONT");
    await settle(writer.written, setup.spool);
    await daemon.stop();
    const counts = await count(
      "copytruncate and regrowth while stalled",
      writer.written,
      setup.spool,
    );
    assertNoLoss(counts, daemon.log());
  });

  it("copytruncate while stopped: the lines after the saved offset are read from the copy", async () => {
    const { setup, writer } = await ranOnce(10);
    await writer.write(10);
    await rotateNumbered(setup.log, "copytruncate");
    await writer.write(5);
    await finish("copytruncate while stopped", setup, writer);
  });

  it("copytruncate while stopped, nothing of the file read yet (saved offset 0)", async () => {
    const { setup, writer } = await ranOnce(0);
    await writer.write(5); // only in the copy after the rotation
    await rotateNumbered(setup.log, "copytruncate");
    await writer.write(2);
    await finish("copytruncate while stopped at offset 0", setup, writer);
  });

  it("copytruncate at offset 0, the position written only after the copy (a slow fsync)", async () => {
    const { setup, writer } = await ranOnce(0);
    await writer.write(5); // only in the copy after the rotation
    await rotateNumbered(setup.log, "copytruncate");
    await writer.write(2);
    // The position "this file, from byte 0" was taken before the copy, but its write (behind
    // the batch before it, and its fsync) ended after it: the state file is the newer.
    const later = new Date(Date.now() + 2000);
    await utimes(join(setup.state, "dovecot.position"), later, later);
    await finish("copytruncate at offset 0, position written after the copy", setup, writer);
  });

  it("copytruncate, then a rename rotation, while stopped at offset 0", async () => {
    const { setup, writer } = await ranOnce(0);
    await writer.write(5); // only in the copy (log.2 in the end)
    await rotateNumbered(setup.log, "copytruncate");
    await writer.write(3); // in the saved file, renamed to log.1
    await rotateNumbered(setup.log, "rename");
    await writer.write(2);
    await finish("copytruncate, rename rotation, stopped at offset 0", setup, writer);
  });

  it("kill -9 before the log exists, then its first lines rotated away while stopped", async () => {
    const setup = await faultSetup();
    const writer = new LoginWriter(() => setup.log);
    const first = await runDaemon(setup); // no log yet: the position says so before READY
    await first.stop("SIGKILL");
    await writer.write(5); // only in log.1 after the rotation
    await rotateNumbered(setup.log, "rename");
    await writer.write(2);
    await finish("kill -9 before the first read, rotation while stopped", setup, writer);
  });

  it("randomized kill -9 during bursts and rotations, relay while connected on (the default)", () =>
    killTrials(60, "relay while connected on", "12h"));

  it("randomized kill -9 during bursts and rotations, relay while connected off", () =>
    killTrials(50, "relay while connected off"));
});
