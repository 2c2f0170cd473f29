import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { createNotifier, encodeState, monotonicUsec } from "../src/daemon/notify.js";
import { memoryLogger } from "../src/log.js";
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

  for (const prefer of ["addon", "command"] as const) {
    it(`delivers messages in order through ${prefer === "addon" ? "the sd-notify addon" : "systemd-notify"}`, async () => {
      const socket = await notifySocket();
      process.env.NOTIFY_SOCKET = socket.path;
      try {
        const notifier = createNotifier(memoryLogger(), prefer);
        assert.equal(notifier.via, prefer === "addon" ? "sd-notify" : "systemd-notify");
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
      } finally {
        delete process.env.NOTIFY_SOCKET;
      }
    });
  }
});
