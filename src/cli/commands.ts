import { existsSync, readFileSync } from "node:fs";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { canonicalIp, InvalidIpError } from "../address/ip.js";
import { importLegacy } from "../config/legacy.js";
import {
  ConfigError,
  defaultConfig,
  describeConfig,
  type LoadedConfig,
  loadConfig,
} from "../config/load.js";
import { profileFor } from "../daemon/components.js";
import { Daemon } from "../daemon/daemon.js";
import { createNotifier } from "../daemon/notify.js";
import type { Logger } from "../log.js";
import { chooseMapType } from "../maps/choose-type.js";
import { checkMapTools, exactnessWarnings, grantProblem } from "../maps/settings.js";
import { snippets } from "../maps/snippet.js";
import type { MapWriteResult } from "../maps/write.js";
import { builtinAgents, loadAllAgents, siteAgentsDir } from "../matcher/agents.js";
import { expandIgnore, MYNETWORKS } from "../matcher/mynetworks.js";
import { readSamples, runSamples } from "../matcher/samples.js";
import { RelayState } from "../relay-state.js";
import { openSpoolStore } from "../spool/open.js";
import type { SpoolEntry } from "../spool/types.js";
import { formatSummary, runMatch } from "./match.js";

export class UsageError extends Error {}

const PROVENANCE = {
  captured: "captured from the running server",
  source: "read from source (not captured)",
  both: "captured, and read from source",
} as const;

/**
 * Writes an imported site profile into CONFIG_DIR/agents.d, never over a different file of the
 * same name (the admin's own, or an earlier import they edited).
 */
async function writeSiteProfile(
  configDir: string,
  profile: NonNullable<ReturnType<typeof importLegacy>["profile"]>,
  log: Logger,
): Promise<void> {
  const path = join(siteAgentsDir(configDir), basename(profile.file));
  const existing = await readFile(path, "utf8").catch(() => undefined);
  if (existing !== undefined && existing !== profile.yaml)
    throw new ConfigError([
      `${path}: exists and differs from the imported profile; move it away, or compare it with the import and keep yours`,
    ]);
  if (existing === undefined) {
    await mkdir(siteAgentsDir(configDir), { recursive: true });
    await writeFile(path, profile.yaml, { flag: "wx" });
  }
  log.notice(`wrote the site profile ${path} (program ${profile.program})`);
}

/**
 * Validates every agent profile (built-in and the site's) and runs each one's samples; throws
 * ConfigError naming each file, key or sample line that fails. Returns a one-line summary.
 */
function checkAgents(configDir: string): string {
  const { profiles, problems } = loadAllAgents(configDir);
  // Classic stamps carry no year: samples are read as of now, the year they fall in.
  const now = new Date();
  let run = 0;
  for (const profile of profiles) {
    if (!profile.samples) continue;
    let samples: ReturnType<typeof readSamples>;
    try {
      samples = readSamples(profile.samples.file);
    } catch (error) {
      problems.push((error as Error).message);
      continue;
    }
    for (const result of runSamples(profile, samples, now)) {
      run++;
      if (result.failure)
        problems.push(`${profile.samples.file}:${result.sample.line}: ${result.failure}`);
    }
  }
  if (problems.length > 0) throw new ConfigError(problems);
  const site = profiles.filter((p) => p.source === "site").length;
  return `agents ok: ${profiles.length} profile(s) (${profiles.length - site} built-in, ${site} in ${configDir}/agents.d), ${run} sample line(s) as annotated`;
}

export interface CommandContext {
  args: string[];
  options: { user?: string; json?: boolean; print?: boolean; [key: string]: unknown };
  configDir: string;
  instance: string;
  log: Logger;
  out: (text: string) => void;
  /** Run when the command is done, whatever happened: connections to let go of. */
  cleanup: (() => Promise<void>)[];
}

export interface Command {
  args: string;
  summary: string;
  /** Options this command takes besides the global ones. */
  takes: readonly string[];
  /** Positional arguments: [min, max]. */
  arity: [number, number];
  check(context: CommandContext): void;
  run(context: CommandContext): Promise<number>;
}

const GLOBAL_OPTIONS = new Set(["config-dir", "instance", "help", "version"]);

function command(spec: Omit<Command, "check">): Command {
  return {
    ...spec,
    check({ args, options }) {
      const [min, max] = spec.arity;
      if (args.length < min) throw new UsageError("missing argument");
      if (args.length > max)
        throw new UsageError(`unexpected argument ${JSON.stringify(args[max])}`);
      for (const [name, value] of Object.entries(options)) {
        if (value !== undefined && !GLOBAL_OPTIONS.has(name) && !spec.takes.includes(name)) {
          throw new UsageError(`--${name} does not apply to this command`);
        }
      }
    },
  };
}

