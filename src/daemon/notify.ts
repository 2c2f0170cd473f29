import { spawn } from "node:child_process";
import { createRequire } from "node:module";
import type { Logger } from "../log.js";

/** The sd_notify(3) messages the daemon sends. */
export interface Notifier {
  /** How messages reach systemd: "sd-notify", "systemd-notify", or "none" outside systemd. */
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

interface SdNotifyAddon {
  sendState(state: string): void;
}

/**
 * sd-notify, the libsystemd binding, when it could be built (it needs libsystemd-dev at install
 * time); otherwise systemd's own `systemd-notify`, one short process per message, which waits
 * until systemd has read it (so the unit needs NotifyAccess=all). Outside systemd
 * (no NOTIFY_SOCKET) nothing is sent.
 */
export function createNotifier(log: Logger, prefer: "addon" | "command" = "addon"): Notifier {
  if (!process.env.NOTIFY_SOCKET) return { via: "none", send: () => undefined };
  const addon = prefer === "addon" ? loadAddon() : undefined;
  if (addon) {
    return {
      via: "sd-notify",
      send: (state) => addon.sendState(`${encodeState(state)}\n`),
    };
  }
  return commandNotifier(log);
}

function loadAddon(): SdNotifyAddon | undefined {
  try {
    return createRequire(import.meta.url)("sd-notify") as SdNotifyAddon;
  } catch {
    return undefined;
  }
}

function commandNotifier(log: Logger): Notifier {
  // Messages go out in order: a later READY=1 must not overtake RELOADING=1.
  let queue = Promise.resolve();
  return {
    via: "systemd-notify",
    send(state) {
      const args = Object.entries(state).map(
        ([key, value]) => `${key}=${value.replace(/\n/g, " ")}`,
      );
      queue = queue.then(
        () =>
          new Promise<void>((resolve) => {
            const child = spawn("systemd-notify", args, { stdio: ["ignore", "ignore", "pipe"] });
            let stderr = "";
            child.stderr.on("data", (chunk: Buffer) => {
              stderr += chunk.toString();
            });
            child.on("error", (error) => {
              log.warning(`sd_notify: systemd-notify: ${error.message}`);
              resolve();
            });
            child.on("close", (code) => {
              if (code !== 0)
                log.warning(`sd_notify: systemd-notify exited ${code}: ${stderr.trim()}`);
              resolve();
            });
          }),
      );
    },
  };
}
