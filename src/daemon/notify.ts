import type { Logger } from "../log.js";
import { native } from "../native.js";

/** The sd_notify(3) messages the daemon sends. */
export interface Notifier {
  /** How messages reach systemd: "sd_notify" (to $NOTIFY_SOCKET), or "none" outside systemd. */
  readonly via: string;
  send(state: Record<string, string>): void;
}

/** Lines of `KEY=value`; values never hold a newline (STATUS text is flattened). */
export function encodeState(state: Record<string, string>): string {
  return Object.entries(state)
    .map(([key, value]) => `${key}=${value.replace(/\n/g, " ")}`)
    .join("\n");
}

/** CLOCK_MONOTONIC in µs, for RELOADING=1's MONOTONIC_USEC (libuv's hrtime is that clock). */
export function monotonicUsec(): string {
  return String(process.hrtime.bigint() / 1000n);
}

/**
 * Sends each message as one datagram from this process, through poprelay's addon, so systemd
 * counts it as the main process's (the unit's NotifyAccess=main). Outside systemd (no
 * NOTIFY_SOCKET) nothing is sent. A failed send is logged, not thrown: systemd going away
 * must not stop the daemon; the same failure is logged once, not with every watchdog ping.
 */
export function createNotifier(log: Logger): Notifier {
  const socket = process.env.NOTIFY_SOCKET;
  if (!socket) return { via: "none", send: () => undefined };
  const addon = native();
  let lastFailure = "";
  return {
    via: "sd_notify",
    send(state) {
      try {
        addon.notify(socket, `${encodeState(state)}\n`);
        lastFailure = "";
      } catch (error) {
        const message = (error as Error).message;
        if (message !== lastFailure) log.warning(`sd_notify to ${socket}: ${message}`);
        lastFailure = message;
      }
    },
  };
}
