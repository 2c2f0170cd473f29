/**
 * The Debian package and systemd for tests, no mocks.
 *
 * - `buildPackage()` runs `npm run package` once per test process and returns the .deb.
 * - `bootSystemd()` boots the systemd of a Debian image (scripts/field-test.sh debootstraps
 *   them) as PID 1 in a container (systemd-nspawn --boot), on an overlay of the image:
 *   everything the container writes (the installed package among it) goes to a tmpfs that is
 *   thrown away, and a reboot keeps it. `--private-network` gives the container CAP_NET_ADMIN
 *   over its own network namespace, as a real PID 1 has: without it systemd cannot bring up the
 *   loopback of PrivateNetwork= services. Commands run in the container through nsenter into
 *   its PID 1 (`--register=no --keep-unit`: this machine's PID 1 is not systemd).
 *
 * Outside CI a missing part (not root, a tool not installed) skips with a reason; under CI=true
 * nothing skips: the test fails. Packages: dpkg-dev, binutils, lintian, systemd,
 * systemd-container, debootstrap (see scripts/test.sh).
 */
import { execFile, spawn } from "node:child_process";
import { existsSync, openSync } from "node:fs";
import { mkdir, mkdtemp, readFile, readlink, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { IN_CI, ROOT, type Run } from "../helpers.js";

export const TOOLS = {
  "dpkg-deb": "/usr/bin/dpkg-deb",
  "dpkg-shlibdeps": "/usr/bin/dpkg-shlibdeps",
  lintian: "/usr/bin/lintian",
  "systemd-analyze": "/usr/bin/systemd-analyze",
  "systemd-nspawn": "/usr/bin/systemd-nspawn",
  nsenter: "/usr/bin/nsenter",
} as const;

/** Why the packaging tests cannot run here, or false; never a reason under CI. */
export function packagingSkipReason(): string | false {
  if (IN_CI) return false;
  if (process.getuid?.() !== 0) return "the package tests install it: they need root";
  const missing = Object.values(TOOLS).filter((file) => !existsSync(file));
  return missing.length > 0 ? `not installed: ${missing.join(", ")} (see scripts/test.sh)` : false;
}

/** Runs a program to completion, with a time limit; never rejects. */
export function sh(
  file: string,
  args: readonly string[],
  options: { env?: NodeJS.ProcessEnv; timeoutMs?: number; cwd?: string } = {},
): Promise<Run> {
  return new Promise((resolve) => {
    execFile(
      file,
      [...args],
      {
        cwd: options.cwd ?? ROOT,
        env: { ...process.env, ...options.env },
        timeout: options.timeoutMs ?? 120_000,
        maxBuffer: 64 * 1024 * 1024,
      },
      (error, stdout, stderr) => {
        const code = error ? (typeof error.code === "number" ? error.code : 1) : 0;
        const how = error?.signal ? `\n[${file}: killed by ${error.signal}]` : "";
        resolve({ code, stdout, stderr: `${stderr}${how}` });
      },
    );
  });
}

export const describeRun = (run: Run) =>
  `exit ${run.code}\n--- stdout\n${run.stdout}\n--- stderr\n${run.stderr}`;

let built: Promise<string> | undefined;

/** `npm run package`, once per test process: the path of the .deb it printed last. */
export function buildPackage(): Promise<string> {
  built ??= (async () => {
    const run = await sh("npm", ["run", "--silent", "package"], { timeoutMs: 600_000 });
    const deb = run.stdout.trim().split("\n").pop() ?? "";
    if (run.code !== 0 || !deb.endsWith(".deb") || !existsSync(deb))
      throw new Error(`npm run package failed: ${describeRun(run)}`);
    return deb;
  })();
  return built;
}

/** The version and architecture the .deb must carry. */
export async function expectedPackage(): Promise<{ version: string; arch: string }> {
  const pkg = JSON.parse(await readFile(join(ROOT, "package.json"), "utf8")) as {
    version: string;
  };
  const arch = (await sh("dpkg", ["--print-architecture"])).stdout.trim();
  return { version: pkg.version, arch };
}

export interface Booted {
  /** The container's root, as the host sees it (an overlay: writes land in a tmpfs). */
  root: string;
  /** Runs a command inside the container, as root, in all its namespaces. */
  exec(args: readonly string[], timeoutMs?: number): Promise<Run>;
  /** A shell script inside the container (bash -euo pipefail). */
  bash(script: string, timeoutMs?: number): Promise<Run>;
  /**
   * `systemctl reboot` inside, then the same root booted again: what the container wrote is
   * kept, as on a machine's disk; the boot is a new one (a new boot ID in the journal).
   */
  reboot(): Promise<void>;
  stop(): Promise<void>;
}

/**
 * The container's PID 1 as the host sees it: the child of systemd-nspawn that runs systemd in a
 * PID namespace of its own. (nspawn first forks a helper that sets the container up and exits;
 * the container's init is then nspawn's child, as nspawn is a child subreaper.)
 */
async function containerInit(nspawn: number): Promise<number | undefined> {
  try {
    const ours = await readlink("/proc/self/ns/pid");
    const children = (await readFile(`/proc/${nspawn}/task/${nspawn}/children`, "utf8"))
      .trim()
      .split(/\s+/)
      .map(Number)
      .filter((pid) => pid > 0);
    for (const pid of children) {
      const [command] = (await readFile(`/proc/${pid}/cmdline`, "utf8")).split("\0");
      if ((await readlink(`/proc/${pid}/ns/pid`)) !== ours && /systemd$/.test(command ?? ""))
        return pid;
    }
  } catch {
    // A process that went away while we looked: look again.
  }
  return undefined;
}

/**
 * Boots the systemd of `image` (a directory holding a Debian root file system) in a container,
 * on an overlay of it; see the top of this file.
 */
export async function bootSystemd(
  name: string,
  image: string,
  timeoutMs = 120_000,
): Promise<Booted> {
  const base = await mkdtemp(join(tmpdir(), "poprelay-systemd-"));
  const layers = join(base, "layers");
  const root = join(base, "root");
  const console = join(base, "nspawn.log");
  await mkdir(layers);
  await mkdir(root);
  const mounted: string[] = [];
  const mount = async (args: string[], target: string) => {
    const run = await sh("mount", [...args, target]);
    if (run.code !== 0) throw new Error(`mount ${args.join(" ")} ${target}: ${describeRun(run)}`);
    mounted.unshift(target);
  };
  let nspawn: ReturnType<typeof spawn> | undefined;
  let leader = "";
  const exited = () =>
    new Promise<void>((resolve) => {
      if (!nspawn || nspawn.exitCode !== null || nspawn.signalCode !== null) resolve();
      else nspawn.once("exit", () => resolve());
    });
  const exec = (args: readonly string[], ms = 120_000) =>
    sh(TOOLS.nsenter, ["--target", leader, "--all", "--", ...args], { timeoutMs: ms });
  const bash = (script: string, ms?: number) =>
    exec(["/bin/bash", "--norc", "-euo", "pipefail", "-c", script], ms);

  /** Starts systemd-nspawn on `root` and waits until the container's systemd has booted. */
  const boot = async () => {
    nspawn = spawn(
      TOOLS["systemd-nspawn"],
      [
        "--quiet",
        `--directory=${root}`,
        `--machine=${name}`,
        "--register=no",
        "--keep-unit",
        "--link-journal=no",
        "--private-network",
        "--boot",
        "--console=read-only",
      ],
      {
        stdio: ["ignore", openSync(console, "a"), openSync(console, "a")],
        // This machine mounts cgroup v1 (and an empty cgroup2 beside it); systemd 258 and later
        // refuse to boot without the unified hierarchy, which nspawn then gives the container.
        env: { ...process.env, SYSTEMD_NSPAWN_UNIFIED_HIERARCHY: "1" },
      },
    );
    const deadline = Date.now() + timeoutMs;
    let pid: number | undefined;
    while (!pid && Date.now() < deadline) {
      if (nspawn.exitCode !== null) break;
      await sleep(100);
      pid = nspawn.pid ? await containerInit(nspawn.pid) : undefined;
    }
    if (!pid)
      throw new Error(
        `systemd-nspawn did not start a container: ${await readFile(console, "utf8")}`,
      );
    leader = String(pid);
    // Until the boot transaction is done: "running", or "degraded" where a unit of the image
    // fails in a container (that is not ours to judge).
    let state: Run | undefined;
    while (Date.now() < deadline) {
      state = await exec(["systemctl", "is-system-running", "--wait"], 60_000);
      if (/^(running|degraded)$/.test(state.stdout.trim())) return;
      await sleep(500);
    }
    const log = await readFile(console, "utf8");
    throw new Error(
      `the container's systemd did not finish booting: ${state ? describeRun(state) : "no answer"}\n--- console\n${log.slice(-4000)}`,
    );
  };

  /** Powers the container off (SIGTERM to nspawn asks its systemd), or kills it after 30 s. */
  const halt = async () => {
    if (nspawn && nspawn.exitCode === null && nspawn.signalCode === null) {
      nspawn.kill("SIGTERM");
      const done = await Promise.race([exited().then(() => true), sleep(30_000).then(() => false)]);
      if (!done) {
        nspawn.kill("SIGKILL");
        await exited();
      }
    }
  };
  const stop = async () => {
    await halt();
    for (const target of mounted) await sh("umount", ["--lazy", target]);
    await rm(base, { recursive: true, force: true });
  };
  const reboot = async () => {
    // --no-block: the shutdown kills this very command.
    const run = await exec(["systemctl", "--no-block", "reboot"]);
    if (run.code !== 0) throw new Error(`systemctl reboot: ${describeRun(run)}`);
    // nspawn ends with 133 when its container asks for a reboot; booting again is ours to do.
    const done = await Promise.race([exited().then(() => true), sleep(60_000).then(() => false)]);
    if (!done) throw new Error("the container did not shut down within 60 s of systemctl reboot");
    if (nspawn?.exitCode !== 133)
      throw new Error(`systemd-nspawn ended with ${nspawn?.exitCode} on reboot, not 133`);
    await boot();
  };
  try {
    // The upper layer on a tmpfs: overlayfs refuses an upper directory inside its lower one.
    await mount(["-t", "tmpfs", "-o", "mode=0755", "tmpfs"], layers);
    await mkdir(join(layers, "upper"));
    await mkdir(join(layers, "work"));
    await mount(
      [
        "-t",
        "overlay",
        "-o",
        `lowerdir=${image},upperdir=${layers}/upper,workdir=${layers}/work`,
        "overlay",
      ],
      root,
    );
    await boot();
    return { root, exec, bash, reboot, stop };
  } catch (error) {
    await stop();
    throw error;
  }
}
