/**
 * Writes the relay map and its database atomically. postmap and makemap rewrite a database in
 * place, so everything is built in a private directory beside the map and renamed over the live
 * files only once the command succeeded: the MTA sees the old map or the new one, never a mix.
 */
import { chmod, mkdir, open, readdir, readFile, rename, rm, stat } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import type { MapConfig } from "../config/types.js";
import { syncDirectory } from "../fs/atomic.js";
import type { Logger } from "../log.js";
import type { SpoolEntry } from "../spool/types.js";
import { runCommand } from "./command.js";
import { mapAddresses, renderAddresses } from "./render.js";
import { type ResolvedMap, resolveMap, validateMapConfig } from "./resolve.js";
import { MapConfigError } from "./settings.js";
import { tcprulesProgram, tcprulesReadsIpv6 } from "./tcprules.js";
import { makeTempDir, removeStaleTempDirs } from "./tempdirs.js";

/** The MTA reads the map as its own user. */
const MODE = 0o644;
const NAMED_IN_WARNING = 20;

export interface MapWriteOptions {
  /** Rewrite even when the text is unchanged. */
  force?: boolean;
  log: Logger;
  /** Current time in ms since the epoch, for telling stale build directories. */
  now?: number;
  /** Limit for each command (default COMMAND_TIMEOUT_MS). */
  timeoutMs?: number;
}

export interface MapWriteResult {
  changed: boolean;
  /** Address lines in the map. */
  entries: number;
  file: string;
  /** Database files put in place by this write, e.g. /var/lib/poprelay/relay.db. */
  products: string[];
}

/** The map was written, but the restart command failed. */
export class MapRestartError extends Error {
  constructor(
    message: string,
    readonly result: MapWriteResult,
  ) {
    super(message);
    this.name = "MapRestartError";
  }
}

export async function writeMap(
  entries: readonly SpoolEntry[],
  config: MapConfig,
  options: MapWriteOptions,
): Promise<MapWriteResult> {
  const { log } = options;
  const problems = validateMapConfig(config);
  if (problems.length > 0) throw new MapConfigError(problems);
  let resolved = resolveMap(config);
  const file = resolved.file;
  const dir = dirname(file);
  const name = basename(file);

  // Checked before anything touches the disk: a bad entry writes nothing.
  let addresses = mapAddresses(entries);
  const staticText = await readStatic(resolved.static);
  await mkdir(dir, { recursive: true, mode: 0o755 });

  const ipv6 = addresses.filter((ip) => ip.family === 6);
  if (ipv6.length > 0 && resolved.ipv6Check === "tcprules") {
    const program = tcprulesProgram(resolved.command);
    const scratch = await makeTempDir(dir);
    const readsIpv6 = await tcprulesReadsIpv6(program, scratch).finally(() =>
      rm(scratch, { recursive: true, force: true }),
    );
    if (!readsIpv6) {
      resolved = { ...resolved, ipv6: false };
      addresses = addresses.filter((ip) => ip.family === 4);
      log.warning(
        `map: ${program} cannot compile IPv6 rules (install ucspi-tcp-ipv6); ` +
          `${ipv6.length} IPv6 address(es) left out of ${file}: ${named(ipv6.map((ip) => ip.address))}`,
      );
    }
  }
  const text = renderAddresses(addresses, resolved, staticText);
  const result: MapWriteResult = { changed: false, entries: addresses.length, file, products: [] };

  if (!options.force && (await isCurrent(file, text, resolved))) {
    log.debug(`map: ${file} is up to date (${addresses.length} addresses)`);
    return result;
  }

  await removeStaleTempDirs(dir, options.now ?? Date.now(), log);
  const temp = await makeTempDir(dir);
  try {
    const built = join(temp, name);
    await writeSynced(built, text);
    if (resolved.command !== null) {
      await runCommand(
        resolved.command,
        { r: built, m: resolved.mta },
        { timeoutMs: options.timeoutMs, cwd: temp },
      );
    }
    // Database files first, the text last: a writer killed in between leaves a text map that
    // differs from the new one, so the next write builds everything again.
    for (const product of await productsIn(temp, name)) {
      await settle(join(temp, product), join(dir, product));
      result.products.push(join(dir, product));
    }
    await settle(built, file);
    await syncDirectory(dir);
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    // Only a failed rename in the map's own directory gets past the first product.
    const what =
      result.products.length === 0
        ? "not updated, the previous map is left in place"
        : `partly updated (${result.products.join(", ")} replaced), the next write rebuilds it`;
    log.error(`map: ${file} ${what}: ${reason}`);
    throw new Error(`map ${file} ${what}: ${reason}`, { cause: error });
  } finally {
    await rm(temp, { recursive: true, force: true });
  }
  result.changed = true;
  log.info(`map: wrote ${file} (${addresses.length} addresses)`);

  if (resolved.restart !== null) {
    try {
      await runCommand(
        resolved.restart,
        { r: file, m: resolved.mta },
        { timeoutMs: options.timeoutMs },
      );
    } catch (error) {
      const reason = error instanceof Error ? error.message : String(error);
      log.error(`map: ${file} written, but the restart command failed: ${reason}`);
      throw new MapRestartError(
        `map ${file} written, but the restart command failed: ${reason}`,
        result,
      );
    }
  }
  return result;
}

async function readStatic(path: string): Promise<string> {
  if (path === "") return "";
  try {
    return await readFile(path, "utf8");
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const reason = code === "ENOENT" ? "no such file" : (error as Error).message;
    throw new Error(`map.static: ${path}: ${reason}`, { cause: error });
  }
}

/** The live map has this text and the database the default command would build is there. */
async function isCurrent(file: string, text: string, resolved: ResolvedMap): Promise<boolean> {
  try {
    if ((await readFile(file, "utf8")) !== text) return false;
    for (const suffix of resolved.products ?? []) await stat(file + suffix);
    return true;
  } catch {
    return false;
  }
}

/** What the command left beside the text map: `<name>.*`. */
async function productsIn(temp: string, name: string): Promise<string[]> {
  const found = await readdir(temp, { withFileTypes: true });
  return found
    .filter((entry) => entry.isFile() && entry.name.startsWith(`${name}.`))
    .map((entry) => entry.name)
    .sort();
}

async function writeSynced(path: string, text: string): Promise<void> {
  const handle = await open(path, "wx", MODE);
  try {
    await handle.writeFile(text);
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Makes a built file durable and readable by the MTA, then renames it into place. */
async function settle(from: string, to: string): Promise<void> {
  // Commands and umask choose their own modes (makemap: 0640).
  await chmod(from, MODE);
  const handle = await open(from, "r");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
  await rename(from, to);
}

function named(addresses: readonly string[]): string {
  const shown = addresses.slice(0, NAMED_IN_WARNING).join(", ");
  const more = addresses.length - NAMED_IN_WARNING;
  return more > 0 ? `${shown} and ${more} more` : shown;
}
