import { type ChildProcess, spawn } from "node:child_process";
import { after } from "node:test";
import { CLI } from "../helpers.js";
import { waitFor } from "./dovecot.js";

/** `poprelay run` as systemd would run it: a child process, its log captured. */
export interface RunningDaemon {
  child: ChildProcess;
  /** stderr so far. */
  log(): string;
  /** Resolves when the log has a line matching `pattern`, counting only text after `from`. */
  waitForLog(pattern: RegExp, from?: number, timeoutMs?: number): Promise<string>;
  /** SIGTERM (or the given signal) and wait; resolves with the exit code or signal. */
  stop(signal?: NodeJS.Signals): Promise<number | NodeJS.Signals>;
}

export function startDaemon(
  configDir: string,
  env: NodeJS.ProcessEnv = {},
  instance = "dovecot",
): RunningDaemon {
  const child = spawn(
    process.execPath,
    [CLI, "run", "--config-dir", configDir, "--instance", instance],
    {
      env: { ...process.env, ...env },
      stdio: ["ignore", "inherit", "pipe"],
    },
  );
  let stderr = "";
  child.stderr?.on("data", (chunk: Buffer) => {
    const text = chunk.toString();
    // FAULT_DUMP (see fault-rotation.test.ts): each line stamped with its time and daemon pid.
    stderr += process.env.FAULT_DUMP
      ? text.replace(/^(?=.)/gm, `${new Date().toISOString()} [${child.pid}] `)
      : text;
  });
  const exited = new Promise<number | NodeJS.Signals>((resolve) =>
    child.on("exit", (code, signal) => resolve(code ?? signal ?? -1)),
  );
  after(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  });
  return {
    child,
    log: () => stderr,
    waitForLog: (pattern, from = 0, timeoutMs = 10_000) =>
      waitFor(
        `daemon log ${pattern}`,
        () => pattern.exec(stderr.slice(from))?.[0],
        timeoutMs,
      ).catch((error: Error) => {
        throw new Error(`${error.message}\n--- daemon log ---\n${stderr}`);
      }),
    stop: async (signal = "SIGTERM") => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
}
