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
import { chmod, mkdir, mkdtemp, rename, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { defaultConfig } from "../src/config/load.js";
import { createLogger } from "../src/log.js";
import { FileLock } from "../src/spool/lock.js";
import { RedisSpoolStore } from "../src/spool/redis/store.js";
import { freePort } from "../test/support/dovecot.js";
import { type Postfix, type PostfixMapType, startPostfix } from "../test/support/postfix.js";
import { exportEntry, journalRemote, journalWriter } from "./journal-files.js";
import { MailTraffic, Random, syslogLine } from "./synthetic.js";
import {
  CLI,
  configDir,
  type Distribution,
  distribution,
  sleep,
  timed,
  unitEnvironment,
  waitForStderr,
} from "./util.js";
import { probeRelay } from "./xclient.js";

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
  /**
   * A real Postfix smtpd judges each login's address (XCLIENT probes every 5 ms, from the line
   * written until the first 250): through the map, or through the policy service.
   */
  smtpd?: "map" | "policy";
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
  /** The database type the daemon wrote ("none" when it wrote none). */
  databaseType: string;
  /** With `smtpd`: line written → the first 250 for RCPT from the address, ms. */
  accepted?: Distribution;
  /** With `smtpd`, measured in the same run: see SmtpdFloor. */
  floor?: SmtpdFloor;
  /** Logins never seen in the map or the database, or never accepted, before the deadline. */
  missing: { text: number; database: number; accepted: number };
}

/** What Postfix itself costs, beside poprelay, on the same machine at the same moment. */
export interface SmtpdFloor {
  /** `postmap TYPE:` alone on a copy of the daemon's text map (TYPE the daemon's), ms. */
  postmap?: Distribution;
  /** A table built by hand (postmap into a scratch name) renamed into place → the first 250. */
  pickup?: Distribution;
  /** One probe for an address already granted: the probe's own round trips, ms. */
  probe: Distribution;
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
  /** Answer Postfix's policy queries here (inet:127.0.0.1:PORT) instead of writing a map. */
  policyListen?: string,
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
  const mta = shared?.host === "A" || policyListen ? "none" : "postfix";
  const policy = policyListen ? `policy:\n  listen: ${policyListen}\n` : "";
  await configDir(
    dir,
    `agent: dovecot\ninput:\n${source}relay:\n  period: 1h\n${spool}${policy}` +
      `state:\n  directory: ${dir}/state\nmap:\n  mta: ${mta}\n  file: ${mapDir}/relay\n`,
  );
  await prepare?.({ log, journal });
  const child = spawn(process.execPath, [CLI, "run", "--config-dir", dir, "--instance", "bench"], {
    stdio: ["ignore", "ignore", "pipe"],
    // As poprelay@.service runs it (its Environment= lines).
    env: { ...process.env, ...unitEnvironment(), NOTIFY_SOCKET: "", JOURNAL_STREAM: "" },
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

/**
 * Whether a Postfix database holds `key`: hash and btree store keys with their NUL, cdb without,
 * right before the value (`OK`).
 */
export function databaseHas(db: Buffer, key: string, type: "hash" | "cdb" = "hash"): boolean {
  // The key as a cidr: line spells it (198.18.0.1/32), or bare (before the maps were cidr:).
  const host = key.includes(":") ? "/128" : "/32";
  return [`${key}${host}`, key].some((spelling) => holds(db, spelling, type));
}

function holds(db: Buffer, key: string, type: "hash" | "cdb"): boolean {
  const needle = Buffer.from(type === "cdb" ? `${key}OK` : `${key}\0`);
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
  const policyListen =
    options.smtpd === "policy" ? `inet:127.0.0.1:${await freePort()}` : undefined;
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
      policyListen,
    );
  } else {
    daemon = await startDaemon(
      "file",
      options.mapEntries,
      spoolAddress,
      undefined,
      shared("A"),
      policyListen,
    );
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

  // The map that should hold the logins: B's with two hosts.
  const map = (hostB ?? daemon).map;
  const databaseType = policyListen ? "none" : await writtenType(map);
  let postfix: Postfix | undefined;
  if (options.smtpd) {
    // smtpd runs as postfix and reads the map in the daemon's (private) scratch directory.
    await chmod(daemon.dir, 0o755);
    await mkdir(join(daemon.dir, "smtpd"));
    postfix = await startPostfix({
      dir: join(daemon.dir, "smtpd"),
      relayMap: policyListen ? undefined : map,
      mapType: databaseType === "none" ? undefined : (databaseType as PostfixMapType),
      policyService: policyListen,
      // in_flow_delay: each probe's MAIL takes one of smtpd's flow-control tokens, and
      // hundreds of probes a second run out of them: smtpd would then pause 1 s per MAIL.
      mainCf: { smtpd_authorized_xclient_hosts: "127.0.0.0/8", in_flow_delay: "0s" },
    });
  }

  const pendingText = new Map<string, number>();
  const pendingDb = new Map<string, number>();
  const textDelays: number[] = [];
  const dbDelays: number[] = [];
  const acceptDelays: number[] = [];
  const probes: Promise<void>[] = [];
  let notAccepted = 0;
  const product = databaseType === "cdb" ? "relay.cdb" : "relay.db";
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
        if (text.includes(`\n${ip}/32 OK\n`) || text.includes(`\n${ip} OK\n`)) {
          textDelays.push(now - at);
          pendingText.delete(ip);
        }
      }
    } else if (name === product && pendingDb.size > 0) {
      let db: Buffer;
      try {
        db = readFileSync(join(map, "..", product));
      } catch {
        return;
      }
      for (const [ip, at] of pendingDb) {
        if (databaseHas(db, ip, databaseType === "cdb" ? "cdb" : "hash")) {
          dbDelays.push(now - at);
          pendingDb.delete(ip);
        }
      }
    }
  });
  /** Probes every 5 ms from `at` until smtpd answers 250 (at most 10 s). */
  const probeUntilAccepted = async (port: number, ip: string, at: number) => {
    while (performance.now() - at < 10_000) {
      const started = performance.now();
      const reply = await probeRelay(port, ip).catch(() => undefined);
      if (reply?.code === 250) {
        acceptDelays.push(reply.at - at);
        return;
      }
      const wait = 5 - (performance.now() - started);
      if (wait > 0) await sleep(wait);
    }
    notAccepted++;
  };

  let floor: SmtpdFloor | undefined;
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
        if (!policyListen) {
          pendingText.set(ip, at);
          pendingDb.set(ip, at);
        }
        if (postfix) probes.push(probeUntilAccepted(postfix.smtpPort, ip, at));
      }
      await Promise.all(probes);
      for (let waited = 0; waited < 10_000 && (pendingText.size > 0 || pendingDb.size > 0); ) {
        await sleep(50);
        waited += 50;
      }
      // The floor needs the daemon idle: a background login would make it write its map over
      // the hand-made table under measurement.
      clearInterval(background);
      if (postfix) {
        floor = await smtpdFloor(postfix.smtpPort, map, databaseType, loginAddress(0));
      }
    } finally {
      clearInterval(background);
    }
  } finally {
    watcher.close();
    writer?.stdin?.end();
    writer?.kill("SIGTERM");
    await postfix?.stop();
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
    databaseType,
    accepted: postfix ? distribution(acceptDelays) : undefined,
    floor,
    missing: { text: pendingText.size, database: pendingDb.size, accepted: notAccepted },
  };
}

