/**
 * Runs the seed-style command templates (map.command, map.restart.command). Only config values
 * (paths, the MTA name) are ever substituted: nothing read from a log reaches a command.
 */
import { spawn } from "node:child_process";
import { expandTemplate } from "./template.js";

/** A template with any of these needs a shell; without them, no shell is involved at all. */
const SHELL_SYNTAX = /[<>|&;$`()*?~'"\\\n[\]{}#=!]/;
const STDERR_LINES = 5;
const OUTPUT_LIMIT = 64 * 1024;
export const COMMAND_TIMEOUT_MS = 30_000;

export interface PreparedCommand {
  /** Program and arguments for spawn. */
  file: string;
  args: string[];
  /** The expanded command, for messages. */
  text: string;
  shell: boolean;
}

/**
 * Expands a template. With shell syntax it runs as `/bin/sh -c`, each substituted value single-
 * quoted; otherwise it is split on blanks first and each value stays one argument, unchanged.
 */
export function prepareCommand(
  template: string,
  values: Readonly<Record<string, string>>,
): PreparedCommand {
  if (SHELL_SYNTAX.test(template)) {
    const script = expandTemplate(template, values, shellQuote);
    return { file: "/bin/sh", args: ["-c", script], text: script, shell: true };
  }
  const words = template
    .trim()
    .split(/[ \t]+/)
    .map((word) => expandTemplate(word, values));
  const [file = "", ...args] = words;
  if (file === "") throw new Error("empty command");
  return { file, args, text: words.join(" "), shell: false };
}

export function shellQuote(value: string): string {
  return `'${value.replaceAll("'", `'\\''`)}'`;
}

export class CommandError extends Error {
  constructor(
    readonly command: string,
    readonly status: number | null,
    readonly signal: NodeJS.Signals | null,
    readonly stderr: string,
    reason: string,
  ) {
    const tail = lastLines(stderr, STDERR_LINES);
    super(`command failed: ${command}: ${reason}${tail ? `\n${tail}` : ""}`);
    this.name = "CommandError";
  }
}

export interface RunOptions {
  /** Written to the command's stdin (default: no stdin). */
  input?: string;
  timeoutMs?: number;
  cwd?: string;
  /** Aborting kills the command's process group at once (a newer write, a stop). */
  signal?: AbortSignal;
}

export interface CommandOutput {
  stdout: string;
  stderr: string;
}

/** Runs a template; rejects with a CommandError on failure to start, non-zero exit or signal. */
export function runCommand(
  template: string,
  values: Readonly<Record<string, string>>,
  options: RunOptions = {},
): Promise<CommandOutput> {
  let prepared: PreparedCommand;
  try {
    prepared = prepareCommand(template, values);
  } catch (error) {
    return Promise.reject(new CommandError(template, null, null, "", message(error)));
  }
  return run(prepared, options);
}

/**
 * After the command exits, its output is read until its pipes close, at most this long: a child
 * it left behind holding them (`cmd &`) would otherwise keep us waiting for as long as it lives.
 */
const PIPE_GRACE_MS = 500;

function run(command: PreparedCommand, options: RunOptions): Promise<CommandOutput> {
  const timeoutMs = options.timeoutMs ?? COMMAND_TIMEOUT_MS;
  return new Promise((resolve, reject) => {
    if (options.signal?.aborted) {
      reject(new CommandError(command.text, null, null, "", "not started: superseded or stopping"));
      return;
    }
    const child = spawn(command.file, command.args, {
      cwd: options.cwd,
      stdio: [options.input === undefined ? "ignore" : "pipe", "pipe", "pipe"],
      // Its own process group, so that a timeout also kills what a shell started.
      detached: true,
    });
    let stdout = "";
    let stderr = "";
    let settled = false;
    let exited: { status: number | null; signal: NodeJS.Signals | null } | undefined;
    let grace: NodeJS.Timeout | undefined;
    child.stdout?.setEncoding("utf8").on("data", (chunk: string) => {
      stdout = (stdout + chunk).slice(-OUTPUT_LIMIT);
    });
    child.stderr?.setEncoding("utf8").on("data", (chunk: string) => {
      stderr = (stderr + chunk).slice(-OUTPUT_LIMIT);
    });
    // A command that exits without reading its input is not our failure to report.
    child.stdin?.on("error", () => {});
    child.stdin?.end(options.input);
    // The whole group: the shell, what it started, and what those left running.
    const killGroup = () => {
      try {
        if (child.pid !== undefined) process.kill(-child.pid, "SIGKILL");
      } catch {
        // Already gone.
      }
    };
    const finish = () => {
      settled = true;
      clearTimeout(timer);
      clearTimeout(grace);
      options.signal?.removeEventListener("abort", abort);
      // Whatever still holds the pipes is not waited for.
      child.stdout?.destroy();
      child.stderr?.destroy();
    };
    const fail = (status: number | null, signal: NodeJS.Signals | null, reason: string) => {
      if (settled) return;
      finish();
      reject(new CommandError(command.text, status, signal, stderr, reason));
    };
    // Settles at once, without waiting for the pipes: a process that left the group may hold them.
    const kill = (reason: string) => {
      if (settled) return;
      killGroup();
      fail(exited?.status ?? null, exited?.signal ?? null, reason);
    };
    const timer = setTimeout(
      () => kill(`timed out after ${timeoutMs / 1000} s, killed`),
      timeoutMs,
    );
    const abort = () => kill("killed: superseded by a newer write, or stopping");
    options.signal?.addEventListener("abort", abort, { once: true });
    const done = () => {
      if (settled || !exited) return;
      const { status, signal } = exited;
      if (signal) return fail(null, signal, `killed by signal ${signal}`);
      if (status !== 0) return fail(status, null, `exit status ${status}`);
      finish();
      resolve({ stdout, stderr });
    };
    child.on("error", (error) => fail(null, null, `cannot run ${command.file}: ${message(error)}`));
    child.on("exit", (status, signal) => {
      exited = { status, signal };
      // Its output may still be in the pipes: wait for them, but only so long.
      grace = setTimeout(() => {
        // What it left running with our pipes open belongs to it (a daemon closes them).
        killGroup();
        done();
      }, PIPE_GRACE_MS);
    });
    child.on("close", done);
  });
}

function lastLines(text: string, count: number): string {
  return text
    .split("\n")
    .map((line) => line.trimEnd())
    .filter((line) => line !== "")
    .slice(-count)
    .map((line) => `  ${line.slice(0, 500)}`)
    .join("\n");
}

function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
