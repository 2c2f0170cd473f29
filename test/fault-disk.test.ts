/**
 * Fault injection, disks: the spool's and the map's file systems full (ENOSPC) or remounted
 * read-only (EROFS), each on a small tmpfs of its own. The daemon says DEGRADED, retries, and
 * grants every login logged meanwhile once the fault clears, without a restart.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtemp, open, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it, type TestContext } from "node:test";
import { promisify } from "node:util";
import { IN_CI, mapKeys } from "./helpers.js";
import {
  assertNoLoss,
  count,
  faultSetup,
  LoginWriter,
  runDaemon,
  settle,
} from "./support/fault.js";
import { notifySocket } from "./support/notify-socket.js";

const exec = promisify(execFile);

/** A 1 MiB tmpfs at a fresh directory, unmounted and removed when the test ends. */
async function smallFileSystem(t: TestContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "poprelay-fault-fs-"));
  await exec("mount", ["-t", "tmpfs", "-o", "size=1m,mode=0755", "tmpfs", dir]);
  t.after(async () => {
    await exec("umount", [dir]).catch(() => exec("umount", ["-l", dir]));
    await rm(dir, { recursive: true, force: true });
  });
  return dir;
}

/** Fills a file system until it says ENOSPC; the returned function frees the space. */
async function fill(dir: string): Promise<() => Promise<void>> {
  const filler = join(dir, "filler");
  const fh = await open(filler, "w");
  const block = Buffer.alloc(64 * 1024, 1);
  try {
    for (;;) await fh.write(block);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOSPC") throw error;
  } finally {
    await fh.close().catch(() => undefined);
  }
  return () => rm(filler, { force: true });
}

function skipUnlessRoot(t: TestContext): boolean {
  if (process.getuid?.() === 0) return false;
  if (IN_CI) assert.fail("the disk fault tests mount tmpfs: run them as root");
  t.skip("not root: cannot mount a tmpfs");
  return true;
}

type Fault = "ENOSPC" | "EROFS";

/** Polls `find` (an index, -1 for none yet) until it finds, or fails after 20 s. */
async function until(find: () => number): Promise<number> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    const found = find();
    if (found >= 0) return found;
    if (Date.now() > deadline) assert.fail(`not found in time: ${find.toString()}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** Starts the fault on `dir`; resolves with the function that clears it. */
async function inject(fault: Fault, dir: string): Promise<() => Promise<void>> {
  if (fault === "ENOSPC") return fill(dir);
  // Refused (EBUSY) while a file there is open for writing: the daemon's lock, for a moment.
  for (let attempt = 1; ; attempt++) {
    try {
      await exec("mount", ["-o", "remount,ro", dir]);
      break;
    } catch (error) {
      if (attempt >= 50) throw error;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }
  return async () => {
    await exec("mount", ["-o", "remount,rw", dir]);
  };
}

describe("fault injection: the spool's and the map's disks", () => {
  for (const fault of ["ENOSPC", "EROFS"] as const) {
    it(`spool ${fault}: DEGRADED, retried, everything granted when it clears`, async (t) => {
      if (skipUnlessRoot(t)) return;
      const fs = await smallFileSystem(t);
      const setup = await faultSetup({ spool: join(fs, "spool") });
      const writer = new LoginWriter(() => setup.log);
      await writer.write(5);
      const socket = await notifySocket();
      const daemon = await runDaemon(setup, {
        NOTIFY_SOCKET: socket.path,
        WATCHDOG_USEC: "1000000",
      });
      await settle(writer.written, setup.spool);
      const clear = await inject(fault, fs);
      const mark = daemon.log().length;
      await writer.write(5);
      await daemon.waitForLog(/DEGRADED: cannot write \d+ login\(s\) to the spool/, mark);
      await writer.burst(20); // read while the spool cannot be written
      await writer.write(5);
      // systemd sees it: STATUS says DEGRADED, and the watchdog goes on (retried in place).
      const status = (pattern: RegExp, from: number) =>
        until(() => socket.messages.findIndex((m, i) => i >= from && pattern.test(m.STATUS ?? "")));
      const degraded = await status(
        new RegExp(`DEGRADED: logins not yet granted, retrying: .*${fault}`),
        0,
      );
      await until(() => socket.messages.findIndex((m, i) => i > degraded && m.WATCHDOG === "1"));
      await clear();
      await settle(writer.written, setup.spool, 30_000);
      await daemon.waitForLog(/the spool is written again/, mark, 30_000);
      await until(() =>
        socket.messages.findIndex(
          (m, i) => i > degraded && m.STATUS !== undefined && !m.STATUS.includes("DEGRADED"),
        ),
      );
      const counts = await count(
        `spool ${fault}, cleared without a restart`,
        writer.written,
        setup.spool,
      );
      assert.equal(daemon.child.exitCode, null, "the daemon is still running");
      await daemon.stop();
      assertNoLoss(counts, daemon.log());
    });

    it(`map ${fault}: the spool grants, the map follows when it clears`, async (t) => {
      if (skipUnlessRoot(t)) return;
      const fs = await smallFileSystem(t);
      const setup = await faultSetup({ mapDir: fs });
      const writer = new LoginWriter(() => setup.log);
      await writer.write(5);
      const daemon = await runDaemon(setup);
      await settle(writer.written, setup.spool);
      const clear = await inject(fault, fs);
      const mark = daemon.log().length;
      await writer.write(10);
      await daemon.waitForLog(new RegExp(`DEGRADED: the map is not written: .*${fault}`), mark);
      await settle(writer.written, setup.spool);
      await clear();
      // The map is written again on the next change or the retry timer (10 s).
      const deadline = Date.now() + 30_000;
      let keys = new Set<string>();
      while (Date.now() < deadline) {
        keys = new Set(await mapKeys(setup.map));
        if ([...writer.written].every((ip) => keys.has(ip))) break;
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
      const lost = [...writer.written].filter((ip) => !keys.has(ip));
      const wrong = [...keys].filter((ip) => !writer.written.has(ip));
      console.log(
        `fault | ${`map ${fault}, cleared without a restart (counted in the map)`.padEnd(58)} | written ${String(writer.written.size).padStart(5)} | granted ${String(keys.size - wrong.length).padStart(5)} | lost ${lost.length} | wrong ${wrong.length}`,
      );
      await daemon.stop();
      assert.deepEqual(lost, [], daemon.log());
      assert.deepEqual(wrong, []);
      // The spool never missed one either.
      assertNoLoss(await count(`map ${fault} (counted in the spool)`, writer.written, setup.spool));
    });
  }
});
