/**
 * Login-to-relay delay with `poprelay run` as a separate process, as systemd runs it: the bench
 * writes login lines (and background traffic) to its input, and watches the map's directory
 * (inotify) for the moment the text map, then the database, holds each login's address.
 *
 * - file input: lines appended to a log file with write(2); "written" is when write returns.
 * - journal input: entries handed to systemd-journal-remote, which appends them to a journal
 *   file in `input.journal.directory`; "written" is when the pipe write returns, so the figure
 *   includes journal-remote writing the entry and journalctl noticing it. The entries carry
 *   _SYSTEMD_UNIT=dovecot.service, so the dovecot agent's own trust rules and journalctl matches
 *   apply unchanged; the background entries come from other units and journalctl filters them.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { closeSync, type FSWatcher, openSync, readFileSync, watch, writeSync } from "node:fs";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { defaultConfig } from "../src/config/load.js";
import { createLogger } from "../src/log.js";
import { FileLock } from "../src/spool/lock.js";
import { RedisSpoolStore } from "../src/spool/redis/store.js";
import { exportEntry, journalRemote, journalWriter } from "./journal-files.js";
import { MailTraffic, Random, syslogLine } from "./synthetic.js";
import { CLI, configDir, type Distribution, distribution, sleep, waitForStderr } from "./util.js";

export interface DelayOptions {
  input: "file" | "journal";
  /**
   * Two hosts on this Redis: the logins are written to host A's input (A keeps no map), and
   * the delay is to the map of host B, a daemon with no input that follows Redis.
   */
  redis?: string;
  logins: number;
  /** Logins per second, Poisson arrivals. */
  rate: number;
  /** Background lines per second. */
  background: number;
  /** Entries already in the spool (and the map) before the first login. */
  mapEntries: number;
  seed: number;
}

export interface DelayResult {
  input: "file" | "journal";
  hosts: 1 | 2;
  logins: number;
  mapEntries: number;
  rate: number;
  background: number;
  /** Line written → text map renamed with the address in it, ms. */
  text: Distribution;
  /** Line written → database renamed with the address in it, ms. */
  database: Distribution;
  /** Logins never seen in the map or the database before the deadline. */
  missing: { text: number; database: number };
}

/** The address of the n-th login: 198.18.0.0/15 is reserved for benchmarks (RFC 2544). */
export const loginAddress = (n: number) => `198.18.${Math.floor(n / 254) % 256}.${(n % 254) + 1}`;
/** The n-th address already in the spool. */
export const spoolAddress = (n: number) => `198.19.${Math.floor(n / 254) % 256}.${(n % 254) + 1}`;
export const wideSpoolAddress = (n: number) =>
  `10.${Math.floor(n / 64516) % 256}.${Math.floor(n / 254) % 254}.${(n % 254) + 1}`;

/** Spool files as poprelay writes them, without the fsyncs (this is set-up, not a figure). */
export async function fillSpool(
  directory: string,
  count: number,
  address: (n: number) => string,
  now = Date.now(),
): Promise<void> {
  await mkdir(directory, { recursive: true, mode: 0o750 });
  const body = `${JSON.stringify({
    user: "bench",
    agent: "dovecot",
    login: new Date(now).toISOString(),
    expires: new Date(now + 3_600_000).toISOString(),
  })}\n`;
  for (let n = 0; n < count; n += 512) {
    const batch: Promise<void>[] = [];
    for (let k = n; k < Math.min(count, n + 512); k++)
      batch.push(writeFile(join(directory, address(k)), body, { mode: 0o640 }));
    await Promise.all(batch);
  }
}

export interface BenchDaemon {
  child: ChildProcess;
  dir: string;
  map: string;
  log: string;
  journal: string;
  stop(): Promise<void>;
}

/** A host's part in a two-host run: A reads the log and keeps no map, B only follows Redis. */
export interface SharedState {
  url: string;
  namespace: string;
  host: "A" | "B";
}

