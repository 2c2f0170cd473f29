/**
 * A private Dovecot 2.3 POP3 server for tests: Debian's dovecot-core + dovecot-pop3d, its own
 * config file (`dovecot -F -c FILE`; /etc/dovecot is neither read nor touched), its own
 * base_dir and state_dir, listening on one free 127.0.0.1 port. Several instances can run side
 * by side (give each its own `dir`). Needs root: the master runs as root, the login processes
 * as dovenull, anvil/auth as dovecot, and the mail processes as nobody:nogroup (Dovecot refuses
 * UID 0 for mail processes).
 *
 * What Dovecot 2.3.19 logs, captured from this harness (Debian 12, default log formats;
 * `pop3_logout_format`, `login_log_format_elements` and `log_timestamp` left at their defaults):
 *
 * In its own log file (`logPath`, i.e. `log_path`; info/debug default to the same file). The
 * timestamp is `log_timestamp = "%b %d %H:%M:%S "` (no year, no host, no PID); the severity is
 * written as "Info: ":
 *
 *   Nov 24 03:41:30 master: Info: Dovecot v2.3.19.1 (9b53102964) starting up for pop3 (core dumps disabled)
 *   Nov 24 03:41:35 pop3-login: Info: Login: user=<alice>, method=PLAIN, rip=127.0.0.9, lip=127.0.0.1, mpid=27922, session=<YJeufP1gE5F/AAAJ>
 *   Nov 24 03:41:35 pop3(alice)<27922><YJeufP1gE5F/AAAJ>: Info: Disconnected: Logged out top=0/0, retr=0/0, del=0/0, size=0
 *   Nov 24 03:41:37 pop3-login: Info: Disconnected: Aborted login by logging out (auth failed, 1 attempts in 2 secs): user=<alice>, method=PLAIN, rip=127.0.0.10, lip=127.0.0.1, session=<EjevfP1ga75/AAAK>
 *   Nov 24 03:41:55 master: Warning: Killed with signal 15 (by pid=27971 uid=0 code=kill)
 *
 * Through syslog (no `logPath`): the `log` child process (/usr/lib/dovecot/log, comm "log",
 * uid 0) sends, via glibc syslog(3) to /dev/log, facility mail (<22> = mail.info,
 * <20> = mail.warning), ident = `instance_name` (default "dovecot"); there is no "Info: " in
 * the text, the priority carries the severity. Master's own lines come from /usr/sbin/dovecot.
 * Raw datagrams as they arrive on /dev/log:
 *
 *   <22>Nov 24 03:42:57 dovecot: pop3-login: Login: user=<alice>, method=PLAIN, rip=127.0.0.9, lip=127.0.0.1, mpid=29013, session=<ZLaSgf1gJa1/AAAJ>
 *   <22>Nov 24 03:42:57 dovecot: pop3(alice)<29013><ZLaSgf1gJa1/AAAJ>: Disconnected: Logged out top=0/0, retr=0/0, del=0/0, size=0
 *   <22>Nov 24 03:42:59 dovecot: pop3-login: Disconnected: Aborted login by logging out (auth failed, 1 attempts in 2 secs): user=<alice>, method=PLAIN, rip=127.0.0.10, lip=127.0.0.1, session=<va6Tgf1gwal/AAAK>
 *   <22>Nov 24 03:43:03 dovecot: pop3-login: Disconnected: Connection closed (auth failed, 1 attempts in 2 secs): user=<alice>, method=PLAIN, rip=127.0.0.12, lip=127.0.0.1, session=<l3vWgf1g+9N/AAAM>
 *   <22>Nov 24 03:43:03 dovecot: pop3(alice)<29094><cbTvgf1gib1/AAAN>: Disconnected: Connection closed top=0/0, retr=0/0, del=0/0, size=0
 *   <22>Nov 24 03:43:03 dovecot: pop3-login: Disconnected: Connection closed (no auth attempts in 0 secs): user=<>, rip=127.0.0.14, lip=127.0.0.1, session=<PbTwgf1gg5V/AAAO>
 *
 * In the journal that is SYSLOG_IDENTIFIER=dovecot, MESSAGE="pop3-login: Login: user=<alice>, ...",
 * _EXE=/usr/lib/dovecot/log, _COMM=log; rsyslog writes "Nov 24 03:42:57 HOST dovecot: pop3-login: Login: ...".
 * An unknown user fails exactly like a wrong password (user=<bob> ... auth failed). The failed
 * login's line is written when the client leaves, after `auth_failure_delay` (default 2 secs).
 *
 * Readiness is judged from /proc (the master owns a LISTEN socket on the port), not by
 * connecting, because every POP3 connection, even a probe, is logged.
 */

