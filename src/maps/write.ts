/**
 * Writes the relay map and its database atomically. postmap and makemap rewrite a database in
 * place, so everything is built in a private directory beside the map and renamed over the live
 * files only once the command succeeded: the MTA sees the old map or the new one, never a mix.
 */

import type { FileHandle } from "node:fs/promises";
import {
  chmod,
  link,
  mkdir,
  open,
  readdir,
  readFile,
  rename,
  rm,
  stat,
  unlink,
  writeFile,
} from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import type { MapConfig } from "../config/types.js";
import { syncDirectory } from "../fs/atomic.js";
import type { Logger } from "../log.js";
import type { SpoolEntry } from "../spool/types.js";
import { runCommand } from "./command.js";
import { WRITERS } from "./db/writers.js";
import { approveMap, assertReplaceable } from "./ownership.js";
import { ByteWriter, checkedAddressList, exactAddressList } from "./render.js";
import { type MapText, MapTextMaker } from "./rerender.js";
import { type ResolvedMap, resolveMap, validateMapConfig } from "./resolve.js";
import { MapConfigError } from "./settings.js";
import { tcprulesProgram, tcprulesReadsIpv6 } from "./tcprules.js";
import { isTempDirName, makeTempDir, removeStaleTempDirs } from "./tempdirs.js";

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

/**
 * A text map put in place whose database is still to be built from it (see buildDatabase).
 * Opaque to callers: they hand it back.
 */
export interface DatabaseJob {
  readonly result: MapWriteResult;
  readonly resolved: ResolvedMap;
  readonly temp: string;
  /** temp/NAME: the text the command reads (the same inode as the live map, when published). */
  readonly built: string;
  /** The live text map this database is for: built only while it is still the live one. */
  readonly textIno: bigint;
  /**
   * Every text a writer stages is newer than the live map and than every text staged before
   * it, by this stamp: what is in place tells whether this job was superseded.
   */
  readonly textMtimeNs: bigint;
  /** The text was replaced by this write (not only its database found stale). */
  readonly published: boolean;
  /**
   * A site's own map.command, whose products poprelay cannot name: the text is put in place
   * after the database, by buildDatabase, unless a newer text is in place by then.
   */
  readonly publishText: boolean;
  /** A link to the text map that was live before, to put back when the database fails. */
  readonly previous: string | undefined;
  readonly log: Logger;
  readonly timeoutMs: number | undefined;
}

export interface StagedMap {
  /** What is written so far. */
  result: MapWriteResult;
  /** Set when the database still has to be built: pass it to buildDatabase. */
  job?: DatabaseJob;
}

/** Runs `fn` holding whatever lock serialises map writers (the spool's). */
export type MapLock = <T>(fn: () => Promise<T>) => Promise<T>;

const unlocked: MapLock = (fn) => fn();

/**
 * Writes the map and its database, then returns: the whole write, for the CLI. When the database
 * command fails, the previous text map is put back, so both stay as they were.
 */
export async function writeMap(
  entries: readonly SpoolEntry[],
  config: MapConfig,
  options: MapWriteOptions,
): Promise<MapWriteResult> {
  const staged = await stageMap(entries, config, options, true);
  if (!staged.job) return staged.result;
  return buildDatabase(staged.job, { rollback: true });
}

/**
 * Puts the new text map in place and returns; its database, when the MTA has one, is left to
 * buildDatabase. The text goes first so that readers of the text (Exim, `poprelay list`, the
 * admin) and the database builder never wait for each other. Until the database is rebuilt,
 * the text is newer than it (the text's mtime is kept above the database's for that), so a
 * writer killed between the two is noticed by the next one, which rebuilds the database.
 * A site's own map.command, whose products are unknown, keeps the old order: database first,
 * then the text, both in buildDatabase. Either way no command runs in this call, which runs
 * under the spool's lock: a slow or hung command never holds up a login. The restart command
 * also runs later, in buildDatabase. A database poprelay writes itself (src/maps/db/) is
 * written here, before the text: it takes less time than a command would take to start.
 */
