/**
 * The commands, their arguments and their one-line summaries. What a command does is in its
 * own module (src/cli/commands/NAME.ts), imported only when that command runs: `poprelay
 * match` loads the matcher, not the daemon, the spool, the map writers or ioredis.
 */
import type { CommandContext, CommandRun } from "./command.js";
import { UsageError } from "./command.js";

export type { CommandContext } from "./command.js";
export { UsageError } from "./command.js";

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

interface Spec {
  args: string;
  summary: string;
  takes: readonly string[];
  arity: [number, number];
  /** The command's module, imported when it runs. */
  load(): Promise<CommandRun>;
}

const GLOBAL_OPTIONS = new Set(["config-dir", "instance", "help", "version"]);

function command(spec: Spec): Command {
  const { load, ...described } = spec;
  return {
    ...described,
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
    async run(context) {
      return (await load())(context);
    },
  };
}

export const COMMANDS: Record<string, Command> = {
  run: command({
    args: "[--instance NAME]",
    summary: "the daemon, in the foreground (systemd runs it so)",
    takes: [],
    arity: [0, 0],
    load: async () => (await import("./commands/run.js")).run,
  }),
  match: command({
    args: "--agent NAME|FILE [--json] [-v] [--regex RE] [FILE|-]",
    summary:
      "run an agent profile over log lines (syslog text or journalctl -o json), like fail2ban-regex",
    takes: ["agent", "regex", "json", "verbose"],
    arity: [0, 1],
    load: async () => (await import("./commands/match.js")).run,
  }),
  agents: command({
    args: "",
    summary: "list the agent profiles: built-in, and the site's in agents.d",
    takes: [],
    arity: [0, 0],
    load: async () => (await import("./commands/agents.js")).run,
  }),
  check: command({
    args: "[--print]",
    summary: "validate the configuration; --print shows the merged result",
    takes: ["print"],
    arity: [0, 0],
    load: async () => (await import("./commands/check.js")).run,
  }),
  add: command({
    args: "IP [--user NAME]",
    summary: "let IP relay for relay.period, then write the map",
    takes: ["user"],
    arity: [1, 1],
    load: async () => (await import("./commands/spool.js")).add,
  }),
  remove: command({
    args: "IP",
    summary: "stop IP relaying now, then write the map",
    takes: [],
    arity: [1, 1],
    load: async () => (await import("./commands/spool.js")).remove,
  }),
  list: command({
    args: "[--json]",
    summary: "show the spool (--json: one object per line)",
    takes: ["json"],
    arity: [0, 0],
    load: async () => (await import("./commands/spool.js")).list,
  }),
  clean: command({
    args: "",
    summary:
      "remove expired entries, then write the map; without --instance, for every instance (the cleanup timer runs this)",
    takes: [],
    arity: [0, 0],
    load: async () => (await import("./commands/spool.js")).clean,
  }),
  wipe: command({
    args: "",
    summary: "remove every entry, then write an empty map",
    takes: [],
    arity: [0, 0],
    load: async () => (await import("./commands/spool.js")).wipe,
  }),
  generate: command({
    args: "",
    summary: "write the map (and its database) from the spool now",
    takes: [],
    arity: [0, 0],
    load: async () => (await import("./commands/spool.js")).generate,
  }),
  snippet: command({
    args: "[--instance NAME]",
    summary:
      "print the MTA's configuration lines for this configuration (stdout); where they go on stderr",
    takes: [],
    arity: [0, 0],
    load: async () => (await import("./commands/snippet.js")).run,
  }),
  "import-legacy": command({
    args: "FILE",
    summary:
      "print a Mail::POPRelay config as YAML for conf.d; its mailLogRegExp becomes a site profile in agents.d",
    takes: [],
    arity: [1, 1],
    load: async () => (await import("./commands/import-legacy.js")).run,
  }),
};