interface Opened {
  loaded: LoadedConfig;
  relay: RelayState;
}

async function open(context: CommandContext): Promise<Opened> {
  const loaded = await loadConfig(context.configDir, context.instance);
  const { config } = loaded;
  const store = await openSpoolStore(config, context.log);
  context.cleanup.push(() => store.close());
  // The same choice as the daemon's, so both write the same table type.
  const { map } = await chooseMapType(config.map);
  return { loaded, relay: new RelayState(store, map, context.log) };
}

function mapSummary(map: MapWriteResult): string {
  return `map ${map.file}: ${map.entries} ${map.entries === 1 ? "entry" : "entries"}${map.changed ? "" : " (unchanged)"}`;
}

const time = (ms: number) => new Date(ms).toISOString().replace(/\.\d+Z$/, "Z");

function formatList(entries: readonly SpoolEntry[], now: number, json: boolean): string {
  if (json) {
    return entries
      .map(
        (e) =>
          `${JSON.stringify({
            ...e,
            login: time(e.login),
            expires: time(e.expires),
            expired: e.expires <= now,
            ...(e.until === undefined ? {} : { until: time(e.until) }),
            ...(e.sessions
              ? { sessions: e.sessions.map((s) => ({ ...s, since: time(s.since) })) }
              : {}),
          })}\n`,
      )
      .join("");
  }
  const rows = entries.map((e) => [
    e.ip,
    e.user,
    e.agent,
    time(e.login),
    e.expires <= now ? "expired" : time(e.expires),
    // Open sessions keep the address relaying until relay.period after their end.
    e.sessions && e.expires > now
      ? `${e.sessions.length} open, then ${time(e.until ?? e.expires)}`
      : "",
  ]);
  const head = ["ADDRESS", "USER", "AGENT", "LOGIN", "EXPIRES", "SESSIONS"];
  // The column only when some entry has open sessions: the table is otherwise as it was.
  const shown = rows.some((r) => r[5] !== "") ? head.length : head.length - 1;
  const table = [head, ...rows].map((r) => r.slice(0, shown));
  const widths = table[0]?.map((_, i) => Math.max(...table.map((r) => (r[i] ?? "").length))) ?? [];
  return table
    .map(
      (r) =>
        `${r
          .map((c, i) => c.padEnd(widths[i] ?? 0))
          .join("  ")
          .trimEnd()}\n`,
    )
    .join("");
}

/** Writes a file the import made; one with other content already there is the admin's. */
async function writeOnce(path: string, text: string): Promise<void> {
  const existing = await readFile(path, "utf8").catch(() => undefined);
  if (existing === text) return;
  if (existing !== undefined) {
    throw new Error(
      `${path} exists already with other lines: compare it with the lines it would get, then remove it and import again`,
    );
  }
  await mkdir(dirname(path), { recursive: true, mode: 0o755 });
  // The daemon's user reads it; the lines are access rules, not secrets.
  await writeFile(path, text, { mode: 0o644, flag: "wx" });
}