export async function stageMap(
  entries: readonly SpoolEntry[],
  config: MapConfig,
  options: MapWriteOptions,
  keepPrevious = false,
): Promise<StagedMap> {
  // Two writes at once in one process (two maps) cannot share it: the second gets its own.
  const scratch = kept.busy ? new Scratch() : kept;
  scratch.busy = true;
  try {
    return await stageWith(scratch, entries, config, options, keepPrevious);
  } finally {
    scratch.busy = false;
  }
}

/**
 * What a map write works in, kept from one write to the next: the addresses, the new map's
 * bytes (and the last one's, which the next is made from) and the live map's. A daemon writes
 * its whole map on every grant (2 MB each at 100,000 entries); made afresh each time, they
 * outlived the young generation and stayed until V8's next full collection, so the daemon's
 * memory grew by several MB per grant until then. None of it leaves stageMap: the map is on
 * disk when it returns.
 */
class Scratch {
  busy = false;
  readonly addresses: string[] = [];
  readonly texts = new MapTextMaker();
  readonly live = new ByteWriter();
  /** The text map this process put in place last, as it was then: see liveState. */
  placed: PlacedText | undefined;
}

interface PlacedText {
  file: string;
  /** MapText.serial: which text it holds. */
  serial: number;
  ino: bigint;
  size: bigint;
  /** Changed by every write, rename and link, and settable by no one: no other file has it. */
  ctimeNs: bigint;
}

const kept = new Scratch();

