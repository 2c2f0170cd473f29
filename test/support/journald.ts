/**
 * Real journald for tests, no mocks.
 *
 * 1. The live journal: `ensureJournald()` makes sure a systemd-journald accepts entries and
 *    journalctl shows them. Where systemd is PID 1 that is the system's own journald. Where it is
 *    not (containers, CI VMs: no journald at all), it starts /lib/systemd/systemd-journald by
 *    hand, as root. Without socket activation journald binds its sockets itself:
 *    /run/systemd/journal/{socket,stdout,dev-log,io.systemd.journal}; it writes to
 *    /run/log/journal/MACHINE-ID (volatile: without `journalctl --flush` it never moves to
 *    /var/log/journal), and needs /etc/machine-id. systemd's socket unit would also link
 *    /dev/log → /run/systemd/journal/dev-log (Symlinks=/dev/log); we create that link only when
 *    /dev/log is missing, so syslog(3) and `logger` reach journald too.
 *
 *    Lifetime: a journald we start is left running when the tests end, as it would run under
 *    systemd. Several test files (separate processes, possibly concurrent) share it: a file that
 *    stopped "its" journald would pull it from under the others, and the next file or the next
 *    run reuses it anyway. Concurrent starters are serialised by a lock file, and liveness is
 *    judged by connecting to its stdout socket (a stale socket file refuses), not by the file.
 *
 * 2. Journal directories: `writeJournal(dir, entries)` turns entries into the Journal Export
 *    Format and has `systemd-journal-remote --output=DIR/NAME.journal -` write a journal file.
 *    Unlike journald, journal-remote keeps every field it is given, trusted ones (_SYSTEMD_UNIT,
 *    _EXE, _UID) and __REALTIME_TIMESTAMP included, so tests get deterministic journals. Another
 *    file written into the same directory is how a test "appends": `journalctl --directory`
 *    (also under --follow) interleaves them.
 *
 * Outside CI a missing part (not root, package not installed) skips with a reason; under
 * CI=true nothing is skipped: the helpers throw, and the test fails.
 * Packages: systemd (journald, journalctl, systemd-cat), systemd-journal-remote, bsdutils (logger).
 */

import { spawn } from "node:child_process";
import { constants } from "node:fs";
import { access, lstat, readFile, symlink } from "node:fs/promises";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { parseJournalJson } from "../../src/readers/journal-json.js";
import type { JournalFields } from "../../src/readers/types.js";
import { FileLock } from "../../src/spool/lock.js";
import { IN_CI } from "../helpers.js";

export const JOURNAL_SOCKETS = "/run/systemd/journal";
const STDOUT_SOCKET = `${JOURNAL_SOCKETS}/stdout`;
const NATIVE_SOCKET = `${JOURNAL_SOCKETS}/socket`;
const DEV_LOG_SOCKET = `${JOURNAL_SOCKETS}/dev-log`;
const JOURNALD = ["/lib/systemd/systemd-journald", "/usr/lib/systemd/systemd-journald"];
const JOURNAL_REMOTE = [
  "/lib/systemd/systemd-journal-remote",
  "/usr/lib/systemd/systemd-journal-remote",
];
const READY_TIMEOUT_MS = 10_000;

async function executable(candidates: readonly string[]): Promise<string | undefined> {
  for (const file of candidates) {
    try {
      await access(file, constants.X_OK);
      return file;
    } catch {
      // next
    }
  }
  return undefined;
}

/** Outside CI: the reason, to skip with. Under CI: throws it. */
function missing(reason: string): string {
  if (IN_CI) throw new Error(`${reason} (CI=true: a missing test component is a failure)`);
  return reason;
}

/** Runs a program to completion; rejects with its stderr when it fails. */
export function runProgram(
  file: string,
  args: readonly string[],
  input?: Buffer | string,
): Promise<{ stdout: Buffer; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, [...args], { stdio: ["pipe", "pipe", "pipe"] });
    const out: Buffer[] = [];
    let stderr = "";
    child.stdout.on("data", (chunk: Buffer) => out.push(chunk));
    child.stderr.setEncoding("utf8");
    child.stderr.on("data", (text: string) => {
      stderr += text;
    });
    child.on("error", reject);
    child.on("close", (code, signal) => {
      if (code === 0) resolve({ stdout: Buffer.concat(out), stderr });
      else
        reject(
          new Error(
            `${file} ${args.join(" ")}: ${signal ?? `exit status ${code}`}: ${stderr.trim()}`,
          ),
        );
    });
    child.stdin.on("error", () => undefined);
    child.stdin.end(input);
  });
}