export const COMMANDS: Record<string, Command> = {
  run: command({
    args: "[--instance NAME]",
    summary: "the daemon, in the foreground (systemd runs it so)",
    takes: [],
    arity: [0, 0],
    async run(context) {
      const { log } = context;
      const notifier = createNotifier(log);
      const daemon = new Daemon({
        configDir: context.configDir,
        instance: context.instance,
        log,
        notifier,
      });
      let stopping = false;
      let exit: (code: number) => void = () => {};
      const stopped = new Promise<number>((resolve) => {
        exit = resolve;
      });
      const stop = (why: string, code = 0) => {
        if (stopping) return;
        stopping = true;
        log.notice(`${why}: stopping`);
        daemon.stop().then(
          () => exit(code),
          (error: Error) => {
            log.error(`stopping: ${error.message}`);
            exit(1);
          },
        );
      };
      // The signal handlers come before start() sends READY=1: systemd 262 refuses to start a
      // Type=notify-reload unit whose main process has no SIGHUP handler by then ("lacks handler
      // for reload signal HUP"), and a SIGHUP before it would end Node.js. A SIGTERM while
      // starting still stops gracefully, once the start is done.
      process.on("SIGHUP", () => {
        // A reload that failed halfway left nothing reading: exit, and systemd restarts us.
        daemon.reload().catch((error: Error) => {
          log.error(`reload failed halfway: ${error.message}`);
          stop("reload failed", 1);
        });
      });
      process.once("SIGTERM", () => stop("SIGTERM"));
      process.once("SIGINT", () => stop("SIGINT"));
      try {
        await daemon.start();
      } catch (error) {
        if (stopping) return stopped;
        throw error;
      }
      if (!stopping) log.info(`running (notify: ${notifier.via}): ${daemon.status()}`);
      return stopped;
    },
  }),
  match: command({
    args: "--agent NAME|FILE [--json] [-v] [--regex RE] [FILE|-]",
    summary:
      "run an agent profile over log lines (syslog text or journalctl -o json), like fail2ban-regex",
    takes: ["agent", "regex", "json", "verbose"],
    arity: [0, 1],
    async run(context) {
      const name = context.options.agent;
      if (typeof name !== "string")
        throw new UsageError(
          "--agent NAME or --agent FILE.yaml is required (poprelay agents lists them)",
        );
      // The site's match.regex, ignore and allow apply when there is a configuration.
      const config = existsSync(join(context.configDir, "conf.d"))
        ? (await loadConfig(context.configDir, context.instance)).config
        : defaultConfig();
      const profile = profileFor({ ...config, agent: name }, context.configDir);
      const regex =
        typeof context.options.regex === "string" ? context.options.regex : config.match.regex;
      const ignore = await expandIgnore(config.match.ignore);
      for (const note of ignore.notes) context.log.warning(note);
      const summary = await runMatch({
        profile,
        regex,
        ignore: ignore.networks,
        allow: config.match.allow,
        input: context.args[0] ?? "-",
        json: context.options.json === true,
        verbose: context.options.verbose === true,
        out: context.out,
        err: (text) => process.stderr.write(text),
      });
      process.stderr.write(`${formatSummary(summary)}\n`);
      return 0;
    },
  }),
  agents: command({
    args: "",
    summary: "list the agent profiles: built-in, and the site's in agents.d",
    takes: [],
    arity: [0, 0],
    async run(context) {
      const { profiles, problems } = loadAllAgents(context.configDir);
      for (const profile of profiles) {
        const samples = profile.samples
          ? `samples ${PROVENANCE[profile.samples.provenance]}`
          : "no samples";
        context.out(`${profile.name.padEnd(12)}${profile.summary}\n`);
        context.out(`${"".padEnd(14)}${profile.source}: ${profile.file}; ${samples}\n`);
        for (const covered of profile.covers) context.out(`${"".padEnd(14)}${covered}\n`);
      }
      if (problems.length > 0) throw new ConfigError(problems);
      return 0;
    },
  }),
  check: command({
    args: "[--print]",
    summary: "validate the configuration; --print shows the merged result",
    takes: ["print"],
    arity: [0, 0],
    async run(context) {
      const loaded = await loadConfig(context.configDir, context.instance);
      const choice = await chooseMapType(loaded.config.map);
      await checkMapTools(choice.map);
      if (loaded.config.match.ignore.includes(MYNETWORKS)) {
        const ignore = await expandIgnore([MYNETWORKS]);
        for (const note of ignore.notes) context.log.warning(note);
        context.out(`match.ignore: ${MYNETWORKS} is ${ignore.networks.join(" ") || "(nothing)"}\n`);
      }
      const agents = checkAgents(context.configDir);
      // The configured agent, as the daemon will load it (match.regex checked against it).
      if (loaded.config.agent !== "") profileFor(loaded.config, context.configDir);
      for (const warning of exactnessWarnings(choice.map, loaded.config.match.allow))
        context.log.warning(warning);
      if (choice.reason) context.out(`${choice.reason}\n`);
      if (context.options.print) context.out(await describeConfig(loaded));
      else
        context.out(
          `configuration ok: ${loaded.files.length} file(s) in ${context.configDir}/conf.d\n${agents}\n`,
        );
      return 0;
    },
  }),
  add: command({
    args: "IP [--user NAME]",
    summary: "let IP relay for relay.period, then write the map",
    takes: ["user"],
    arity: [1, 1],
    async run(context) {
      const client = canonicalIp(context.args[0] ?? "");
      const ip = client.address;
      const { loaded, relay } = await open(context);
      const problem = grantProblem(loaded.config.map, client);
      if (problem !== undefined)
        throw new InvalidIpError(ip, problem, `map.mta ${loaded.config.map.mta} cannot grant it`);
      const now = Date.now();
      const entry = {
        ip,
        user: context.options.user ?? "-",
        agent: "manual",
        login: now,
        expires: now + loaded.config.relay.period * 1000,
      };
      const { map } = await relay.grant([entry]);
      context.out(`${ip} may relay until ${time(entry.expires)}; ${mapSummary(map)}\n`);
      return 0;
    },
  }),
  remove: command({
    args: "IP",
    summary: "stop IP relaying now, then write the map",
    takes: [],
    arity: [1, 1],
    async run(context) {
      const ip = canonicalIp(context.args[0] ?? "").address;
      const { relay } = await open(context);
      const { result, map } = await relay.revoke([ip]);
      context.out(
        `${ip} ${result.length > 0 ? "removed" : "was not in the spool"}; ${mapSummary(map)}\n`,
      );
      return 0;
    },
  }),
  list: command({
    args: "[--json]",
    summary: "show the spool (--json: one object per line)",
    takes: ["json"],
    arity: [0, 0],
    async run(context) {
      const { relay } = await open(context);
      context.out(formatList(await relay.entries(), Date.now(), context.options.json === true));
      return 0;
    },
  }),
  clean: command({
    args: "",
    summary:
      "remove expired entries, then write the map; without --instance, for every instance (the cleanup timer runs this)",
    takes: [],
    arity: [0, 0],
    async run(context) {
      const first = await open(context);
      // The timer runs without --instance: it covers the base configuration and every instance
      // named under instances:, once per distinct spool and map.
      const names = context.instance ? [context.instance] : ["", ...first.loaded.instances];
      const done = new Set<string>();
      for (const name of names) {
        const { loaded, relay } =
          name === context.instance ? first : await open({ ...context, instance: name });
        const key = `${loaded.config.spool.directory}\0${loaded.config.map.file}`;
        if (done.has(key)) continue;
        done.add(key);
        const { result, map } = await relay.expire();
        const label = names.length > 1 ? `${name || "(base)"}: ` : "";
        context.out(
          `${label}${result.length} expired ${result.length === 1 ? "entry" : "entries"} removed; ${mapSummary(map)}\n`,
        );
      }
      return 0;
    },
  }),
  wipe: command({
    args: "",
    summary: "remove every entry, then write an empty map",
    takes: [],
    arity: [0, 0],
    async run(context) {
      const { relay } = await open(context);
      const { result, map } = await relay.wipe();
      context.out(`${result} ${result === 1 ? "entry" : "entries"} removed; ${mapSummary(map)}\n`);
      return 0;
    },
  }),
  generate: command({
    args: "",
    summary: "write the map (and its database) from the spool now",
    takes: [],
    arity: [0, 0],
    async run(context) {
      const { relay } = await open(context);
      const { map } = await relay.regenerate();
      context.out(`${mapSummary(map)}\n`);
      return 0;
    },
  }),
  snippet: command({
    args: "[--instance NAME]",
    summary:
      "print the MTA's configuration lines for this configuration (stdout); where they go on stderr",
    takes: [],
    arity: [0, 0],
    async run(context) {
      const { config } = await loadConfig(context.configDir, context.instance);
      // The table type the daemon will write (map.type empty: chosen as it chooses).
      const { map } = await chooseMapType(config.map);
      for (const snippet of snippets({ ...config, map })) {
        process.stderr.write(`# ${snippet.where}\n`);
        for (const line of snippet.lines) context.out(`${line}\n`);
      }
      return 0;
    },
  }),
  "import-legacy": command({
    args: "FILE",
    summary:
      "print a Mail::POPRelay config as YAML for conf.d; its mailLogRegExp becomes a site profile in agents.d",
    takes: [],
    arity: [1, 1],
    async run(context) {
      const file = context.args[0] ?? "";
      const text = await readFile(file, "utf8").catch((error: Error) => {
        throw new Error(`${file}: cannot read: ${error.message}`);
      });
      const result = importLegacy(text, file, builtinAgents(), {
        read: (path) => {
          try {
            return readFileSync(path, "utf8");
          } catch (error) {
            if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
            throw error;
          }
        },
        headFile: (relayFile) => join(context.configDir, "preserved", basename(relayFile)),
      });
      for (const { path, text } of result.files) await writeOnce(path, text);
      if (result.profile) await writeSiteProfile(context.configDir, result.profile, context.log);
      context.out(result.yaml);
      for (const note of result.notes) context.log.warning(note);
      return 0;
    },
  }),
};