async function stageWith(
  scratch: Scratch,
  entries: readonly SpoolEntry[],
  config: MapConfig,
  options: MapWriteOptions,
  keepPrevious: boolean,
): Promise<StagedMap> {
  const { log } = options;
  const problems = validateMapConfig(config);
  if (problems.length > 0) throw new MapConfigError(problems);
  let resolved = resolveMap(config);
  const file = resolved.file;
  const dir = dirname(file);
  const name = basename(file);

  // Checked before anything touches the disk: a bad entry writes nothing.
  let addresses: readonly string[] = checkedAddressList(
    entries,
    scratch.addresses,
    scratch.texts.lastAddresses,
  );
  const [staticText, headText] = await Promise.all([
    readStatic("map.static", resolved.static),
    readStatic("map.head", resolved.head),
  ]).catch((error: Error) => {
    log.error(`map: ${file} not updated, the previous map is left in place: ${error.message}`);
    throw error;
  });
  await mkdir(dir, { recursive: true, mode: 0o755 });

  // Only tcprules needs the IPv6 ones apart (a pass over every address, on every grant).
  const ipv6 = resolved.ipv6Check === "tcprules" ? addresses.filter((ip) => ip.includes(":")) : [];
  if (ipv6.length > 0) {
    const program = tcprulesProgram(resolved.command);
    const scratch = await makeTempDir(dir);
    const readsIpv6 = await tcprulesReadsIpv6(program, scratch).finally(() =>
      rm(scratch, { recursive: true, force: true }),
    );
    if (!readsIpv6) {
      resolved = { ...resolved, ipv6: false };
      addresses = addresses.filter((ip) => !ip.includes(":"));
      log.warning(
        `map: ${program} cannot compile IPv6 rules (install ucspi-tcp-ipv6); ` +
          `${ipv6.length} IPv6 address(es) left out of ${file}: ${named(ipv6)}`,
      );
    }
  }
  const { exact, refused } = exactAddressList(addresses, resolved);
  if (refused.length > 0) {
    addresses = exact;
    log.warning(
      `map: ${refused.length} address(es) left out of ${file}: ${refused[0]?.reason}; ` +
        `left out: ${named(refused.map(({ ip }) => ip.address))}`,
    );
  }
  // The map's bytes, written and compared as they are (a string of 2 MB per grant, and the
  // live map read back as another, were garbage the old generation kept until its next full
  // collection).
  const made = scratch.texts.make(addresses, resolved, staticText, headText);
  const text = made.bytes;
  const result: MapWriteResult = { changed: false, entries: addresses.length, file, products: [] };

  const placed = scratch.placed?.file === file ? scratch.placed : undefined;
  scratch.placed = undefined;
  const live = await liveState(file, made, placed, resolved, scratch.live);
  if (live.placed) scratch.placed = live.placed;
  if (!options.force && live.textCurrent && live.databaseCurrent) {
    log.debug(`map: ${file} is up to date (${addresses.length} addresses)`);
    return { result };
  }

  // Never over a file whose lines are not all poprelay's or the site's own (map.head, static).
  if (live.placed) approveMap(file, text);
  else
    await assertReplaceable(
      file,
      text,
      resolved,
      `${headText}\n${staticText}`,
      log,
      live.readError === undefined ? (live.bytes ?? null) : undefined,
    );
  scratch.placed = undefined;
  await removeStaleTempDirs(dir, options.now ?? Date.now(), log);
  const temp = await makeTempDir(dir);
  let handedOver = false;
  try {
    const built = join(temp, name);
    const job = (
      fields: Pick<DatabaseJob, "textIno" | "textMtimeNs" | "published" | "previous">,
      publishText = false,
    ) => {
      handedOver = true;
      return {
        result,
        job: {
          ...fields,
          publishText,
          result,
          resolved,
          temp,
          built,
          log,
          timeoutMs: options.timeoutMs,
        },
      };
    };
    if (resolved.command !== null && resolved.products !== null) {
      if (!options.force && live.textCurrent && live.text) {
        // Only the database is stale (its writer stopped between the two renames).
        await writeFile(built, text, { mode: MODE });
        return job({
          textIno: live.text.ino,
          textMtimeNs: live.text.mtimeNs,
          published: false,
          previous: undefined,
        });
      }
      const newest =
        live.text && live.text.mtimeNs > live.newestProductNs
          ? live.text.mtimeNs
          : live.newestProductNs;
      const written = await writeSynced(built, text, after(newest));
      let previous: string | undefined;
      if (keepPrevious && live.text) {
        previous = join(temp, ".previous");
        await link(file, previous);
      }
      // A second name for the text, renamed over the map: temp/NAME stays for the command.
      const publish = join(temp, ".publish");
      await link(built, publish);
      await rename(publish, file);
      result.changed = true;
      return job({ ...written, published: true, previous });
    }
    if (resolved.command !== null) {
      // Newer than the live text and than every text staged but not yet in place.
      let newest = live.text?.mtimeNs ?? 0n;
      const staged = await newestStaged(dir, name, temp);
      if (staged > newest) newest = staged;
      const written = await writeSynced(built, text, after(newest));
      return job({ ...written, published: false, previous: undefined }, true);
    }

    // The text and the database are written and synced at once: their syncs overlap.
    const product = resolved.writer === null ? undefined : (resolved.products?.[0] ?? "");
    const writer = resolved.writer === null ? undefined : WRITERS[resolved.writer];
    // The database's mtime is its text's (or later), so that the next write finds it current;
    // both are set here, since neither file is written before the other.
    const stamp = Date.now();
    const [written] = await Promise.all([
      writeSynced(built, text, stamp),
      writer?.(text, built + product, MODE, made).then(() =>
        finish(built + product, BigInt(stamp) * 1_000_000n),
      ),
    ]);
    if (writer) {
      // Database first, the text last: a writer killed in between leaves a text map that
      // differs from the new one, so the next write builds everything again.
      await rename(built + product, file + product);
      result.products.push(file + product);
    }
    await rename(built, file);
    await syncDirectory(dir);
    scratch.placed = await placedText(file, made.serial, written.textIno);
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
    if (!handedOver) await rm(temp, { recursive: true, force: true });
  }
  result.changed = true;
  log.info(`map: wrote ${file} (${addresses.length} addresses)`);
  if (resolved.restart === null) return { result };
  // Only the restart command is left, for buildDatabase to run outside the lock.
  const st = await stat(file, { bigint: true });
  const restartTemp = await makeTempDir(dir);
  return {
    result,
    job: {
      result,
      resolved,
      temp: restartTemp,
      built: file,
      textIno: st.ino,
      textMtimeNs: st.mtimeNs,
      published: true,
      publishText: false,
      previous: undefined,
      log,
      timeoutMs: options.timeoutMs,
    },
  };
}

