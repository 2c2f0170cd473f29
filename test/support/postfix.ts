/**
 * A private Postfix 3.7 for tests (Debian's postfix package): its own config_directory with a
 * generated main.cf and master.cf (`postfix -c DIR start`; /etc/postfix's main.cf and
 * master.cf are not read or touched, only its postfix-files and dynamicmaps.cf through
 * meta_directory), its own queue_directory and data_directory, one smtpd on a free 127.0.0.1
 * port and nothing on port 25. Several instances can run side by side (give each its own dir).
 *
 * Relay is decided exactly as poprelay's README tells sites to configure it:
 *   smtpd_relay_restrictions = permit_mynetworks, check_client_access cidr:RELAYMAP,
 *     check_client_access TYPE:RELAYMAP, reject_unauth_destination
 * (the cidr table decides, exactly; the database TYPE matches nothing and only makes smtpd
 * notice a new map, see src/maps/keys.ts)
 * with mynetworks = 127.0.0.1/32 only, so the other 127.0.0.0/8 addresses are strangers unless
 * the map lists them. With `policyService`, `check_policy_service SERVICE` is asked after the map
 * (or instead of it, with no `relayMap`): OK permits, DUNNO falls through to
 * reject_unauth_destination. A refused RCPT is "554 5.7.1 <bob@remote.example>: Relay access denied";
 * a granted one is "250 2.1.5 Ok".
 *
 * Nothing can leave the machine: the master.cf has no smtp/lmtp client, relay and default
 * transports are discard:, no DNS (smtpd_peername_lookup = no, so clients are logged as
 * unknown[127.0.0.9]; smtp_dns_support_level = disabled; explicit myhostname/mydomain).
 * Postfix logs to its own file (maillog_file, through postlogd) instead of syslog.
 *
 * smtpd notices a replaced map by itself: before accepting the next connection each idle smtpd
 * checks whether an open table's file changed (the renamed-away file has st_nlink 0), logs
 * "table hash:/.../relay(0,lock|fold_fix|utf8_request) has changed -- restarting" and exits,
 * and a fresh smtpd takes the connection with the new table. No reload is needed.
 */
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { chmod, chown, mkdir, readFile, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import {
  assertPlainPath,
  freePort,
  listensOn,
  makeTraversable,
  requireExecutables,
  skipReason,
  stopGroup,
  systemId,
  trackGroup,
  waitFor,
} from "./dovecot.js";

export const POSTFIX = "/usr/sbin/postfix";
export const POSTMAP = "/usr/sbin/postmap";
const MASTER = "/usr/lib/postfix/sbin/master";
const BINARIES = [POSTFIX, POSTMAP, "/usr/sbin/postconf", MASTER, "/usr/lib/postfix/sbin/smtpd"];

export type PostfixMapType = "hash" | "btree" | "lmdb" | "cdb";

/** The file postmap builds next to the text map. */
const PRODUCT: Record<PostfixMapType, string> = {
  hash: ".db",
  btree: ".db",
  lmdb: ".lmdb",
  cdb: ".cdb",
};

export interface PostfixOptions {
  /** A scratch directory; everything goes under DIR/postfix. Gets o+x. */
  dir: string;
  /**
   * poprelay's map (map.file); created empty, with its database, when it does not exist.
   * May be left out when `policyService` decides relay instead.
   */
  relayMap?: string;
  /**
   * A policy server for `check_policy_service`, as main.cf spells it: `inet:127.0.0.1:PORT` or
   * `unix:/PATH` (the socket's directory must be searchable by the postfix user).
   */
  policyService?: string;
  /** Default "hash". lmdb needs postfix-lmdb, cdb postfix-cdb. */
  mapType?: PostfixMapType;
  /** smtpd port on 127.0.0.1. Default: a free one. */
  port?: number;
  /** Extra or overriding main.cf parameters. */
  mainCf?: Record<string, string>;
  /**
   * Run the package's integrity check and queue set-up (`postfix-script check-fatal`,
   * `post-install create-missing`, `check-warn`) on start: about 5 s here. Default false: the
   * harness lays out the queue itself, as postfix-files prescribes, and starts with
   * queue/quick-start present, which makes `postfix start` skip those checks (under 1 s).
   */
  check?: boolean;
}

export interface Postfix {
  smtpPort: number;
  /** config_directory: use with `postconf -c`, `postfix -c`. */
  configDir: string;
  queueDir: string;
  /** Postfix's log (maillog_file). */
  logFile: string;
  /** The master process (also its process group). */
  pid: number;
  /** What smtpd_relay_restrictions looks up, e.g. "hash:/tmp/x/relay"; none without relayMap. */
  relayTable?: string;
  /** The domain Postfix is final destination for (mydestination). */
  localDomain: string;
  /**
   * SIGTERM to the master (what `postfix stop` does), waits until every process of its group is
   * gone (SIGKILL after 10 s). Idempotent. Call it from an after() hook (see Dovecot.stop).
   */
  stop(): Promise<void>;
}

export const postfixSkipReason = () => skipReason("Postfix", BINARIES);

const LOCAL_DOMAIN = "poprelay.test";

function exec(file: string, args: readonly string[], timeoutMs = 60_000) {
  return new Promise<{ code: number; output: string }>((resolveRun) => {
    const env = { ...process.env };
    delete env.MAIL_CONFIG;
    execFile(file, [...args], { env, timeout: timeoutMs }, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === "number" ? error.code : 1) : 0;
      resolveRun({ code, output: `${stdout}${stderr}` });
    });
  });
}

