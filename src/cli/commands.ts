import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { canonicalIp } from "../address/ip.js";
import { importLegacy } from "../config/legacy.js";
import { defaultConfig, describeConfig, type LoadedConfig, loadConfig } from "../config/load.js";
import { profileFor } from "../daemon/components.js";
import { Daemon } from "../daemon/daemon.js";
import { createNotifier } from "../daemon/notify.js";
import type { Logger } from "../log.js";
import { checkMapTools } from "../maps/settings.js";
import { snippets } from "../maps/snippet.js";
import type { MapWriteResult } from "../maps/write.js";
import { AGENTS } from "../matcher/agents/index.js";
import { RelayState } from "../relay-state.js";
import { openSpoolStore } from "../spool/open.js";
import type { SpoolEntry } from "../spool/types.js";
import { formatSummary, runMatch } from "./match.js";

export class UsageError extends Error {}

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
  return { loaded, relay: new RelayState(store, config.map, context.log) };
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
          `${JSON.stringify({ ...e, login: time(e.login), expires: time(e.expires), expired: e.expires <= now })}\n`,
      )
      .join("");
  }
  const rows = entries.map((e) => [
    e.ip,
    e.user,
    e.agent,
    time(e.login),
    e.expires <= now ? "expired" : time(e.expires),
  ]);
  const table = [["ADDRESS", "USER", "AGENT", "LOGIN", "EXPIRES"], ...rows];
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
      // The signal handlers come before start() sends READY=1: systemd 262 refuses to start a
      // Type=notify-reload unit whose main process has no SIGHUP handler by then ("lacks handler
      // for reload signal HUP"), and a SIGHUP before it would end Node.js. A signal during
      // start() waits for it: the daemon's steps run one after the other.
      const stopped = new Promise<number>((resolve) => {
        const stop = (why: string, code = 0) => {
          log.notice(`${why}: stopping`);
          daemon.stop().then(
            () => resolve(code),
            (error: Error) => {
              log.error(`stopping: ${error.message}`);
              resolve(1);
            },
          );
        };
        process.on("SIGHUP", () => {
          // A reload that failed halfway left nothing reading: exit, and systemd restarts us.
          daemon.reload().catch((error: Error) => {
            log.error(`reload failed halfway: ${error.message}`);
            stop("reload failed", 1);
          });
        });
        process.once("SIGTERM", () => stop("SIGTERM"));
        process.once("SIGINT", () => stop("SIGINT"));
      });
      await daemon.start();
      log.info(`running (notify: ${notifier.via}): ${daemon.status()}`);
      return stopped;
    },
  }),
  match: command({
    args: "--agent NAME [--json] [-v] [--regex RE] [FILE|-]",
    summary:
      "run an agent profile over log lines (syslog text or journalctl -o json), like fail2ban-regex",
    takes: ["agent", "regex", "json", "verbose"],
    arity: [0, 1],
    async run(context) {
      const name = context.options.agent;
      if (typeof name !== "string")
        throw new UsageError("--agent NAME is required (poprelay agents lists them)");
      // The site's match.regex, ignore and allow apply when there is a configuration.
      const config = existsSync(join(context.configDir, "conf.d"))
        ? (await loadConfig(context.configDir, context.instance)).config
        : defaultConfig();
      const profile = profileFor({ ...config, agent: name });
      const regex =
        typeof context.options.regex === "string" ? context.options.regex : config.match.regex;
      const summary = await runMatch({
        profile,
        regex,
        ignore: config.match.ignore,
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
    summary: "list the built-in agent profiles",
    takes: [],
    arity: [0, 0],
    async run(context) {
      for (const profile of AGENTS.values()) {
        context.out(`${profile.name.padEnd(12)}${profile.summary}\n`);
        for (const covered of profile.covers) context.out(`${"".padEnd(14)}${covered}\n`);
      }
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
      await checkMapTools(loaded.config.map);
      if (context.options.print) context.out(describeConfig(loaded));
      else
        context.out(
          `configuration ok: ${loaded.files.length} file(s) in ${context.configDir}/conf.d\n`,
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
      const ip = canonicalIp(context.args[0] ?? "").address;
      const { loaded, relay } = await open(context);
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
      for (const snippet of snippets(config)) {
        process.stderr.write(`# ${snippet.where}\n`);
        for (const line of snippet.lines) context.out(`${line}\n`);
      }
      return 0;
    },
  }),
  "import-legacy": command({
    args: "FILE",
    summary: "print a Mail::POPRelay config as YAML for conf.d",
    takes: [],
    arity: [1, 1],
    async run(context) {
      const file = context.args[0] ?? "";
      const text = await readFile(file, "utf8").catch((error: Error) => {
        throw new Error(`${file}: cannot read: ${error.message}`);
      });
      const result = importLegacy(text, file);
      context.out(result.yaml);
      for (const note of result.notes) context.log.warning(note);
      return 0;
    },
  }),
};