export interface BuildOptions {
  /**
   * Held around the final check and renames only, not while the command runs: the database is
   * put in place only if the text it was built from is still the live one. Default: none (the
   * caller holds it already).
   */
  lock?: MapLock;
  /** Put the previous text map back when the database cannot be built (writeMap). */
  rollback?: boolean;
  /** Aborting kills the running command (a newer write supersedes this one, or a stop). */
  signal?: AbortSignal;
}

/**
 * Builds the database of a staged text map in its private directory and renames it into place,
 * then runs the restart command. When another writer has replaced the text meanwhile, the
 * database is dropped instead: that writer builds its own, newer one. With publishText (a
 * site's own command) the text follows its database under the same lock.
 */
export async function buildDatabase(
  job: DatabaseJob,
  options: BuildOptions = {},
): Promise<MapWriteResult> {
  const { resolved, temp, built, log } = job;
  const file = job.result.file;
  const dir = dirname(file);
  const name = basename(file);
  const result: MapWriteResult = { ...job.result, products: [] };
  const lock = options.lock ?? unlocked;
  const run = { timeoutMs: job.timeoutMs, signal: options.signal };
  let superseded = false;
  try {
    if (resolved.command !== null) {
      await runCommand(resolved.command, { r: built, m: resolved.mta }, { ...run, cwd: temp });
      const products = await productsIn(temp, name);
      for (const product of products) await finish(join(temp, product), job.textMtimeNs);
      await lock(async () => {
        if (job.publishText) {
          // Texts staged later are newer: one in place means this one is superseded.
          const live = await stat(file, { bigint: true }).catch(() => undefined);
          superseded = live !== undefined && live.mtimeNs > job.textMtimeNs;
        } else {
          // Each database carries its text's mtime, and texts are ever newer: a database from
          // the same or a newer text in place means another build got there first. An older one
          // is replaced even when a newer text is out already: its own build follows.
          for (const product of products) {
            const live = await stat(join(dir, product), { bigint: true }).catch(() => undefined);
            if (live && live.mtimeNs >= job.textMtimeNs) superseded = true;
          }
        }
        if (superseded) return;
        for (const product of products) {
          await rename(join(temp, product), join(dir, product));
          result.products.push(join(dir, product));
        }
        // Database files first, the text last: a writer killed in between leaves a text map
        // that differs from the new one, so the next write builds everything again.
        if (job.publishText) await rename(built, file);
        await syncDirectory(dir);
      });
    }
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    let what: string;
    if (result.products.length > 0) {
      what = `partly updated (${result.products.join(", ")} replaced), the next write rebuilds it`;
    } else if (job.publishText) {
      what = "not updated, the previous map is left in place";
    } else if (options.rollback && job.published && (await lock(() => putBack(job, file)))) {
      what = "not updated, the previous map is left in place";
    } else if (job.published) {
      what = "updated, but not its database: the next write rebuilds it";
    } else {
      what = "not updated (its database is older than the text): the next write rebuilds it";
    }
    log.error(`map: ${file} ${what}: ${reason}`);
    throw new Error(`map ${file} ${what}: ${reason}`, { cause: error });
  } finally {
    await rm(temp, { recursive: true, force: true });
  }
  if (superseded) {
    log.debug(`map: ${file}: a database from the same or a newer text is in place already`);
    return result;
  }
  result.changed = true;
  if (resolved.command !== null) log.info(`map: wrote ${file} (${result.entries} addresses)`);
  await restart(result, resolved, run, log);
  return result;
}

/** Puts the text map that was live before the job back (or removes a first one). */
async function putBack(job: DatabaseJob, file: string): Promise<boolean> {
  try {
    const live = await stat(file, { bigint: true });
    if (live.ino !== job.textIno) return false;
    if (job.previous) await rename(job.previous, file);
    else await unlink(file);
    await syncDirectory(dirname(file));
    return true;
  } catch {
    return false;
  }
}

