/** Small helpers for the benchmark: timing, child processes, /proc, statistics, the table. */
import { type ChildProcess, type SpawnOptions, spawn } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

/** The repository root (the bench runs from build/bench). */
export const ROOT = fileURLToPath(new URL("../../", import.meta.url));
/** The poprelay to measure: this tree, or another build (POPRELAY_BENCH_CLI) for a before/after. */
export const CLI = process.env.POPRELAY_BENCH_CLI || join(ROOT, "bin/poprelay.js");

/**
 * The environment poprelay@.service gives the daemon (its Environment= lines): the bench runs
 * the daemon as systemd does, with the same V8 and malloc settings.
 */
export function unitEnvironment(): Record<string, string> {
  const unit = readFileSync(join(ROOT, "systemd", "poprelay@.service"), "utf8");
  const env: Record<string, string> = {};
  for (const line of unit.split("\n")) {
    const value = /^Environment=(.*)$/.exec(line.trim())?.[1];
    for (const pair of value?.split(/\s+/) ?? []) {
      const eq = pair.indexOf("=");
      if (eq > 0) env[pair.slice(0, eq)] = pair.slice(eq + 1);
    }
  }
  return env;
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

export interface Distribution {
  count: number;
  median: number;
  p99: number;
  max: number;
  mean: number;
}

/** Nearest-rank quantiles (the p99 of 1,000 values is the 990th smallest). */
export function distribution(values: readonly number[]): Distribution {
  const sorted = [...values].sort((a, b) => a - b);
  const rank = (q: number) => sorted[Math.max(0, Math.ceil(q * sorted.length) - 1)] ?? Number.NaN;
  const sum = sorted.reduce((a, b) => a + b, 0);
  return {
    count: sorted.length,
    median: rank(0.5),
    p99: rank(0.99),
    max: sorted.at(-1) ?? Number.NaN,
    mean: sorted.length > 0 ? sum / sorted.length : Number.NaN,
  };
}

export function median(values: readonly number[]): number {
  return distribution(values).median;
}

export interface Finished {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** Wall time from spawn to exit, ms. */
  ms: number;
}

/** Runs a program to its end, timing it; stdout is kept only when `keepStdout`. */
export function timed(
  file: string,
  args: readonly string[],
  options: SpawnOptions & { keepStdout?: boolean; input?: string } = {},
): Promise<Finished> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const child = spawn(file, [...args], {
      ...options,
      stdio: [options.input === undefined ? "ignore" : "pipe", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout?.setEncoding("utf8").on("data", (text: string) => {
      if (options.keepStdout) stdout += text;
    });
    child.stderr?.setEncoding("utf8").on("data", (text: string) => {
      stderr += text;
    });
    child.stdin?.end(options.input);
    child.on("error", reject);
    child.on("close", (code, signal) =>
      resolve({ code, signal, stdout, stderr, ms: performance.now() - started }),
    );
  });
}

/** Where a program is on PATH, or undefined. */
export async function which(program: string): Promise<string | undefined> {
  const result = await timed("sh", ["-c", `command -v ${program}`], { keepStdout: true });
  const path = result.stdout.trim();
  return result.code === 0 && path ? path : undefined;
}

const CLOCK_TICKS = 100; // sysconf(_SC_CLK_TCK) on Linux

/** User + system CPU seconds of a process (all its threads), from /proc/PID/stat. */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  // The command name may hold spaces: fields are counted after its closing parenthesis.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
}

/** The process's children (journalctl under the daemon). */
export function childPids(pid: number): number[] {
  const pids: number[] = [];
  for (const task of readdirSync(`/proc/${pid}/task`)) {
    const text = readFileSync(`/proc/${pid}/task/${task}/children`, "utf8").trim();
    if (text) pids.push(...text.split(" ").map(Number));
  }
  return pids;
}

/** VmRSS and VmHWM (peak) of a process, in MiB. */
export function memory(pid: number): { rss: number; peak: number } {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const kib = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, "m").exec(status)?.[1]);
  return { rss: kib("VmRSS") / 1024, peak: kib("VmHWM") / 1024 };
}

/** Resolves when `child` has printed a line matching `pattern` on stderr. */
export function waitForStderr(child: ChildProcess, pattern: RegExp, timeoutMs = 60_000) {
  return new Promise<void>((resolve, reject) => {
    let seen = "";
    const timer = setTimeout(() => {
      child.stderr?.off("data", onData);
      reject(new Error(`timed out waiting for ${pattern} in:\n${seen.slice(-2000)}`));
    }, timeoutMs);
    const onData = (chunk: Buffer) => {
      seen += chunk.toString();
      if (pattern.test(seen)) {
        clearTimeout(timer);
        child.stderr?.off("data", onData);
        resolve();
      }
    };
    child.stderr?.on("data", onData);
    child.once("exit", (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`exited (${signal ?? code}) before ${pattern}:\n${seen.slice(-2000)}`));
    });
  });
}

/** A conf.d with one file. */
export async function configDir(dir: string, yaml: string): Promise<string> {
  await mkdir(join(dir, "conf.d"), { recursive: true });
  await writeFile(join(dir, "conf.d", "50-bench.yaml"), yaml);
  return dir;
}

export function fmt(value: number | undefined, digits = 1): string {
  if (value === undefined || Number.isNaN(value)) return "-";
  return value.toLocaleString("en-US", {
    minimumFractionDigits: digits,
    maximumFractionDigits: digits,
  });
}

export function table(rows: readonly (readonly string[])[]): string {
  const widths = rows[0]?.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? "").length))) ?? [];
  return rows
    .map((row, n) => {
      const line = row.map((cell, i) =>
        i === 0 ? cell.padEnd(widths[i] ?? 0) : cell.padStart(widths[i] ?? 0),
      );
      const text = line.join("  ").trimEnd();
      return n === 0 ? `${text}\n${"-".repeat(text.length)}` : text;
    })
    .join("\n");
}

export function progress(message: string): void {
  process.stderr.write(`bench: ${message}\n`);
}
