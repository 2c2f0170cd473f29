/**
 * poprelay's Node-API addon (native/poprelay.c): flock(2) and sd_notify(3), the two system calls
 * Node.js lacks. Node-API keeps one build loading in every Node.js from 18 on. It is loaded on
 * first use, so commands that need neither (agents, match, snippet) run without it.
 */
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";

export interface Native {
  /** flock(2) on the thread pool: resolves once `operation` (LOCK_EX…) is done. */
  flock(fd: number, operation: number): Promise<void>;
  /** One datagram to the NOTIFY_SOCKET path or @abstract name; throws with .code on failure. */
  notify(socket: string, message: string): void;
  readonly LOCK_SH: number;
  readonly LOCK_EX: number;
  readonly LOCK_UN: number;
  readonly LOCK_NB: number;
}

/** From build/src/native.js to the addon that `npm ci` builds (package.json "install"). */
const ADDON = "../../native/build/Release/poprelay.node";

let loaded: Native | undefined;

export function native(): Native {
  if (loaded) return loaded;
  try {
    loaded = createRequire(import.meta.url)(ADDON) as Native;
  } catch (error) {
    const file = fileURLToPath(new URL(ADDON, import.meta.url));
    throw new Error(
      `${file} did not load (${(error as Error).message.split("\n")[0]}); npm ci builds it, ` +
        "with a C compiler, make and python3",
    );
  }
  return loaded;
}