async function restart(
  result: MapWriteResult,
  resolved: ResolvedMap,
  run: { timeoutMs: number | undefined; signal: AbortSignal | undefined },
  log: Logger,
): Promise<void> {
  if (resolved.restart === null) return;
  const file = result.file;
  try {
    await runCommand(resolved.restart, { r: file, m: resolved.mta }, run);
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    log.error(`map: ${file} written, but the restart command failed: ${reason}`);
    throw new MapRestartError(
      `map ${file} written, but the restart command failed: ${reason}`,
      result,
    );
  }
}

async function readStatic(key: string, path: string): Promise<string> {
  if (path === "") return "";
  try {
    return await readFile(path, "utf8");
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const reason = code === "ENOENT" ? "no such file" : (error as Error).message;
    throw new Error(`${key}: ${path}: ${reason}`, { cause: error });
  }
}

interface LiveState {
  /** The live text map's inode and mtime, when there is one. */
  text: { ino: bigint; mtimeNs: bigint } | undefined;
  /** Its bytes; undefined when there is none, or when `placed` tells what they are. */
  bytes: Buffer | undefined;
  /** Why it could not be read, unless it is only missing. */
  readError: unknown;
  /** It holds exactly the new text. */
  textCurrent: boolean;
  /**
   * Every database file the default command makes is there and no older than the text. A
   * site's own command makes files poprelay cannot name: the text alone decides, as before.
   */
  databaseCurrent: boolean;
  /** The newest database file's mtime (0 when none): a new text must be newer. */
  newestProductNs: bigint;
  /** Set when the live text is the one this process put in place last (see liveState). */
  placed?: PlacedText;
}

/**
 * The live map and its database, as the next write needs them. The live text is the one this
 * process put in place last when its inode, size and ctime are still those it had then (a
 * file's ctime changes with every write, rename or link, and cannot be set): its bytes are then
 * known, and compared with the new text by their serial numbers (MapTextMaker gives the same
 * bytes the same one) instead of being read back, 2 MB per grant at 100,000 entries.
 */
async function liveState(
  file: string,
  made: MapText,
  placed: PlacedText | undefined,
  resolved: ResolvedMap,
  into: ByteWriter,
): Promise<LiveState> {
  const state: LiveState = {
    text: undefined,
    bytes: undefined,
    readError: undefined,
    textCurrent: false,
    databaseCurrent: false,
    newestProductNs: 0n,
  };
  // Known only when it is the text the new one was made from, or the same text.
  const known =
    placed !== undefined && (placed.serial === made.serial || placed.serial === made.reused?.from);
  const st = known ? await stat(file, { bigint: true }).catch(() => undefined) : undefined;
  if (
    placed &&
    st &&
    st.ino === placed.ino &&
    st.size === placed.size &&
    st.ctimeNs === placed.ctimeNs
  ) {
    state.text = { ino: st.ino, mtimeNs: st.mtimeNs };
    state.textCurrent = placed.serial === made.serial;
    state.placed = placed;
  } else {
    try {
      // The content and the stat of one inode: the map is replaced by rename, never rewritten.
      const handle = await open(file, "r");
      try {
        const st = await handle.stat({ bigint: true });
        state.text = { ino: st.ino, mtimeNs: st.mtimeNs };
        state.bytes = await readAll(handle, Number(st.size), into);
        state.textCurrent = Buffer.compare(state.bytes, made.bytes) === 0;
      } finally {
        await handle.close();
      }
    } catch (error) {
      // No map yet, or one that cannot be read (assertReplaceable says why).
      if ((error as NodeJS.ErrnoException).code !== "ENOENT") state.readError = error;
    }
  }
  let databaseCurrent = true;
  for (const suffix of resolved.products ?? []) {
    try {
      const st = await stat(file + suffix, { bigint: true });
      if (st.mtimeNs > state.newestProductNs) state.newestProductNs = st.mtimeNs;
      if (!state.text || st.mtimeNs < state.text.mtimeNs) databaseCurrent = false;
    } catch {
      databaseCurrent = false;
    }
  }
  state.databaseCurrent = state.textCurrent && databaseCurrent;
  return state;
}