function relayRestrictions(
  relayMap: string | undefined,
  relayTable: string | undefined,
  policyService: string | undefined,
) {
  const checks = ["permit_mynetworks"];
  if (relayTable)
    checks.push(`check_client_access cidr:${relayMap}`, `check_client_access ${relayTable}`);
  if (policyService) checks.push(`check_policy_service ${policyService}`);
  return [...checks, "reject_unauth_destination"].join(", ");
}

function mainCf(base: string, restrictions: string, extra: Record<string, string>) {
  const settings: Record<string, string> = {
    compatibility_level: "3.6",
    queue_directory: `${base}/queue`,
    data_directory: `${base}/data`,
    // postfix-files (for `postfix check`) and dynamicmaps.cf (lmdb, cdb) come from the package.
    meta_directory: "/etc/postfix",
    mail_owner: "postfix",
    setgid_group: "postdrop",
    myhostname: `mx.${LOCAL_DOMAIN}`,
    mydomain: LOCAL_DOMAIN,
    myorigin: "$mydomain",
    mydestination: LOCAL_DOMAIN,
    inet_interfaces: "127.0.0.1",
    inet_protocols: "ipv4",
    mynetworks: "127.0.0.1/32",
    relayhost: "",
    relay_domains: "",
    // Accepted mail is thrown away: there is no smtp client in master.cf at all.
    default_transport: "discard:poprelay test harness",
    relay_transport: "discard:poprelay test harness",
    local_transport: "discard:poprelay test harness",
    alias_maps: "",
    alias_database: "",
    local_recipient_maps: "",
    // No DNS, no reverse lookups of 127.0.0.x (which nsswitch would send to the resolver).
    smtpd_peername_lookup: "no",
    smtp_dns_support_level: "disabled",
    smtpd_client_restrictions: "",
    smtpd_helo_restrictions: "",
    smtpd_sender_restrictions: "",
    smtpd_recipient_restrictions: "",
    smtpd_relay_restrictions: restrictions,
    smtpd_tls_security_level: "none",
    smtp_tls_security_level: "none",
    maillog_file: `${base}/maillog`,
    maillog_file_prefixes: base,
    biff: "no",
    ...extra,
  };
  const lines = Object.entries(settings).map(([k, v]) => `${k} = ${v}`);
  return `# Generated by test/support/postfix.ts: a private instance on loopback.\n${lines.join("\n")}\n`;
}

function masterCf(port: number): string {
  // chroot n everywhere: the queue is in a scratch dir, not a prepared chroot.
  return `# Generated by test/support/postfix.ts. No smtp/lmtp client: mail never leaves.
# service            type  private unpriv  chroot  wakeup  maxproc command
127.0.0.1:${port}    inet  n       -       n       -       -       smtpd
cleanup              unix  n       -       n       -       0       cleanup
qmgr                 unix  n       -       n       300     1       qmgr
rewrite              unix  -       -       n       -       -       trivial-rewrite
bounce               unix  -       -       n       -       0       bounce
defer                unix  -       -       n       -       0       bounce
trace                unix  -       -       n       -       0       bounce
verify               unix  -       -       n       -       1       verify
flush                unix  n       -       n       1000?   0       flush
proxymap             unix  -       -       n       -       -       proxymap
showq                unix  n       -       n       -       -       showq
error                unix  -       -       n       -       -       error
retry                unix  -       -       n       -       -       error
discard              unix  -       -       n       -       -       discard
anvil                unix  -       -       n       -       1       anvil
postlog              unix-dgram n  -       n       -       1       postlogd
`;
}