import { type ChildProcess, spawn } from "node:child_process";
import { constants, existsSync, readdirSync, readFileSync, readlinkSync } from "node:fs";
import { access, chmod, chown, mkdir, readFile, stat, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { dirname, join, resolve } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { IN_CI } from "../helpers.js";

export const DOVECOT = "/usr/sbin/dovecot";
const POP3_BINARIES = ["/usr/lib/dovecot/pop3", "/usr/lib/dovecot/pop3-login"];

export interface DovecotOptions {
  /** A scratch directory; everything goes under DIR/dovecot. Gets o+x so mail processes reach it. */
  dir: string;
  /** name → plaintext password, written to a passwd-file as {PLAIN}. */
  users: Record<string, string>;
  /** Dovecot's own log file (log_path). Default: syslog (facility mail, via /dev/log). */
  logPath?: string;
  /** POP3 port on 127.0.0.1. Default: a free one. */
  port?: number;
  /** instance_name, which is also the syslog ident. Default "dovecot". */
  instanceName?: string;
  /** auth_failure_delay. Default: Dovecot's ("2 secs"). */
  authFailureDelay?: string;
  /** Appended to the generated dovecot.conf. */
  extraConfig?: string;
}

export interface Dovecot {
  pop3Port: number;
  /** The generated dovecot.conf (for `doveconf -c`, `doveadm -c`). */
  configFile: string;
  /** = options.logPath, when given. */
  logFile?: string;
  /** The master process (also its process group). */
  pid: number;
  /**
   * SIGTERM to the master, waits for every process of the instance to be gone (SIGKILL after
   * 10 s). Idempotent. Call it from an after() hook of the suite or file; do not register that
   * hook inside a before() hook: node:test runs such an after() as soon as the before() ends.
   * Groups still alive when node exits are SIGKILLed.
   */
  stop(): Promise<void>;
}

// ------------------------------------------------- shared by the server harnesses (postfix.ts)

/** A reason to skip (outside CI) when `binaries` are missing or we are not root; else false. */
export function skipReason(what: string, binaries: readonly string[]): string | false {
  if (IN_CI) return false;
  if (process.getuid?.() !== 0) return `${what} tests need root`;
  const missing = binaries.filter((b) => !existsSync(b));
  return missing.length > 0 ? `${what} is not installed (${missing.join(", ")})` : false;
}

export async function requireExecutables(what: string, files: readonly string[]): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error(`${what}: the test harness must run as root`);
  for (const file of files) {
    try {
      await access(file, constants.X_OK);
    } catch {
      throw new Error(`${what}: ${file} is missing; install it (see scripts/test.sh)`);
    }
  }
}

/** uid (and primary gid) of a user, or gid of a group, from /etc/passwd and /etc/group. */
export function systemId(kind: "user" | "group", name: string): number {
  const file = kind === "user" ? "/etc/passwd" : "/etc/group";
  for (const line of readFileSync(file, "utf8").split("\n")) {
    const fields = line.split(":");
    if (fields[0] === name && fields[2] !== undefined) return Number(fields[2]);
  }
  throw new Error(`no ${kind} ${name} in ${file} (the Debian package creates it)`);
}

/** A TCP port on 127.0.0.1 that was free a moment ago. */
export function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : 0;
      server.close(() => (port ? resolvePort(port) : reject(new Error("no port"))));
    });
  });
}

/** Paths are written into config files unquoted: keep them plain. */
export function assertPlainPath(path: string): void {
  if (!/^\/[\w./+-]*$/.test(path)) throw new Error(`path not usable in a config file: ${path}`);
}

/** Gives others search (x) permission on `dir` and checks its ancestors already have it. */
export async function makeTraversable(dir: string): Promise<void> {
  const mode = (await stat(dir)).mode;
  if ((mode & 0o001) === 0) await chmod(dir, (mode & 0o7777) | 0o011);
  for (let parent = dirname(dir); ; parent = dirname(parent)) {
    if (((await stat(parent)).mode & 0o001) === 0)
      throw new Error(`${parent} is not searchable by other users; use a scratch dir under /tmp`);
    if (parent === dirname(parent)) break;
  }
}

interface ProcessInfo {
  pid: number;
  ppid: number;
  pgid: number;
  state: string;
  comm: string;
}