// ---------------------------------------------------------------------------- live journald

/** True when something accepts connections on journald's stdout socket. */
function journaldAnswers(): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(STDOUT_SOCKET);
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });
}

async function exists(path: string): Promise<boolean> {
  try {
    await lstat(path);
    return true;
  } catch {
    return false;
  }
}

async function journaldReady(): Promise<boolean> {
  return (
    (await journaldAnswers()) && (await exists(NATIVE_SOCKET)) && (await exists(DEV_LOG_SOCKET))
  );
}

let live: Promise<string | undefined> | undefined;

/**
 * Makes sure a journald runs and its entries reach journalctl; starts one by hand if none does.
 * Resolves to undefined when ready, or (outside CI) to a reason to skip. Idempotent, within a
 * process (one promise) and across processes (a lock, then a liveness check).
 */
export function ensureJournald(): Promise<string | undefined> {
  live ??= startJournald();
  return live;
}

async function startJournald(): Promise<string | undefined> {
  const tools = await executable(["/usr/bin/systemd-cat", "/bin/systemd-cat"]);
  if (!tools) return missing("systemd-cat is not installed (package systemd)");
  if (!(await journaldReady())) {
    if (process.getuid?.() !== 0) return missing("no journald runs, and starting one needs root");
    const journald = await executable(JOURNALD);
    if (!journald) return missing("systemd-journald is not installed (package systemd)");
    await ensureMachineId();
    await new FileLock(join(tmpdir(), "poprelay-test-journald.lock")).run(async () => {
      if (await journaldReady()) return; // another test process started it meanwhile
      await launch(journald);
    });
  }
  if (!(await exists("/dev/log")) && process.getuid?.() === 0) {
    // What systemd-journald-dev-log.socket (Symlinks=/dev/log) does.
    await symlink(DEV_LOG_SOCKET, "/dev/log").catch((error: NodeJS.ErrnoException) => {
      if (error.code !== "EEXIST") throw error;
    });
  }
  try {
    await roundTrip();
  } catch (error) {
    // Not root: this user may simply not be allowed to read the system journal.
    if (process.getuid?.() !== 0) return missing(`journald: ${(error as Error).message}`);
    throw error;
  }
  return undefined;
}

/**
 * journald names its directory after /etc/machine-id and will not start without one. Images
 * built for containers often ship it empty; systemd fills it on first boot, as does this.
 */
async function ensureMachineId(): Promise<void> {
  const id = await readFile("/etc/machine-id", "utf8").catch(() => "");
  if (/^[0-9a-f]{32}\s*$/.test(id)) return;
  await runProgram("systemd-machine-id-setup", []);
}

async function launch(journald: string): Promise<void> {
  // Detached, in its own session, no pipes to us: it outlives this process (see the top).
  const child = spawn(journald, [], { detached: true, stdio: "ignore" });
  let exited: string | undefined;
  child.on("error", (error) => {
    exited = error.message;
  });
  child.on("exit", (code, signal) => {
    exited = `exited (${signal ?? `status ${code}`})`;
  });
  child.unref();
  const deadline = Date.now() + READY_TIMEOUT_MS;
  while (!(await journaldReady())) {
    if (exited !== undefined)
      throw new Error(`${journald} ${exited} before its sockets were ready`);
    if (Date.now() > deadline)
      throw new Error(
        `${journald} (pid ${child.pid}): sockets not ready after ${READY_TIMEOUT_MS} ms`,
      );
    await sleep(25);
  }
}

/** Writes a marker through journald and waits until journalctl shows it. */
async function roundTrip(): Promise<void> {
  const tag = `poprelay-test-ready-${process.pid}`;
  const marker = `ready ${Date.now()} ${Math.random()}`;
  await systemdCat(tag, marker);
  const deadline = Date.now() + READY_TIMEOUT_MS;
  for (;;) {
    const { stdout } = await runProgram("journalctl", [
      "--no-pager",
      "--output=cat",
      "--",
      `SYSLOG_IDENTIFIER=${tag}`,
      `MESSAGE=${marker}`,
    ]);
    if (stdout.toString().includes(marker)) return;
    if (Date.now() > deadline)
      throw new Error(`journald runs, but journalctl does not show what was written to it`);
    await sleep(25);
  }
}

/** Logs `lines` to the live journal with SYSLOG_IDENTIFIER=tag, through journald's stdout socket. */
export async function systemdCat(tag: string, ...lines: string[]): Promise<void> {
  await runProgram("systemd-cat", ["-t", tag], `${lines.join("\n")}\n`);
}