/** The queue subdirectories, owners and modes of /etc/postfix/postfix-files (Postfix 3.7). */
async function layOutQueue(queueDir: string, postfixUid: number, postdropGid: number) {
  const layout: [string, number, number, number][] = [
    ["pid", 0, 0, 0o755],
    ["maildrop", postfixUid, postdropGid, 0o730],
    ["public", postfixUid, postdropGid, 0o710],
  ];
  const privateDirs = ["active", "bounce", "corrupt", "defer", "deferred", "flush", "hold"];
  for (const name of [...privateDirs, "incoming", "private", "saved", "trace"])
    layout.push([name, postfixUid, 0, 0o700]);
  await chmod(queueDir, 0o755);
  for (const [name, uid, gid, mode] of layout) {
    const path = join(queueDir, name);
    await mkdir(path, { recursive: true });
    await chown(path, uid, gid);
    await chmod(path, mode);
  }
}

/** Creates `map` (empty) if missing, and builds its database if that is missing. */
export async function ensurePostfixMap(map: string, type: PostfixMapType): Promise<void> {
  if (!existsSync(map)) await writeFile(map, "");
  if (existsSync(`${map}${PRODUCT[type]}`)) return;
  const built = await exec(POSTMAP, [`${type}:${map}`]);
  if (built.code !== 0) throw new Error(`postmap ${type}:${map} failed: ${built.output}`);
}

/** Starts a private Postfix; resolves once its master listens on the SMTP port. */
export async function startPostfix(options: PostfixOptions): Promise<Postfix> {
  await requireExecutables("Postfix", BINARIES);
  const postfixUid = systemId("user", "postfix");
  const postfixGid = systemId("group", "postfix");
  const postdropGid = systemId("group", "postdrop");
  const mapType = options.mapType ?? "hash";
  const maps = await exec("/usr/sbin/postconf", ["-m"]);
  if (!maps.output.split("\n").includes(mapType))
    throw new Error(
      `Postfix has no ${mapType} map support (postconf -m): install postfix-${mapType}`,
    );

  const { policyService } = options;
  if (options.relayMap === undefined && policyService === undefined)
    throw new Error("startPostfix: give relayMap, policyService, or both");
  // It becomes part of a main.cf list: one token, no separators.
  if (policyService !== undefined && !/^(inet:[^\s,]+|unix:\/[^\s,]+)$/.test(policyService))
    throw new Error("startPostfix: policyService must be inet:HOST:PORT or unix:/PATH");

  const dir = resolve(options.dir);
  const base = join(dir, "postfix");
  const relayMap = options.relayMap === undefined ? undefined : resolve(options.relayMap);
  assertPlainPath(base);
  if (relayMap) assertPlainPath(relayMap);
  const relayTable = relayMap ? `${mapType}:${relayMap}` : undefined;
  const configDir = join(base, "etc");
  const queueDir = join(base, "queue");
  const dataDir = join(base, "data");
  const logFile = join(base, "maillog");
  await makeTraversable(dir);
  await mkdir(configDir, { recursive: true });
  await mkdir(queueDir, { recursive: true });
  await mkdir(dataDir, { recursive: true });
  await chmod(base, 0o755);
  // `postfix check` wants the queue root-owned and the data directory owned by mail_owner.
  await chown(dataDir, postfixUid, postfixGid);
  await chmod(dataDir, 0o700);
  await layOutQueue(queueDir, postfixUid, postdropGid);
  if (relayMap) await ensurePostfixMap(relayMap, mapType);
  const restrictions = relayRestrictions(relayMap, relayTable, policyService);

  for (let attempt = 1; ; attempt++) {
    const port = options.port ?? (await freePort());
    await writeFile(join(configDir, "main.cf"), mainCf(base, restrictions, options.mainCf ?? {}));
    await writeFile(join(configDir, "master.cf"), masterCf(port));
    // postfix-script removes quick-start and, having found it, skips its integrity checks.
    if (!options.check) await writeFile(join(queueDir, "quick-start"), "");
    const started = await exec(POSTFIX, ["-c", configDir, "start"]);
    if (started.code !== 0) {
      const log = await readFile(logFile, "utf8").catch(() => "");
      const recent = log.split("\n").slice(-15).join("\n");
      if (/Address already in use/.test(recent) && options.port === undefined && attempt < 5)
        continue;
      throw new Error(`postfix -c ${configDir} start failed:\n${started.output}\n${recent}`);
    }
    const pid = Number.parseInt(await readFile(join(queueDir, "pid", "master.pid"), "utf8"), 10);
    trackGroup(pid);
    try {
      await waitFor(`Postfix to listen on 127.0.0.1:${port}`, () =>
        listensOn(pid, port) ? true : undefined,
      );
    } catch (error) {
      await stopGroup("Postfix", pid, 5000);
      throw error;
    }
    let stopping: Promise<void> | undefined;
    const stop = () => {
      stopping ??= stopGroup("Postfix", pid);
      return stopping;
    };
    return {
      smtpPort: port,
      configDir,
      queueDir,
      logFile,
      pid,
      relayTable,
      localDomain: LOCAL_DOMAIN,
      stop,
    };
  }
}
