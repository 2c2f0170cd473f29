/**
 * Replay and reader throughput:
 * - `poprelay match --agent dovecot FILE` over a synthetic mail log, next to `grep -c` and
 *   `fail2ban-regex` with a filter that matches the same login lines, on the same file;
 * - the journal reader (journalctl child, JSON parsing, the matcher) over a journal directory,
 *   next to the same journalctl run alone, with the agent's matches.
 */
import { closeSync, openSync, writeSync } from "node:fs";
import { access, mkdir, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { journalMatches } from "../src/daemon/components.js";
import { memoryLogger } from "../src/log.js";
import { builtinAgent } from "../src/matcher/agents.js";
import { createMatcher } from "../src/matcher/matcher.js";
import { JournalReader, journalctlArguments } from "../src/readers/journal.js";
import { journalRemote, writeJournalDirectory } from "./journal-files.js";
import { MailTraffic, syslogLine } from "./synthetic.js";
import { CLI, median, progress, sleep, timed, which } from "./util.js";

const dovecot = builtinAgent("dovecot");

/** The synthetic log's first line is at this time; a line every STEP_MS after it. */
export const START_MS = Date.UTC(2026, 2, 2);
const STEP_MS = 86.4; // 1,000,000 lines a day

export interface LogFacts {
  lines: number;
  logins: number;
  ignored: number;
  hostile: number;
  bytes: number;
}

/** Writes the synthetic mail log; returns what the dovecot profile must find in it. */
export function writeMailLog(path: string, lines: number, seed: number): LogFacts {
  const traffic = new MailTraffic(seed);
  const facts: LogFacts = { lines, logins: 0, ignored: 0, hostile: 0, bytes: 0 };
  const fd = openSync(path, "w");
  try {
    let chunk = "";
    for (let i = 0; i < lines; i++) {
      const line = traffic.next();
      if (line.kind === "login") facts.logins++;
      else if (line.kind === "ignored") facts.ignored++;
      else if (line.kind === "hostile") facts.hostile++;
      chunk += syslogLine(line, START_MS + i * STEP_MS);
      if (chunk.length > 1 << 22) {
        facts.bytes += writeSync(fd, chunk);
        chunk = "";
      }
    }
    facts.bytes += writeSync(fd, chunk);
  } finally {
    closeSync(fd);
  }
  return facts;
}

export interface ToolRun {
  tool: string;
  command: string;
  /** Wall time of the whole command, median of the runs, ms. */
  wallMs: number;
  /** Lines per second over the wall time. */
  linesPerSecond: number;
  /** What the tool itself reports, where it does. */
  reportedLinesPerSecond?: number;
  matched: number;
  runs: number;
}

/** A fail2ban filter that finds the lines poprelay grants: the login lines, by address. */
const FAIL2BAN_FILTER = `[Definition]
failregex = ^\\s*\\S+ dovecot(?:\\[\\d+\\])?: (?:pop3|imap|submission|managesieve)-login: (?:Info: )?(?:Login|Logged in): user=<[^>]*>, method=\\S+, rip=<HOST>, lip=
datepattern = {^LN-BEG}
`;

export async function replay(
  dir: string,
  file: string,
  facts: LogFacts,
  runs: number,
  withFail2ban = true,
): Promise<ToolRun[]> {
  const results: ToolRun[] = [];
  const conf = join(dir, "match-config");
  await mkdir(join(conf, "conf.d"), { recursive: true });
  await writeFile(join(conf, "conf.d", "50-bench.yaml"), "agent: dovecot\n");

  const poprelay: number[] = [];
  const reported: number[] = [];
  let matched = 0;
  for (let i = 0; i < runs; i++) {
    const run = await timed(process.execPath, [
      CLI,
      "match",
      "--agent",
      "dovecot",
      "--config-dir",
      conf,
      file,
    ]);
    if (run.code !== 0) throw new Error(`poprelay match failed: ${run.stderr}`);
    poprelay.push(run.ms);
    reported.push(Number(/lines\/s: (\d+)/.exec(run.stderr)?.[1]));
    matched = Number(/matched: (\d+)/.exec(run.stderr)?.[1]);
    if (matched !== facts.logins)
      throw new Error(`poprelay match found ${matched} logins, the log has ${facts.logins}`);
  }
  const wall = median(poprelay);
  results.push({
    tool: "poprelay match",
    command: `poprelay match --agent dovecot FILE`,
    wallMs: wall,
    linesPerSecond: (facts.lines / wall) * 1000,
    reportedLinesPerSecond: median(reported),
    matched,
    runs,
  });

  const grep: number[] = [];
  let grepCount = 0;
  for (let i = 0; i < runs; i++) {
    const run = await timed("grep", ["-c", "-F", "--", "-login: Login: ", file], {
      keepStdout: true,
      env: { ...process.env, LC_ALL: "C" },
    });
    grep.push(run.ms);
    grepCount = Number(run.stdout.trim());
  }
  results.push({
    tool: "grep -c",
    command: "LC_ALL=C grep -c -F -- '-login: Login: ' FILE",
    wallMs: median(grep),
    linesPerSecond: (facts.lines / median(grep)) * 1000,
    matched: grepCount,
    runs,
  });

  const fail2ban = withFail2ban ? await which("fail2ban-regex") : undefined;
  if (fail2ban) {
    const filter = join(dir, "poprelay-login.conf");
    await writeFile(filter, FAIL2BAN_FILTER);
    progress("fail2ban-regex (slow: one run)");
    const run = await timed(fail2ban, [file, filter], { keepStdout: true });
    const lines = /Lines: (\d+) lines, \d+ ignored, (\d+) matched/.exec(run.stdout);
    results.push({
      tool: "fail2ban-regex",
      command: "fail2ban-regex FILE poprelay-login.conf",
      wallMs: run.ms,
      linesPerSecond: (facts.lines / run.ms) * 1000,
      matched: Number(lines?.[2]),
      runs: 1,
    });
  }
  return results;
}

export interface JournalFacts {
  entries: number;
  directory: string;
  /** Set-up time, ms (0 when taken from the cache). */
  builtMs: number;
}

/** The journal directory for `entries`, from the cache when an earlier run left it complete. */
export async function journalDirectory(
  cache: string,
  entries: number,
  seed: number,
): Promise<JournalFacts> {
  const program = await journalRemote();
  if (!program)
    throw new Error("systemd-journal-remote is not installed (package systemd-journal-remote)");
  // v1: the generator's version; bump it when synthetic.ts or journal-files.ts change.
  const directory = join(cache, `journal-v1-${entries}-${seed}`);
  const done = join(directory, ".complete");
  try {
    await access(done);
    return { entries, directory, builtMs: 0 };
  } catch {
    // Build it.
  }
  await rm(directory, { recursive: true, force: true });
  await mkdir(directory, { recursive: true });
  const started = performance.now();
  // Two writers (two cores), each its own file: journalctl interleaves them by time.
  const half = Math.ceil(entries / 2);
  await Promise.all([
    writeJournalDirectory(
      program,
      directory,
      new MailTraffic(seed),
      half,
      START_MS,
      STEP_MS * 2,
      0,
      START_MS - 1000,
    ),
    writeJournalDirectory(
      program,
      directory,
      new MailTraffic(seed + 1),
      entries - half,
      START_MS + STEP_MS,
      STEP_MS * 2,
      1,
      START_MS - 1000,
    ),
  ]);
  await writeFile(done, "");
  return { entries, directory, builtMs: performance.now() - started };
}

export interface ReaderRun {
  what: string;
  command: string;
  wallMs: number;
  entriesPerSecond: number;
  entries: number;
  /** Logins the matcher accepted (reader only). */
  matched?: number;
}

export async function journalThroughput(
  facts: JournalFacts,
  stateDir: string,
  runs: number,
): Promise<ReaderRun[]> {
  const matches = journalMatches(dovecot, []);
  const args = journalctlArguments({
    matches,
    directory: facts.directory,
    position: { since: 0 },
    follow: false,
  });
  const alone: number[] = [];
  let entries = 0;
  for (let i = 0; i < runs; i++) {
    const run = await countLines("journalctl", args);
    alone.push(run.ms);
    entries = run.lines;
  }
  const aloneMs = median(alone);

  const reader: number[] = [];
  let matched = 0;
  for (let i = 0; i < runs; i++) {
    const stateFile = join(stateDir, `reader-${i}.cursor`);
    const result = await readAll(facts.directory, matches, stateFile);
    reader.push(result.ms);
    matched = result.matched;
  }
  const readerMs = median(reader);
  return [
    {
      what: "journalctl alone",
      command: `journalctl ${args.join(" ")} | (read every line)`,
      wallMs: aloneMs,
      entriesPerSecond: (entries / aloneMs) * 1000,
      entries,
    },
    {
      what: "poprelay journal reader",
      command: "JournalReader (same journalctl, agent prefilter) + matcher, in one Node process",
      wallMs: readerMs,
      entriesPerSecond: (entries / readerMs) * 1000,
      entries,
      matched,
    },
  ];
}

/** Runs a program, reading its stdout through a pipe as the reader does, counting lines. */
async function countLines(file: string, args: readonly string[]) {
  const { spawn } = await import("node:child_process");
  return new Promise<{ ms: number; lines: number }>((resolve, reject) => {
    const started = performance.now();
    const child = spawn(file, [...args], { stdio: ["ignore", "pipe", "ignore"] });
    let lines = 0;
    child.stdout.on("data", (chunk: Buffer) => {
      for (let at = chunk.indexOf(10); at !== -1; at = chunk.indexOf(10, at + 1)) lines++;
    });
    child.on("error", reject);
    child.on("close", () => resolve({ ms: performance.now() - started, lines }));
  });
}

/**
 * The journal reader as the daemon builds it (the agent's matches and prefilter), with the
 * daemon's matcher as its sink, from start to the end of its catch-up run: every entry read,
 * the last batch acknowledged, journalctl started again to follow.
 */
async function readAll(
  directory: string,
  matches: string[],
  stateFile: string,
): Promise<{ ms: number; matched: number }> {
  const match = createMatcher({ profile: dovecot, ignore: ["127.0.0.0/8", "::1/128"], allow: [] });
  let matched = 0;
  const reader = new JournalReader({
    matches,
    directory,
    stateFile,
    firstStartSince: Math.ceil((Date.now() - START_MS) / 1000) + 86_400,
    log: memoryLogger(),
    prefilter: dovecot.prefilter,
  });
  const started = performance.now();
  await reader.start(async (batch) => {
    const now = new Date();
    for (const entry of batch) if (match(entry, now).accepted) matched++;
    return false;
  });
  while (!reader.status().startsWith("journal: following")) await sleep(2);
  const ms = performance.now() - started;
  await reader.stop();
  return { ms, matched };
}
