/**
 * Fault injection, journal input: journalctl killed mid-batch, and the daemon killed -9
 * mid-batch, while journal files keep arriving. The cursor is saved only after the entries
 * before it are durable: every login is granted, and nothing else.
 */
import assert from "node:assert/strict";
import { readdir, readFile } from "node:fs/promises";
import { describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { scratch } from "./helpers.js";
import {
  assertNoLoss,
  count,
  faultSetup,
  LoginWriter,
  loginMessage,
  runDaemon,
  settle,
} from "./support/fault.js";
import { journalEntry, journalRemoteSkipReason, writeJournal } from "./support/journald.js";

/** The journalctl processes whose parent is `pid`. */
async function journalctlChildren(pid: number): Promise<number[]> {
  const found: number[] = [];
  for (const name of await readdir("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    const stat = await readFile(`/proc/${name}/stat`, "utf8").catch(() => "");
    // pid (comm) state ppid ...
    const m = /^\d+ \((.*)\) \S+ (\d+)/.exec(stat);
    if (m?.[1] === "journalctl" && Number(m[2]) === pid) found.push(Number(name));
  }
  return found;
}

describe("fault injection: the journal cursor", () => {
  it("journalctl killed mid-batch, and the daemon killed -9 mid-batch", async (t) => {
    const skip = await journalRemoteSkipReason();
    if (skip) return t.skip(skip);
    const journal = await scratch("poprelay-fault-journal-");
    const setup = await faultSetup({
      input: `input:\n  source: journal\n  journal:\n    directory: ${journal}`,
    });
    const writer = new LoginWriter(() => "");
    let clock = Date.now() - 60_000;
    /** One journal file of `n` Dovecot logins (what journald writes, seen by journalctl -f). */
    const burst = (n: number) =>
      writeJournal(
        journal,
        writer
          .take(n)
          .map((ip) =>
            journalEntry({ unit: "dovecot.service", time: clock++, message: loginMessage(ip) }),
          ),
      );
    await burst(50);
    const ROUNDS = 12;
    let journalctlKills = 0;
    let daemonKills = 0;
    let daemon = await runDaemon(setup);
    for (let round = 0; round < ROUNDS; round++) {
      const writing = burst(300);
      await sleep(20 + round * 7);
      const pid = daemon.child.pid ?? 0;
      if (round % 3 === 2) {
        await daemon.stop("SIGKILL");
        daemonKills++;
        await writing;
        daemon = await runDaemon(setup);
      } else {
        // Between its runs (catch-up, then follow) there may be none for a moment.
        const deadline = Date.now() + 3000;
        let children = await journalctlChildren(pid);
        while (children.length === 0 && Date.now() < deadline) {
          await sleep(5);
          children = await journalctlChildren(pid);
        }
        for (const child of children) {
          try {
            process.kill(child, "SIGKILL");
            journalctlKills++;
          } catch (error) {
            // It ended between the listing and the kill (the catch-up run finishing).
            if ((error as NodeJS.ErrnoException).code !== "ESRCH") throw error;
          }
        }
        await writing;
      }
    }
    await settle(writer.written, setup.spool, 60_000);
    await daemon.stop();
    assert.ok(journalctlKills >= 3, `journalctl was killed ${journalctlKills} times`);
    assertNoLoss(
      await count(
        `journal: ${journalctlKills} journalctl kills, ${daemonKills} daemon kill -9s`,
        writer.written,
        setup.spool,
      ),
      daemon.log(),
    );
  });
});