/** The text map just put in place, as liveState will know it; undefined if it is not ours. */
async function placedText(
  file: string,
  serial: number,
  ino: bigint,
): Promise<PlacedText | undefined> {
  const st = await stat(file, { bigint: true });
  if (st.ino !== ino) return undefined;
  return { file, serial, ino, size: st.size, ctimeNs: st.ctimeNs };
}

/** The whole file, read into `into`'s buffer (its size as stat gave it, or more if it grew). */
async function readAll(handle: FileHandle, size: number, into: ByteWriter): Promise<Buffer> {
  let buffer = into.room(size + 1);
  let length = 0;
  for (;;) {
    if (length === buffer.length) {
      // It grew since its stat (rare): a bigger buffer of its own, what was read kept.
      const bigger = Buffer.allocUnsafe(buffer.length * 2);
      buffer.copy(bigger, 0, 0, length);
      buffer = bigger;
    }
    const { bytesRead } = await handle.read(buffer, length, buffer.length - length, length);
    if (bytesRead === 0) return buffer.subarray(0, length);
    length += bytesRead;
  }
}

/**
 * The newest text staged in another writer's build directory beside the map (0 when none):
 * those not yet in place, whose command still runs.
 */
async function newestStaged(dir: string, name: string, own: string): Promise<bigint> {
  let newest = 0n;
  for (const entry of await readdir(dir)) {
    const path = join(dir, entry);
    if (!isTempDirName(entry) || path === own) continue;
    const st = await stat(join(path, name), { bigint: true }).catch(() => undefined);
    if (st && st.mtimeNs > newest) newest = st.mtimeNs;
  }
  return newest;
}

/** What the command left beside the text map: `<name>.*`. */
async function productsIn(temp: string, name: string): Promise<string[]> {
  const found = await readdir(temp, { withFileTypes: true });
  return found
    .filter((entry) => entry.isFile() && entry.name.startsWith(`${name}.`))
    .map((entry) => entry.name)
    .sort();
}

/**
 * A new text's mtime (ms) with a database to follow a command's build (`newest`: the newest
 * mtime of the live text and database): 1 ms past both, or now if later. Texts are then ever
 * newer, even within one tick of the file system's clock, and a database (which gets its
 * text's mtime) tells which text it was built from.
 */
function after(newest: bigint): number {
  return Math.max(Date.now(), Math.floor(Number(newest) / 1e6) + 1);
}

/** Writes a new text map durably, with this mtime (ms) when given. */
async function writeSynced(
  path: string,
  text: Uint8Array,
  mtimeMs: number | undefined,
): Promise<{ textIno: bigint; textMtimeNs: bigint }> {
  const handle = await open(path, "wx", MODE);
  try {
    // Explicit, so a restrictive umask cannot hide the map from the MTA that reads it.
    await handle.chmod(MODE);
    await handle.writeFile(text);
    if (mtimeMs !== undefined) await handle.utimes(mtimeMs / 1000, mtimeMs / 1000);
    const st = await handle.stat({ bigint: true });
    await handle.sync();
    return { textIno: st.ino, textMtimeNs: st.mtimeNs };
  } finally {
    await handle.close();
  }
}

/**
 * Makes a database file readable by the MTA and durable; with `textMtimeNs`, its mtime becomes
 * its text's (2 us past it: no older, whatever the rounding; texts are 1 ms apart).
 */
async function finish(path: string, textMtimeNs: bigint | undefined): Promise<void> {
  // Commands and umask choose their own modes (makemap: 0640).
  await chmod(path, MODE);
  const handle = await open(path, "r");
  try {
    if (textMtimeNs !== undefined) {
      const seconds = Number(textMtimeNs) / 1e9 + 0.000002;
      await handle.utimes(seconds, seconds);
    }
    await handle.sync();
  } finally {
    await handle.close();
  }
}

function named(addresses: readonly string[]): string {
  const shown = addresses.slice(0, NAMED_IN_WARNING).join(", ");
  const more = addresses.length - NAMED_IN_WARNING;
  return more > 0 ? `${shown} and ${more} more` : shown;
}