/** Logs one line through syslog(3)'s socket /dev/log (util-linux logger). */
export async function loggerLine(tag: string, line: string): Promise<void> {
  await runProgram("logger", ["--socket=/dev/log", "-t", tag, "--", line]);
}

// ---------------------------------------------------------------------- journal directories

let remote: Promise<string | undefined> | undefined;

/** The systemd-journal-remote program, or (outside CI) undefined when it is not installed. */
export function journalRemote(): Promise<string | undefined> {
  remote ??= executable(JOURNAL_REMOTE);
  return remote;
}

/** A reason to skip directory tests (outside CI), or undefined; throws under CI=true. */
export async function journalRemoteSkipReason(): Promise<string | undefined> {
  if (await journalRemote()) return undefined;
  return missing("systemd-journal-remote is not installed (package systemd-journal-remote)");
}

export type ExportValue = string | Uint8Array;
/** One entry: field name → value, or several values for a repeated field. */
export type ExportEntry = Record<string, ExportValue | readonly ExportValue[]>;

/** The Journal Export Format (systemd.io/JOURNAL_EXPORT_FORMATS) of `entries`. */
export function exportFormat(entries: readonly ExportEntry[]): Buffer {
  const parts: Buffer[] = [];
  for (const entry of entries) {
    for (const [name, value] of Object.entries(entry)) {
      const values = Array.isArray(value) ? value : [value as ExportValue];
      for (const one of values) {
        const bytes = typeof one === "string" ? Buffer.from(one) : Buffer.from(one);
        if (typeof one === "string" && !one.includes("\n")) {
          parts.push(Buffer.from(`${name}=`), bytes, Buffer.from("\n"));
        } else {
          // Binary-safe form: name, newline, little-endian 64-bit length, data, newline.
          const length = Buffer.alloc(8);
          length.writeBigUInt64LE(BigInt(bytes.length));
          parts.push(Buffer.from(`${name}\n`), length, bytes, Buffer.from("\n"));
        }
      }
    }
    parts.push(Buffer.from("\n"));
  }
  return Buffer.concat(parts);
}

/**
 * Writes `entries` as the journal file DIR/FILE (systemd-journal-remote). Several files in one
 * directory are interleaved by journalctl: entries of one _BOOT_ID by __MONOTONIC_TIMESTAMP,
 * else by __REALTIME_TIMESTAMP, so keep those consistent (journalEntry does).
 */
export async function writeJournal(
  dir: string,
  entries: readonly ExportEntry[],
  file = `${Date.now()}-${Math.random().toString(36).slice(2)}.journal`,
): Promise<void> {
  const program = await journalRemote();
  if (!program) throw new Error("systemd-journal-remote is not installed");
  await runProgram(program, [`--output=${join(dir, file)}`, "-"], exportFormat(entries));
}

export const TEST_BOOT_ID = "5e1ec7ed0000400080000000000b0071";

export interface EntrySpec {
  /** When it was logged, ms since the epoch. */
  time: number;
  message: string;
  unit?: string;
  exe?: string;
  uid?: string;
  identifier?: string;
  bootId?: string;
  /** More fields, as is. */
  extra?: ExportEntry;
}

/**
 * A journal entry as journald would store one from a service: trusted fields (_SYSTEMD_UNIT,
 * _EXE, _UID) set, __MONOTONIC_TIMESTAMP = __REALTIME_TIMESTAMP so that the two orders agree.
 */
export function journalEntry(spec: EntrySpec): ExportEntry {
  const micros = String(Math.round(spec.time * 1000));
  const entry: ExportEntry = {
    __REALTIME_TIMESTAMP: micros,
    __MONOTONIC_TIMESTAMP: micros,
    _BOOT_ID: spec.bootId ?? TEST_BOOT_ID,
    _SOURCE_REALTIME_TIMESTAMP: micros,
    _UID: spec.uid ?? "0",
    _EXE: spec.exe ?? "/usr/sbin/dovecot",
    SYSLOG_IDENTIFIER: spec.identifier ?? "dovecot",
    MESSAGE: spec.message,
  };
  if (spec.unit !== undefined) entry._SYSTEMD_UNIT = spec.unit;
  return { ...entry, ...spec.extra };
}

/** Every entry of a journal directory, as journalctl prints it (for cursors). */
export async function readJournal(
  dir: string,
  matches: readonly string[] = [],
): Promise<JournalFields[]> {
  const { stdout } = await runProgram("journalctl", [
    `--directory=${dir}`,
    "--output=json",
    "--all",
    "--no-pager",
    "--",
    ...matches,
  ]);
  return stdout
    .toString()
    .split("\n")
    .filter((line) => line !== "")
    .map(parseJournalJson);
}