/** Every process, from /proc/PID/stat. */
export function processTable(): ProcessInfo[] {
  const table: ProcessInfo[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${entry}/stat`, "utf8");
    } catch {
      continue; // gone meanwhile
    }
    // "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses.
    const open = stat.indexOf("(");
    const close = stat.lastIndexOf(")");
    const [state = "", ppid = "0", pgid = "0"] = stat.slice(close + 2).split(" ");
    table.push({
      pid: Number(entry),
      ppid: Number(ppid),
      pgid: Number(pgid),
      state,
      comm: stat.slice(open + 1, close),
    });
  }
  return table;
}

/** Live (not zombie) members of a process group. */
export function groupMembers(pgid: number): ProcessInfo[] {
  return processTable().filter((p) => p.pgid === pgid && p.state !== "Z" && p.state !== "X");
}

/** Whether `pid` holds a socket listening on TCP `port` (judged from /proc, no connection made). */
export function listensOn(pid: number, port: number): boolean {
  const inodes = new Set<string>();
  for (const file of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    let text = "";
    try {
      text = readFileSync(file, "utf8");
    } catch {
      continue;
    }
    for (const line of text.split("\n").slice(1)) {
      const fields = line.trim().split(/\s+/);
      const local = fields[1]?.split(":")[1];
      if (local && fields[3] === "0A" && Number.parseInt(local, 16) === port && fields[9])
        inodes.add(fields[9]);
    }
  }
  if (inodes.size === 0) return false;
  let fds: string[];
  try {
    fds = readdirSync(`/proc/${pid}/fd`);
  } catch {
    return false;
  }
  return fds.some((fd) => {
    try {
      const target = readlinkSync(`/proc/${pid}/fd/${fd}`);
      return inodes.has(/^socket:\[(\d+)\]$/.exec(target)?.[1] ?? "");
    } catch {
      return false;
    }
  });
}

/** Polls `check` until it returns a value (not undefined), or throws after `timeoutMs`. */
export async function waitFor<T>(
  what: string,
  check: () => T | undefined | Promise<T | undefined>,
  timeoutMs = 10_000,
  intervalMs = 25,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timeout after ${timeoutMs} ms waiting for ${what}`);
    await sleep(intervalMs);
  }
}

// Process groups still running when node exits (a crash, an unhandled error) are SIGKILLed.
const liveGroups = new Set<number>();
let exitHookInstalled = false;

export function trackGroup(pgid: number): void {
  liveGroups.add(pgid);
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on("exit", () => {
    for (const group of liveGroups) {
      try {
        process.kill(-group, "SIGKILL");
      } catch {
        // already gone
      }
    }
  });
}

/**
 * Stops a server whose master leads its own process group: SIGTERM to the master, then waits
 * until no live process is left in the group; SIGKILLs the group if that takes over `graceMs`.
 */
export async function stopGroup(what: string, pgid: number, graceMs = 10_000): Promise<void> {
  try {
    process.kill(pgid, "SIGTERM");
  } catch {
    // the master is gone already; its children may not be
  }
  try {
    await waitFor(
      `${what} to stop`,
      () => (groupMembers(pgid).length === 0 ? true : undefined),
      graceMs,
    );
  } catch {
    try {
      process.kill(-pgid, "SIGKILL");
    } catch {
      // gone meanwhile
    }
    await waitFor(
      `${what} to die after SIGKILL`,
      () => (groupMembers(pgid).length === 0 ? true : undefined),
      5000,
    );
  } finally {
    liveGroups.delete(pgid);
  }
}

/** Waits until a line of `file` matches `pattern`; returns that line. */
export function waitForLogLine(file: string, pattern: RegExp, timeoutMs = 5000): Promise<string> {
  return waitFor(
    `a line matching ${pattern} in ${file}`,
    async () => {
      let text = "";
      try {
        text = await readFile(file, "utf8");
      } catch {
        return undefined;
      }
      return text.split("\n").find((line) => pattern.test(line));
    },
    timeoutMs,
  );
}

const tail = (file: string | undefined) => {
  if (!file) return "";
  try {
    return readFileSync(file, "utf8").split("\n").slice(-15).join("\n");
  } catch {
    return "";
  }
};

// ------------------------------------------------------------------------------------ Dovecot

export const dovecotSkipReason = () => skipReason("Dovecot", [DOVECOT, ...POP3_BINARIES]);

function dovecotConf(options: {
  base: string;
  port: number;
  logPath: string | undefined;
  instanceName: string;
  authFailureDelay: string | undefined;
  extraConfig: string | undefined;
}): string {
  const { base, port } = options;
  const lines = [
    "# Generated by test/support/dovecot.ts: a private POP3 instance on loopback.",
    `base_dir = ${base}/run`,
    `state_dir = ${base}/state`,
    `instance_name = ${options.instanceName}`,
    "protocols = pop3",
    "listen = 127.0.0.1",
    "ssl = no",
    "disable_plaintext_auth = no",
    "auth_mechanisms = plain",
    // No DNS: hostname is otherwise derived from the system name (gethostbyname); winbind off;
    // no trusted networks, so every client's own address is logged as rip=.
    "hostname = pop.poprelay.test",
    "auth_use_winbind = no",
    "login_trusted_networks =",
    "import_environment = TZ",
    "default_internal_user = dovecot",
    "default_login_user = dovenull",
    ...(options.logPath ? [`log_path = ${options.logPath}`] : ["log_path = syslog"]),
    ...(options.authFailureDelay ? [`auth_failure_delay = ${options.authFailureDelay}`] : []),
    `mail_location = maildir:${base}/mail/%u`,
    "passdb {",
    "  driver = passwd-file",
    `  args = scheme=PLAIN ${base}/users`,
    "}",
    "userdb {",
    "  driver = static",
    `  args = uid=nobody gid=nogroup home=${base}/mail/%u`,
    "}",
    "service pop3-login {",
    "  inet_listener pop3 {",
    "    address = 127.0.0.1",
    `    port = ${port}`,
    "  }",
    "  inet_listener pop3s {",
    "    port = 0",
    "  }",
    "}",
    options.extraConfig ?? "",
  ];
  return `${lines.join("\n")}\n`;
}

