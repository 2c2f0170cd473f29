/**
 * Fault injection, time: year-less, zone-less stamps (Dovecot's log_path, classic syslog) in
 * the hour repeated when daylight saving time ends, with the daemon's clock set by libfaketime;
 * and a daemon whose time zone is not the log's, reading live. No login is dropped for its
 * stamp, and one that is not granted is named in the log.
 */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { appendFile, readdir, writeFile } from "node:fs/promises";
import { describe, it, type TestContext } from "node:test";
import { IN_CI } from "./helpers.js";
import {
  address,
  assertNoLoss,
  count,
  faultSetup,
  LoginWriter,
  loginLine,
  runDaemon,
  settle,
  spooled,
} from "./support/fault.js";

/** Debian's libfaketime (package libfaketime), whatever the architecture's directory. */
async function libfaketime(): Promise<string | undefined> {
  for (const dir of await readdir("/usr/lib").catch(() => [] as string[])) {
    const path = `/usr/lib/${dir}/faketime/libfaketime.so.1`;
    if (existsSync(path)) return path;
  }
  return undefined;
}

/** The environment that runs a process with its clock at `at` (then running on) and zone `tz`. */
function fakeClock(lib: string, at: Date, tz: string): NodeJS.ProcessEnv {
  const offset = Math.round((at.getTime() - Date.now()) / 1000);
  return {
    LD_PRELOAD: lib,
    FAKETIME: `${offset >= 0 ? "+" : ""}${offset}`,
    // Timers run on the monotonic clock: left alone, they keep working.
    FAKETIME_DONT_FAKE_MONOTONIC: "1",
    TZ: tz,
  };
}

/** A classic stamp of `time` as a log written in UTC shows it. */
function utcStamp(time: Date): string {
  const month = time.toLocaleString("en-US", { month: "short", timeZone: "UTC" });
  const day = String(time.getUTCDate()).padStart(2, " ");
  return `${month} ${day} ${time.toISOString().slice(11, 19)}`;
}

describe("fault injection: time", () => {
  it("the hour repeated at fall-back: a login in its second occurrence is granted", async (t: TestContext) => {
    const lib = await libfaketime();
    if (!lib) {
      if (IN_CI) assert.fail("libfaketime is not installed (package libfaketime)");
      return t.skip("libfaketime is not installed");
    }
    // Europe/Berlin, 25 Oct 2026: 03:00 CEST becomes 02:00 CET; 02:00-02:59 happens twice.
    // The daemon starts at 02:40 CET (the second time) and finds logins logged at 02:20 and
    // 02:35 CET, then one at 02:35 in a line written while it follows the log.
    const setup = await faultSetup({ period: "30m" });
    const stamp = (text: string) => () => text;
    const written = new Set<string>();
    const late = [address(1), address(2)];
    await writeFile(
      setup.log,
      loginLine(late[0] ?? "", undefined, stamp("Oct 25 02:20:00")) +
        loginLine(late[1] ?? "", undefined, stamp("Oct 25 02:35:00")),
    );
    for (const ip of late) written.add(ip);
    // Logged before the daylight saving time ended (01:00 CEST, 23:00 UTC): its 30 min are over.
    const expired = address(3);
    await appendFile(setup.log, loginLine(expired, undefined, stamp("Oct 25 01:00:00")));
    const daemon = await runDaemon(
      setup,
      fakeClock(lib, new Date("2026-10-25T01:40:00Z"), "Europe/Berlin"),
    );
    const live = address(4);
    await appendFile(setup.log, loginLine(live, undefined, stamp("Oct 25 02:39:00")));
    written.add(live);
    await settle(written, setup.spool);
    await daemon.waitForLog(/not granted: 1 login\(s\) read after their relay period had passed/);
    await daemon.stop();
    assert.ok(!(await spooled(setup.spool)).has(expired), "the expired login is not granted");
    assertNoLoss(
      await count("DST fall-back, repeated hour (libfaketime)", written, setup.spool),
      daemon.log(),
    );
  });

  for (const tz of ["Asia/Tokyo", "America/New_York"]) {
    it(`a daemon in ${tz} reading a log stamped in UTC, live: every login granted, with a warning`, async () => {
      const setup = await faultSetup({ period: "30m" });
      await writeFile(setup.log, "");
      const writer = new LoginWriter(
        () => setup.log,
        (ip) => loginLine(ip, new Date(), utcStamp),
      );
      const daemon = await runDaemon(setup, { TZ: tz });
      await writer.write(10);
      await writer.burst(10);
      await settle(writer.written, setup.spool);
      await daemon.stop();
      const log = daemon.log();
      assert.match(
        log,
        /earlier; granting from the time it was read|is in the future; using the time it was read/,
      );
      assertNoLoss(
        await count(`log in UTC, daemon in ${tz}, live`, writer.written, setup.spool),
        log,
      );
    });
  }
});
