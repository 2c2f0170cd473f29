import assert from "node:assert/strict";
import { join } from "node:path";
import { describe, it } from "node:test";
import { createNotifier, encodeState, monotonicUsec } from "../src/daemon/notify.js";
import { memoryLogger } from "../src/log.js";
import { scratch } from "./helpers.js";
import { notifySocket } from "./support/notify-socket.js";

describe("sd_notify", () => {
  it("encodes KEY=value lines with newlines flattened", () => {
    assert.equal(encodeState({ READY: "1", STATUS: "a\nb" }), "READY=1\nSTATUS=a b");
  });

  it("MONOTONIC_USEC counts microseconds on CLOCK_MONOTONIC", () => {
    const a = BigInt(monotonicUsec());
    const b = BigInt(monotonicUsec());
    assert.ok(b >= a && a > 0n);
  });

  it("sends nothing without NOTIFY_SOCKET", () => {
    const saved = process.env.NOTIFY_SOCKET;
    delete process.env.NOTIFY_SOCKET;
    try {
      assert.equal(createNotifier(memoryLogger()).via, "none");
    } finally {
      if (saved !== undefined) process.env.NOTIFY_SOCKET = saved;
    }
  });

  for (const abstract of [false, true]) {
    it(`delivers messages in order from this process, to a ${abstract ? "@abstract" : "path"} socket`, async () => {
      const socket = await notifySocket({ abstract });
      process.env.NOTIFY_SOCKET = socket.path;
      try {
        const notifier = createNotifier(memoryLogger());
        assert.equal(notifier.via, "sd_notify");
        notifier.send({ READY: "1", STATUS: "3 relays active" });
        notifier.send({ RELOADING: "1", MONOTONIC_USEC: "123" });
        notifier.send({ READY: "1" });
        await socket.waitFor("RELOADING", "1");
        await socket.waitFor("READY", "1", 2);
        assert.deepEqual(socket.messages, [
          { READY: "1", STATUS: "3 relays active" },
          { RELOADING: "1", MONOTONIC_USEC: "123" },
          { READY: "1" },
        ]);
        // NotifyAccess=main: systemd takes the sender's PID from the kernel.
        assert.deepEqual(socket.senders, [process.pid, process.pid, process.pid]);
      } finally {
        delete process.env.NOTIFY_SOCKET;
      }
    });
  }

  it("refuses a NOTIFY_SOCKET it cannot address whole (never a shortened name)", () => {
    for (const socket of [`/${"x".repeat(107)}`, `@${"x".repeat(108)}`, "relative", "vsock:2:9"]) {
      process.env.NOTIFY_SOCKET = socket;
      try {
        const log = memoryLogger();
        createNotifier(log).send({ READY: "1" });
        assert.equal(log.lines.length, 1, socket);
        assert.match(log.lines[0] ?? "", /absolute path or @abstract name, of at most 107 bytes/);
      } finally {
        delete process.env.NOTIFY_SOCKET;
      }
    }
  });

  it("logs a failed send once, and keeps going", async () => {
    process.env.NOTIFY_SOCKET = join(await scratch(), "gone.sock");
    try {
      const log = memoryLogger();
      const notifier = createNotifier(log);
      notifier.send({ WATCHDOG: "1" });
      notifier.send({ WATCHDOG: "1" });
      assert.equal(log.lines.length, 1, JSON.stringify(log.lines));
      assert.match(
        log.lines[0] ?? "",
        /sd_notify to .*gone\.sock: sendto: No such file or directory/,
      );
    } finally {
      delete process.env.NOTIFY_SOCKET;
    }
  });
});
