/**
 * Journal directories for the bench, written by systemd-journal-remote from the Journal Export
 * Format (as test/support/journald.ts does for the tests): it keeps the trusted fields it is
 * given (_SYSTEMD_UNIT, _EXE, _UID), so the entries look as journald would have stored them for
 * services run by systemd, and the agent's own trust rules apply unchanged.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { access } from "node:fs/promises";
import { join } from "node:path";
import type { MailTraffic, SyntheticLine } from "./synthetic.js";

export const BOOT_ID = "5e1ec7ed0000400080000000000b0071";
const MACHINE_ID = "0b0071b0071b0071b0071b0071b00710";

const EXE: Record<string, string> = {
  dovecot: "/usr/lib/dovecot/log",
  amavis: "/usr/bin/perl",
  opendkim: "/usr/sbin/opendkim",
};

/** One entry in the export format, with the fields journald records for a syslog line. */
export function exportEntry(line: SyntheticLine, ms: number, monotonicUs: number): string {
  const us = String(Math.round(ms * 1000));
  const program = line.identifier.includes("/") ? line.identifier.split("/")[1] : line.identifier;
  const exe =
    EXE[line.identifier] ??
    (line.identifier.startsWith("postfix/") ? `/usr/lib/postfix/sbin/${program}` : "/usr/bin/env");
  return (
    `__REALTIME_TIMESTAMP=${us}\n__MONOTONIC_TIMESTAMP=${monotonicUs}\n_BOOT_ID=${BOOT_ID}\n` +
    `_MACHINE_ID=${MACHINE_ID}\n_HOSTNAME=mx1\n_TRANSPORT=syslog\nPRIORITY=6\nSYSLOG_FACILITY=2\n` +
    `_UID=0\n_GID=0\n_CAP_EFFECTIVE=0\n_SYSTEMD_SLICE=system.slice\n_SYSTEMD_UNIT=${line.unit}\n` +
    `_SYSTEMD_CGROUP=/system.slice/${line.unit}\n_SYSTEMD_INVOCATION_ID=${BOOT_ID}\n` +
    `_PID=${line.pid}\n_COMM=${program}\n_EXE=${exe}\n_CMDLINE=${exe}\n` +
    `SYSLOG_IDENTIFIER=${line.identifier}\nSYSLOG_PID=${line.pid}\nSYSLOG_TIMESTAMP=x\n` +
    `_SOURCE_REALTIME_TIMESTAMP=${us}\nMESSAGE=${line.message}\n\n`
  );
}

export const JOURNAL_REMOTE = [
  "/lib/systemd/systemd-journal-remote",
  "/usr/lib/systemd/systemd-journal-remote",
];

export async function journalRemote(): Promise<string | undefined> {
  for (const path of JOURNAL_REMOTE) {
    try {
      await access(path);
      return path;
    } catch {
      // next
    }
  }
  return undefined;
}

/** A journal-remote process that appends what is written to its stdin to DIR/NAME. */
export function journalWriter(program: string, dir: string, name = "live.journal"): ChildProcess {
  return spawn(program, [`--output=${join(dir, name)}`, "-"], {
    stdio: ["pipe", "ignore", "pipe"],
  });
}

/** Writes `count` entries of `traffic`, a line every `stepMs` from `startMs`; resolves when written. */
export async function writeJournalDirectory(
  program: string,
  dir: string,
  traffic: MailTraffic,
  count: number,
  startMs: number,
  stepMs: number,
  index = 0,
  /** __MONOTONIC_TIMESTAMP is realtime minus this (one boot, so files interleave by time). */
  bootMs = startMs - 1000,
): Promise<void> {
  const child = journalWriter(program, dir, `bench-${index}.journal`);
  let stderr = "";
  child.stderr?.setEncoding("utf8").on("data", (text: string) => {
    stderr += text;
  });
  const closed = new Promise<void>((resolve, reject) =>
    child.on("close", (code) =>
      code === 0
        ? resolve()
        : reject(new Error(`systemd-journal-remote: exit ${code}: ${stderr.slice(-500)}`)),
    ),
  );
  const stdin = child.stdin;
  if (!stdin) throw new Error("no stdin");
  let chunk = "";
  for (let i = 0; i < count; i++) {
    const ms = startMs + i * stepMs;
    chunk += exportEntry(traffic.next(), ms, Math.round((ms - bootMs) * 1000));
    if (chunk.length > 1 << 20) {
      if (!stdin.write(chunk)) await new Promise((resolve) => stdin.once("drain", resolve));
      chunk = "";
    }
  }
  stdin.end(chunk);
  await closed;
}
