import { randomBytes } from "node:crypto";
import { open, rename, unlink } from "node:fs/promises";
import { basename, dirname, join } from "node:path";

/** A temp name beside `path`, hidden, carrying the writer's pid so leftovers can be traced. */
export function tempNameFor(path: string): string {
  return join(
    dirname(path),
    `.${basename(path)}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`,
  );
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
