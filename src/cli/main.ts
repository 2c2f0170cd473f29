import { parseArgs } from "node:util";
import { DEFAULT_CONFIG_DIR } from "../config/paths.js";
import { createLogger } from "../log.js";
import { COMMANDS, type CommandContext, UsageError } from "./commands.js";
import { VERSION } from "./version.js";

const OPTIONS = {
  "config-dir": { type: "string" },
  instance: { type: "string" },
  user: { type: "string" },
  agent: { type: "string" },
  regex: { type: "string" },
  verbose: { type: "boolean", short: "v" },
  json: { type: "boolean" },
  print: { type: "boolean" },
  help: { type: "boolean", short: "h" },
  version: { type: "boolean", short: "V" },
} as const;

export const EXIT = { ok: 0, input: 1, usage: 2 } as const;

export function usage(): string {
  const rows = Object.entries(COMMANDS).map(
    ([name, c]) => `  ${`${name} ${c.args}`.padEnd(34)}${c.summary}`,
  );
  return [
    "usage: poprelay COMMAND [options]",
    "",
    "Grants SMTP relay to addresses that just logged in to POP3/IMAP, by writing the MTA's access map.",
    "",
    "commands:",
    ...rows,
    "",
    "options for every command:",
    `  --config-dir DIR                  configuration (default $POPRELAY_CONFIG_DIR or ${DEFAULT_CONFIG_DIR})`,
    "  --instance NAME                   apply the instances.NAME overrides (the systemd instance)",
    "  -h, --help                        this text",
    "  -V, --version                     the version",
    "",
    "exit status: 0 ok, 1 bad configuration or input, 2 usage",
  ].join("\n");
}

let pipesWatched = false;

/**
 * When the reader of stdout or stderr goes away (`poprelay agents | head`), a command stops
 * quietly with status 0, as if it had finished: nobody wants the rest of its output, and a
 * stack trace would be noise. Its work is done by then (add, generate... print only at the end)
 * or was only printing (match, list). The daemon is the exception: its work is the relay, not
 * the log, so it keeps running without one. Any other write error stays fatal.
 */
function stopOnBrokenPipe(daemon: boolean): void {
  if (pipesWatched) return;
  pipesWatched = true;
  for (const stream of [process.stdout, process.stderr]) {
    stream.on("error", (error: NodeJS.ErrnoException) => {
      if (error.code !== "EPIPE") throw error;
      if (!daemon) process.exit(EXIT.ok);
    });
  }
}

/**
 * Writes to stdout, and stops at once if that found the reader gone: a write to a pipe fails
 * synchronously, but its error event waits for the event loop, which a command working
 * through a file in one go (match) would only reach at its end.
 */
function writeOut(text: string): void {
  process.stdout.write(text);
  if ((process.stdout.errored as NodeJS.ErrnoException | null)?.code === "EPIPE")
    process.exit(EXIT.ok);
}

/** Runs one command line; returns the exit status rather than exiting, for tests. */
export async function main(argv: readonly string[]): Promise<number> {
  // The admin commands print their own one-line summary; the daemon logs its work.
  const log = createLogger({ level: argv[0] === "run" ? "info" : "notice" });
  let parsed: ReturnType<typeof parseArgs<{ options: typeof OPTIONS; allowPositionals: true }>>;
  try {
    parsed = parseArgs({ args: [...argv], options: OPTIONS, allowPositionals: true, strict: true });
  } catch (error) {
    process.stderr.write(`poprelay: ${(error as Error).message}\n${usage()}\n`);
    return EXIT.usage;
  }
  const { values, positionals } = parsed;
  if (values.version) {
    process.stdout.write(`poprelay ${VERSION}\n`);
    return EXIT.ok;
  }
  const [name, ...args] = positionals;
  stopOnBrokenPipe(name === "run");
  if (values.help || name === undefined || name === "help") {
    (name === undefined && !values.help ? process.stderr : process.stdout).write(`${usage()}\n`);
    return name === undefined && !values.help ? EXIT.usage : EXIT.ok;
  }
  const command = Object.hasOwn(COMMANDS, name) ? COMMANDS[name] : undefined;
  if (!command) {
    process.stderr.write(`poprelay: unknown command ${JSON.stringify(name)}\n${usage()}\n`);
    return EXIT.usage;
  }
  const context: CommandContext = {
    args,
    options: values,
    configDir: values["config-dir"] ?? process.env.POPRELAY_CONFIG_DIR ?? DEFAULT_CONFIG_DIR,
    instance: values.instance ?? "",
    log,
    out: writeOut,
    cleanup: [],
  };
  try {
    command.check(context);
    return await command.run(context);
  } catch (error) {
    if (error instanceof UsageError) {
      process.stderr.write(
        `poprelay ${name}: ${error.message}\nusage: poprelay ${name} ${command.args}\n`,
      );
      return EXIT.usage;
    }
    // Loaded only now: a command that succeeds never needs them (see commands.ts).
    const [{ InvalidIpError }, { ConfigError }, { MapConfigError }] = await Promise.all([
      import("../address/ip.js"),
      import("../config/error.js"),
      import("../maps/settings.js"),
    ]);
    if (error instanceof ConfigError || error instanceof MapConfigError) {
      log.error(`configuration is not valid:\n${error.message}`);
      return EXIT.input;
    }
    if (error instanceof InvalidIpError) {
      log.error(error.message);
      return EXIT.input;
    }
    log.error(
      process.env.POPRELAY_DEBUG ? String((error as Error).stack) : (error as Error).message,
    );
    return EXIT.input;
  } finally {
    for (const cleanup of context.cleanup) await cleanup().catch(() => undefined);
  }
}
