/**
 * The fault-injection suite's common parts: a daemon on a scratch config with file input, login
 * lines each from its own address, and the count every scenario prints: logins written,
 * granted, lost (written, not in the spool) and wrongly granted (in the spool, never written).
 */
import assert from "node:assert/strict";
import { appendFile, mkdir, readdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { scratch } from "../helpers.js";
import { type RunningDaemon, startDaemon } from "./daemon.js";

export interface FaultSetup {
  dir: string;
  log: string;
  spool: string;
  map: string;
  state: string;
}

/**
 * A conf.d for one daemon reading `log` (Dovecot's own log file) into a spool and a plain map,
 * with a relay period long enough that nothing expires during a test. Directories may be given
 * (a small tmpfs for the spool or the map).
 */
export async function faultSetup(
  options: {
    spool?: string;
    mapDir?: string;
    input?: string;
    period?: string;
    /** relay.session_max; by default the period's, which turns relay while connected off. */
    sessionMax?: string;
    extra?: string;
  } = {},
): Promise<FaultSetup> {
  const dir = await scratch("poprelay-fault-");
  const logDir = join(dir, "log");
  await mkdir(logDir);
  const setup: FaultSetup = {
    dir,
    log: join(logDir, "dovecot.log"),
    spool: options.spool ?? join(dir, "spool"),
    map: join(options.mapDir ?? dir, "relay"),
    state: join(dir, "state"),
  };
  await mkdir(join(dir, "conf.d"));
  const yaml = [
    "agent: dovecot",
    options.input ?? `input:\n  source: file\n  file: ${setup.log}`,
    // The addresses below are documentation and private ones, which the defaults grant anyway.
    "match:\n  ignore: []",
    // The logins here have no end lines: relay lasts one period, not while a session is open.
    `relay:\n  period: ${options.period ?? "2h"}\n  session_max: ${options.sessionMax ?? options.period ?? "2h"}`,
    `spool:\n  directory: ${setup.spool}`,
    `state:\n  directory: ${setup.state}`,
    `map:\n  mta: plain\n  file: ${setup.map}`,
    options.extra ?? "",
  ].join("\n");
  await writeFile(join(dir, "conf.d", "50-fault.yaml"), `${yaml}\n`);
  return setup;
}

/** The n-th distinct address: 10.a.b.c, never 0 or 255 in the last octet. */
export function address(n: number): string {
  const host = (n % 250) + 1;
  const net = Math.floor(n / 250);
  return `10.${(net >> 8) & 255}.${net & 255}.${host}`;
}

/** A classic-syslog stamp (local time, no year) for `time`, as Dovecot's log_path writes it. */
export function classicStamp(time: Date): string {
  const month = time.toLocaleString("en-US", { month: "short" });
  const day = String(time.getDate()).padStart(2, " ");
  return `${month} ${day} ${time.toTimeString().slice(0, 8)}`;
}

/** What Dovecot logs for a POP3 login from `ip` (after its stamp, or as a journal MESSAGE). */
export function loginMessage(ip: string): string {
  const user = `u${ip.replaceAll(".", "-")}`;
  return `pop3-login: Info: Login: user=<${user}>, method=PLAIN, rip=${ip}, lip=127.0.0.1, mpid=1, session=<${ip.replaceAll(".", "x")}>`;
}

/** Dovecot's own log line for a POP3 login from `ip`, stamped `time` (now by default). */
export function loginLine(ip: string, time = new Date(), stamp = classicStamp): string {
  return `${stamp(time)} ${loginMessage(ip)}\n`;
}

/** Writes login lines and remembers which addresses were written. */
export class LoginWriter {
  readonly written = new Set<string>();
  private next = 0;

  constructor(
    private readonly path: () => string,
    private readonly line: (ip: string) => string = (ip) => loginLine(ip),
  ) {}

  /** The next `count` addresses, counted as written (for writes made elsewhere). */
  take(count: number): string[] {
    const ips: string[] = [];
    for (let i = 0; i < count; i++) ips.push(address(this.next++));
    for (const ip of ips) this.written.add(ip);
    return ips;
  }

  /** Appends `count` logins, one write each (as a server writes them). */
  async write(count: number): Promise<void> {
    for (let i = 0; i < count; i++) {
      const ip = address(this.next++);
      await appendFile(this.path(), this.line(ip));
      this.written.add(ip);
    }
  }

  /** Appends `count` logins in one write (a burst the reader sees at once). */
  async burst(count: number): Promise<void> {
    let text = "";
    for (let i = 0; i < count; i++) {
      const ip = address(this.next++);
      text += this.line(ip);
      this.written.add(ip);
    }
    await appendFile(this.path(), text);
  }
}

/** The addresses that have a spool entry. */
export async function spooled(spool: string): Promise<Set<string>> {
  const names = await readdir(spool).catch(() => [] as string[]);
  return new Set(names.filter((n) => /^\d+\.\d+\.\d+\.\d+$/.test(n)));
}

export interface Counts {
  scenario: string;
  written: number;
  granted: number;
  lost: number;
  wrong: number;
}

/** Compares what was written with what the spool grants; prints the table line. */
export async function count(
  scenario: string,
  written: ReadonlySet<string>,
  spool: string,
): Promise<Counts> {
  const granted = await spooled(spool);
  const lost = [...written].filter((ip) => !granted.has(ip));
  const wrong = [...granted].filter((ip) => !written.has(ip));
  const counts = {
    scenario,
    written: written.size,
    granted: granted.size - wrong.length,
    lost: lost.length,
    wrong: wrong.length,
  };
  console.log(
    `fault | ${scenario.padEnd(58)} | written ${String(counts.written).padStart(5)} | granted ${String(counts.granted).padStart(5)} | lost ${counts.lost} | wrong ${counts.wrong}`,
  );
  if (lost.length > 0) console.log(`fault |   lost: ${lost.slice(0, 20).join(" ")}`);
  return counts;
}

/** Fails unless every written login is granted and nothing else is. */
export function assertNoLoss(counts: Counts, log = ""): void {
  assert.equal(counts.lost, 0, `${counts.scenario}: ${counts.lost} logins lost\n${log}`);
  assert.equal(counts.wrong, 0, `${counts.scenario}: ${counts.wrong} wrongly granted`);
}

/** Waits until the spool holds every written address, or `timeoutMs` passed (then counts). */
export async function settle(
  written: ReadonlySet<string>,
  spool: string,
  timeoutMs = 15_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const granted = await spooled(spool);
    if ([...written].every((ip) => granted.has(ip))) return;
    await sleep(50);
  }
}

/** Starts the daemon and waits until it runs (READY: the first map is written). */
export async function runDaemon(setup: FaultSetup, env: NodeJS.ProcessEnv = {}) {
  const daemon: RunningDaemon = startDaemon(setup.dir, env);
  await daemon.waitForLog(/running \(notify/, 0, 20_000);
  return daemon;
}
