import { randomBytes } from "node:crypto";
import { open, readdir, rename, unlink } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { processAlive } from "./pid.js";

/** A temp name beside `path`, hidden, carrying the writer's pid so leftovers can be traced. */
export function tempNameFor(path: string): string {
  return join(
    dirname(path),
    `.${basename(path)}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`,
  );
}

/** tempNameFor's names: the target's name, the writer's pid. */
const TEMP_NAME = /^\.(.+)\.(\d+)\.[0-9a-f]+\.tmp$/;

/**
 * Removes the temp files in `directory` of writers killed before their rename (kill -9, a
 * power cut), for targets named `target` when given, else for any target.
 */
export async function removeStaleTempFiles(directory: string, target?: string): Promise<void> {
  for (const name of await readdir(directory)) {
    const parts = TEMP_NAME.exec(name);
    if (!parts || (target !== undefined && parts[1] !== target)) continue;
    const pid = Number(parts[2]);
    if (pid && !processAlive(pid)) await unlink(join(directory, name)).catch(() => undefined);
  }
}

/**
 * Replaces `path` with `data` so that readers see the old file or the new one, never a part:
 * temp file in the same directory, fsync, rename. The caller fsyncs the directory (once per
 * batch) when the rename itself must survive a power cut.
 */
export async function writeFileAtomic(path: string, data: string, mode = 0o644): Promise<void> {
  const temp = tempNameFor(path);
  const handle = await open(temp, "wx", mode);
  try {
    // Explicit, so a restrictive umask cannot hide the map from the MTA that reads it.
    await handle.chmod(mode);
    await handle.writeFile(data);
    await handle.sync();
  } catch (error) {
    await handle.close();
    await unlink(temp).catch(() => undefined);
    throw error;
  }
  await handle.close();
  try {
    await rename(temp, path);
  } catch (error) {
    await unlink(temp).catch(() => undefined);
    throw error;
  }
}

/** Makes renames and unlinks in `directory` durable. */
export async function syncDirectory(directory: string): Promise<void> {
  const handle = await open(directory, "r");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
