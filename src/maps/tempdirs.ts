/**
 * Private build directories beside the live map: `.poprelay-<pid>-XXXXXX`. Being in the same
 * directory makes the final renames atomic; the pid lets a later writer tell a dead one's leftovers.
 */
import { mkdtemp, readdir, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { processAlive } from "../fs/pid.js";
import type { Logger } from "../log.js";
import { COMMAND_TIMEOUT_MS } from "./command.js";

const PREFIX = ".poprelay-";
const NAME = /^\.poprelay-(\d+)-[A-Za-z0-9]{6}$/;
/**
 * A live writer's directory never gets this old (its command is killed after
 * COMMAND_TIMEOUT_MS); the age rule covers a pid reused, or one from another pid namespace.
 */
export const STALE_AFTER_MS = 5 * COMMAND_TIMEOUT_MS;

export function isTempDirName(name: string): boolean {
  return NAME.test(name);
}

export function makeTempDir(dir: string): Promise<string> {
  return mkdtemp(join(dir, `${PREFIX}${process.pid}-`));
}

/** Removes the build directories of writers that died; returns their paths. */
export async function removeStaleTempDirs(
  dir: string,
  now: number,
  log: Logger,
): Promise<string[]> {
  const removed: string[] = [];
  for (const name of await readdir(dir)) {
    const match = NAME.exec(name);
    if (!match) continue;
    const path = join(dir, name);
    const pid = Number(match[1]);
    let age: number;
    try {
      age = now - (await stat(path)).mtimeMs;
    } catch {
      continue; // Its writer finished meanwhile.
    }
    const dead = pid !== process.pid && !processAlive(pid);
    if (!dead && age < STALE_AFTER_MS) continue;
    await rm(path, { recursive: true, force: true });
    log.notice(`map: removed ${path}, left by a writer that was killed`);
    removed.push(path);
  }
  return removed;
}
