import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after } from "node:test";
import { fileURLToPath } from "node:url";

/** Under CI=true no test may skip: a missing component is a failure. */
export const IN_CI = process.env.CI === "true";

/** The repository root (tests run from build/test). */
export const ROOT = fileURLToPath(new URL("../../", import.meta.url));
export const CLI = join(ROOT, "bin/poprelay.js");

/** A fresh directory removed when the test file ends. */
export async function scratch(prefix = "poprelay-test-"): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  // Retried: a reader stopped by a later hook may still be saving its position into the directory.
  after(() => rm(dir, { recursive: true, force: true, maxRetries: 10, retryDelay: 20 }));
  return dir;
}

/** A config dir whose conf.d holds the given files (name → YAML text). */
export async function configDir(files: Record<string, string>): Promise<string> {
  const dir = await scratch("poprelay-conf-");
  await mkdir(join(dir, "conf.d"));
  for (const [name, text] of Object.entries(files))
    await writeFile(join(dir, "conf.d", name), text);
  return dir;
}

/**
 * A config dir with spool, state and map inside it, for the given MTA settings. The map is a
 * Postfix hash map, which the tests query with `postmap -q hash:` (map.type empty would choose
 * by what this machine's Postfix lists: see maps/choose-type.ts).
 */
export async function sandbox(extra = ""): Promise<{ dir: string; spool: string; map: string }> {
  const dir = await scratch("poprelay-sandbox-");
  const spool = join(dir, "spool");
  const map = join(dir, "relay");
  await mkdir(join(dir, "conf.d"));
  // hash unless the caller names a type: the tests query it with postmap -q hash:.
  const type = /^ {2}type:/m.test(extra) ? "" : "  type: hash\n";
  const yaml = `spool:\n  directory: ${spool}\nstate:\n  directory: ${dir}\nmap:\n  file: ${map}\n${type}${extra}`;
  await writeFile(join(dir, "conf.d", "50-test.yaml"), yaml);
  return { dir, spool, map };
}

export interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a program to completion, never rejecting: the exit code is part of the result. */
export function run(
  file: string,
  args: readonly string[],
  env: NodeJS.ProcessEnv = {},
): Promise<Run> {
  return new Promise((resolve) => {
    execFile(file, [...args], { env: { ...process.env, ...env } }, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === "number" ? error.code : 1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

export const poprelay = (args: readonly string[], env: NodeJS.ProcessEnv = {}) =>
  run(process.execPath, [CLI, ...args], env);

/**
 * The addresses in a text map whose lines start with the address (postfix, plain); Postfix's
 * one-address cidr networks (A/32, A/128) count as their address.
 */
export async function mapKeys(map: string): Promise<string[]> {
  return (await readFile(map, "utf8").catch(() => ""))
    .split("\n")
    .filter((l) => l && !l.startsWith("#"))
    .map((l) => (l.split(" ")[0] ?? "").replace(/\/(32|128)$/, ""));
}

/** A process is running (not gone, not a zombie waiting for its parent to reap it). */
export function processRunning(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
  } catch {
    return false;
  }
}