/** The database type beside the map as the daemon wrote it at start. */
async function writtenType(map: string): Promise<string> {
  for (const [suffix, type] of [
    [".cdb", "cdb"],
    [".lmdb", "lmdb"],
    [".db", "hash"],
  ] as const) {
    if (
      await stat(map + suffix).then(
        () => true,
        () => false,
      )
    )
      return type;
  }
  return "none";
}

const FLOOR_RUNS = 30;

/**
 * Postfix's own part, measured with the daemon idle and its logins all granted: postmap alone on
 * the daemon's text map, the pickup of a table built by hand and renamed into place (postmap
 * into a scratch name, then rename; "written" is the rename), and one probe's round trips.
 */
async function smtpdFloor(
  port: number,
  map: string,
  type: string,
  granted: string,
): Promise<SmtpdFloor> {
  const probe: number[] = [];
  for (let i = 0; i < FLOOR_RUNS; i++) {
    const started = performance.now();
    const reply = await probeRelay(port, granted);
    if (reply.code !== 250) throw new Error(`floor: ${granted} is not granted (${reply.code})`);
    probe.push(reply.at - started);
  }
  if (type === "none") return { probe: distribution(probe) };
  const scratch = join(map, "..", "..", "floor");
  await mkdir(scratch, { recursive: true });
  const text = readFileSync(map, "utf8");
  const source = join(scratch, "relay");
  await writeFile(source, text);
  const postmap: number[] = [];
  for (let i = 0; i < FLOOR_RUNS; i++) {
    const run = await timed("postmap", [`${type}:${source}`]);
    if (run.code !== 0) throw new Error(`postmap ${type}:${source} failed`);
    postmap.push(run.ms);
  }
  const suffix = type === "cdb" ? ".cdb" : type === "lmdb" ? ".lmdb" : ".db";
  const pickup: number[] = [];
  for (let i = 0; i < FLOOR_RUNS; i++) {
    // A new address each time, outside the logins' range (198.19.255.0/24: never in the spool).
    const ip = `198.19.255.${i + 1}`;
    const line = text.includes("/32 OK\n") ? `${ip}/32 OK\n` : `${ip} OK\n`;
    await writeFile(source, `${text}${line}`);
    const built = await timed("postmap", [`${type}:${source}`]);
    if (built.code !== 0) throw new Error(`postmap ${type}:${source} failed`);
    // The text first (smtpd may read it as cidr:), the database last: its change is noticed.
    const copy = join(scratch, "relay.next");
    await writeFile(copy, `${text}${line}`);
    await rename(copy, map);
    await rename(source + suffix, map + suffix);
    const at = performance.now();
    for (;;) {
      const started = performance.now();
      const reply = await probeRelay(port, ip);
      if (reply.code === 250) {
        pickup.push(reply.at - at);
        break;
      }
      if (reply.at - at > 10_000) throw new Error(`floor: ${ip} never accepted`);
      const wait = 5 - (performance.now() - started);
      if (wait > 0) await sleep(wait);
    }
  }
  return {
    postmap: distribution(postmap),
    pickup: distribution(pickup),
    probe: distribution(probe),
  };
}