/** A configuration and `poprelay run` on it, started and ready (the first map written). */
export async function startDaemon(
  input: "file" | "journal",
  spoolEntries: number,
  address: (n: number) => string = spoolAddress,
  /** Runs before the daemon starts (a journal writer needs to create its file first). */
  prepare?: (paths: { log: string; journal: string }) => Promise<void>,
  shared?: SharedState,
): Promise<BenchDaemon> {
  const dir = await mkdtemp(join(tmpdir(), "poprelay-bench-"));
  const log = join(dir, "mail.log");
  const journal = join(dir, "journal");
  const mapDir = join(dir, "map");
  await mkdir(mapDir);
  await mkdir(journal);
  await writeFile(log, "");
  if (shared) await fillRedis(shared, spoolEntries, address);
  else await fillSpool(join(dir, "spool"), spoolEntries, address);
  const source =
    shared?.host === "B"
      ? "  source: none\n"
      : input === "file"
        ? `  source: file\n  file: ${log}\n`
        : `  source: journal\n  journal:\n    directory: ${journal}\n`;
  const spool = shared
    ? `spool:\n  backend: redis\n  redis:\n    url: ${shared.url}\n    namespace: ${shared.namespace}\n`
    : `spool:\n  directory: ${dir}/spool\n`;
  const mta = shared?.host === "A" ? "none" : "postfix";
  await configDir(
    dir,
    `agent: dovecot\ninput:\n${source}relay:\n  period: 1h\n${spool}` +
      `state:\n  directory: ${dir}/state\nmap:\n  mta: ${mta}\n  file: ${mapDir}/relay\n`,
  );
  await prepare?.({ log, journal });
  const child = spawn(process.execPath, [CLI, "run", "--config-dir", dir, "--instance", "bench"], {
    stdio: ["ignore", "ignore", "pipe"],
    env: { ...process.env, NOTIFY_SOCKET: "", JOURNAL_STREAM: "" },
  });
  await waitForStderr(child, /, (file|journal|none) input, /, 300_000);
  // Keep draining its log, or the daemon would block on a full pipe.
  child.stderr?.on("data", () => undefined);
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  return {
    child,
    dir,
    map: join(mapDir, "relay"),
    log,
    journal,
    stop: async () => {
      child.kill("SIGTERM");
      await exited;
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** Entries in Redis as a POP host puts them (set-up: the first host fills, the second finds). */
async function fillRedis(
  shared: SharedState,
  count: number,
  address: (n: number) => string,
): Promise<void> {
  if (shared.host !== "A" || count === 0) return;
  const redis = { ...defaultConfig().spool.redis, url: shared.url, namespace: shared.namespace };
  const store = new RedisSpoolStore({
    redis,
    lock: new FileLock(join(tmpdir(), `poprelay-bench-${process.pid}.lock`)),
    log: createLogger({ level: "warning" }),
  });
  const now = Date.now();
  try {
    for (let n = 0; n < count; n += 1000) {
      const batch = [];
      for (let k = n; k < Math.min(count, n + 1000); k++)
        batch.push({
          ip: address(k),
          user: "bench",
          agent: "dovecot",
          login: now,
          expires: now + 3_600_000,
        });
      await store.put(batch);
    }
  } finally {
    await store.close();
  }
}

/** Whether a Postfix hash/btree database holds `key` (keys are stored with their NUL). */
export function databaseHas(db: Buffer, key: string): boolean {
  const needle = Buffer.from(`${key}\0`);
  for (let at = db.indexOf(needle); at !== -1; at = db.indexOf(needle, at + 1)) {
    const before = at === 0 ? 0 : (db[at - 1] ?? 0);
    // Not the tail of a longer key ("198.18.0.12" must not count for "98.18.0.12").
    if (!/[0-9a-f.:]/i.test(String.fromCharCode(before))) return true;
  }
  return false;
}

export async function measureDelay(options: DelayOptions): Promise<DelayResult> {
  const program = options.input === "journal" ? await journalRemote() : undefined;
  if (options.input === "journal" && !program)
    throw new Error("systemd-journal-remote is not installed (package systemd-journal-remote)");
  const traffic = new MailTraffic(options.seed, 0);
  const rng = new Random(options.seed + 1);
  let monotonic = 1_000_000;

  let writer: ChildProcess | undefined;
  let write: (text: string) => void = () => undefined;
  let daemon: BenchDaemon;
  // Two hosts: B (no input) follows Redis and keeps the map; A, started below, reads the log.
  const namespace = `bench-${process.pid}-${options.seed}-${options.input}`;
  const shared = (host: "A" | "B") =>
    options.redis ? { url: options.redis, namespace, host } : undefined;
  const hostB = options.redis
    ? await startDaemon("file", 0, spoolAddress, undefined, shared("B"))
    : undefined;
  if (program) {
    // journalctl needs a journal file in the directory before it starts.
    daemon = await startDaemon(
      "journal",
      options.mapEntries,
      spoolAddress,
      async (paths) => {
        writer = journalWriter(program, paths.journal);
        const stdin = writer.stdin;
        if (!stdin) throw new Error("no stdin");
        write = (text) => {
          stdin.write(text);
        };
        write(exportEntry(traffic.next(), Date.now(), monotonic++));
        await sleep(300);
      },
      shared("A"),
    );
  } else {
    daemon = await startDaemon("file", options.mapEntries, spoolAddress, undefined, shared("A"));
    const fd = openSync(daemon.log, "a");
    write = (text) => {
      writeSync(fd, text);
    };
    const stop = daemon.stop;
    daemon.stop = async () => {
      closeSync(fd);
      await stop();
    };
  }
  const format = (line = traffic.next()) =>
    options.input === "journal"
      ? exportEntry(line, Date.now(), monotonic++)
      : syslogLine(line, Date.now());

  const written = new Map<string, number>();
  const pendingText = new Map<string, number>();
  const pendingDb = new Map<string, number>();
  const textDelays: number[] = [];
  const dbDelays: number[] = [];
  // The map that should hold the logins: B's with two hosts.
  const map = (hostB ?? daemon).map;
  const watcher: FSWatcher = watch(join(map, ".."), (_event, name) => {
    const now = performance.now();
    if (name === "relay" && pendingText.size > 0) {
      let text: string;
      try {
        text = readFileSync(map, "utf8");
      } catch {
        return;
      }
      for (const [ip, at] of pendingText) {
        if (text.includes(`\n${ip} OK\n`)) {
          textDelays.push(now - at);
          pendingText.delete(ip);
        }
      }
    } else if (name === "relay.db" && pendingDb.size > 0) {
      let db: Buffer;
      try {
        db = readFileSync(`${map}.db`);
      } catch {
        return;
      }
      for (const [ip, at] of pendingDb) {
        if (databaseHas(db, ip)) {
          dbDelays.push(now - at);
          pendingDb.delete(ip);
        }
      }
    }
  });

  try {
    // A journal file needs a moment to be found by journalctl --follow.
    write(format());
    await sleep(1000);
    let carry = 0;
    const tickMs = 10;
    const background = setInterval(() => {
      carry += (options.background * tickMs) / 1000;
      let chunk = "";
      for (; carry >= 1; carry--) chunk += format();
      if (chunk) write(chunk);
    }, tickMs);
    try {
      for (let n = 0; n < options.logins; n++) {
        await sleep(rng.exponential(1000 / options.rate));
        const ip = loginAddress(n);
        const text = format(traffic.login(ip));
        write(text);
        const at = performance.now();
        written.set(ip, at);
        pendingText.set(ip, at);
        pendingDb.set(ip, at);
      }
      for (let waited = 0; waited < 10_000 && (pendingText.size > 0 || pendingDb.size > 0); ) {
        await sleep(50);
        waited += 50;
      }
    } finally {
      clearInterval(background);
    }
  } finally {
    watcher.close();
    writer?.stdin?.end();
    writer?.kill("SIGTERM");
    await daemon.stop();
    await hostB?.stop();
  }
  return {
    input: options.input,
    hosts: hostB ? 2 : 1,
    logins: options.logins,
    mapEntries: options.mapEntries,
    rate: options.rate,
    background: options.background,
    text: distribution(textDelays),
    database: distribution(dbDelays),
    missing: { text: pendingText.size, database: pendingDb.size },
  };
}