/** Starts a private Dovecot; resolves once its master listens on the POP3 port. */
export async function startDovecot(options: DovecotOptions): Promise<Dovecot> {
  await requireExecutables("Dovecot", [DOVECOT, ...POP3_BINARIES]);
  for (const [user, kind] of [
    ["dovecot", "user"],
    ["dovenull", "user"],
    ["nobody", "user"],
    ["nogroup", "group"],
  ] as const)
    systemId(kind, user);
  const dir = resolve(options.dir);
  const base = join(dir, "dovecot");
  const logPath = options.logPath === undefined ? undefined : resolve(options.logPath);
  assertPlainPath(base);
  if (logPath) assertPlainPath(logPath);
  if (join(base, "run", "login", "pop3-login-stats").length > 100)
    throw new Error(`${dir} is too long for Dovecot's unix sockets (108 bytes)`);

  await makeTraversable(dir);
  await mkdir(base, { recursive: true, mode: 0o711 });
  await chmod(base, 0o711);
  await mkdir(join(base, "run"), { recursive: true });
  await mkdir(join(base, "state"), { recursive: true });
  const mail = join(base, "mail");
  await mkdir(mail, { recursive: true, mode: 0o700 });
  await chown(mail, systemId("user", "nobody"), systemId("group", "nogroup"));
  const passwd = Object.entries(options.users).map(([name, password]) => {
    if (/[:\s]/.test(name) || /[:\r\n]/.test(password) || name === "")
      throw new Error(`user or password not usable in a passwd-file: ${JSON.stringify(name)}`);
    return `${name}:{PLAIN}${password}\n`;
  });
  await writeFile(join(base, "users"), passwd.join(""), { mode: 0o644 });
  const configFile = join(base, "dovecot.conf");

  for (let attempt = 1; ; attempt++) {
    const port = options.port ?? (await freePort());
    await writeFile(
      configFile,
      dovecotConf({
        base,
        port,
        logPath,
        instanceName: options.instanceName ?? "dovecot",
        authFailureDelay: options.authFailureDelay,
        extraConfig: options.extraConfig,
      }),
    );
    try {
      return await launch(configFile, port, logPath);
    } catch (error) {
      const inUse = error instanceof Error && /Address already in use/.test(error.message);
      if (!inUse || options.port !== undefined || attempt >= 5) throw error;
    }
  }
}

async function launch(
  configFile: string,
  port: number,
  logPath: string | undefined,
): Promise<Dovecot> {
  // detached: the master leads a new process group (and session) that holds all its children,
  // so stop() can tell when every one of them is gone.
  const child: ChildProcess = spawn(DOVECOT, ["-F", "-c", configFile], {
    detached: true,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  child.stdout?.setEncoding("utf8").on("data", (s: string) => (output += s));
  child.stderr?.setEncoding("utf8").on("data", (s: string) => (output += s));
  let exited: string | undefined;
  const exit = new Promise<void>((resolveExit) =>
    child.once("exit", (code, signal) => {
      exited = `exited (${signal ?? code})`;
      resolveExit();
    }),
  );
  const spawnError = new Promise<Error>((resolveError) => child.once("error", resolveError));
  const pid = child.pid;
  if (pid === undefined) throw await spawnError;
  trackGroup(pid);
  try {
    await waitFor(
      `Dovecot to listen on 127.0.0.1:${port}`,
      () => {
        if (exited) throw new Error(`dovecot ${exited}`);
        return listensOn(pid, port) ? true : undefined;
      },
      20_000,
    );
  } catch (error) {
    await stopGroup("Dovecot", pid, 5000);
    throw new Error(
      `Dovecot did not start: ${(error as Error).message}\n${output}\n${tail(logPath)}`.trimEnd(),
    );
  }
  let stopping: Promise<void> | undefined;
  const stop = () => {
    stopping ??= (async () => {
      await stopGroup("Dovecot", pid);
      await exit;
    })();
    return stopping;
  };
  return { pop3Port: port, configFile, ...(logPath ? { logFile: logPath } : {}), pid, stop };
}
