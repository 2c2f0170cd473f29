import { type ChildProcess, spawn } from "node:child_process";
import { createServer } from "node:net";
import { join } from "node:path";
import type { RedisConfig } from "../../src/config/types.js";
import { type Logger, memoryLogger } from "../../src/log.js";
import { FileSpoolStore } from "../../src/spool/file-store.js";
import { FileLock } from "../../src/spool/lock.js";
import { RedisSpoolStore } from "../../src/spool/redis/store.js";
import { skipReason, waitFor } from "./dovecot.js";

export const REDIS_SERVER = "/usr/bin/redis-server";
export const REDIS_CLI = "/usr/bin/redis-cli";

export const redisSkipReason = () => skipReason("Redis", [REDIS_SERVER, REDIS_CLI]);

/** A private redis-server (or sentinel) on a loopback port, its data under `dir`. */
export interface RedisServer {
  port: number;
  url: string;
  /** Stops it (SIGTERM). With the append-only file, every write survives. */
  stop(): Promise<void>;
  /** Starts it again on the same port and data, after stop(). */
  start(): Promise<void>;
}

/** A port nobody listens on now. */
export async function freePort(host = "127.0.0.1"): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, host, resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (typeof address !== "object" || address === null) throw new Error("no port");
  return address.port;
}

export interface RedisOptions {
  /** Arguments after the defaults (a config file first, for a sentinel). */
  args?: (port: number) => string[];
  /** A config file to start from (sentinels need one they can rewrite). */
  configFile?: string;
  /** What the log says when it is ready. */
  ready?: RegExp;
  /** Default: a free one. */
  port?: number;
}

export async function startRedis(dir: string, options: RedisOptions = {}): Promise<RedisServer> {
  const port = options.port ?? (await freePort());
  let child: ChildProcess | undefined;
  let output = "";
  const start = async () => {
    output = "";
    const args = [
      ...(options.configFile ? [options.configFile] : []),
      "--port",
      String(port),
      "--bind",
      "127.0.0.1",
      "--dir",
      dir,
      "--appendonly",
      "yes",
      "--appendfsync",
      "always",
      "--save",
      "",
      "--daemonize",
      "no",
      ...(options.args?.(port) ?? []),
    ];
    child = spawn(REDIS_SERVER, args, { stdio: ["ignore", "pipe", "pipe"] });
    for (const stream of [child.stdout, child.stderr])
      stream?.on("data", (chunk: Buffer) => {
        output += chunk.toString();
      });
    const ready = options.ready ?? /Ready to accept connections/;
    await waitFor("redis-server to start", () => (ready.test(output) ? true : undefined)).catch(
      (error: Error) => {
        throw new Error(`${error.message}\n${output}`);
      },
    );
  };
  const stop = async () => {
    const running = child;
    child = undefined;
    if (!running || running.exitCode !== null) return;
    const exited = new Promise((resolve) => running.on("exit", resolve));
    running.kill("SIGTERM");
    await exited;
  };
  await start();
  return { port, url: `redis://127.0.0.1:${port}/0`, stop, start };
}

export interface StoreOptions {
  redis: RedisConfig;
  /**
   * Where its files go, each named after `name`: NAME.lock, NAME.backlog/, NAME.state,
   * NAME.granted/, NAME.state-id.
   */
  dir: string;
  name: string;
  log?: Logger;
  /** A follower (the daemon's store) with a backlog of this many logins; else the command line's. */
  backlog?: number;
}

/** A RedisSpoolStore as open.ts builds one, with its local files in a scratch directory. */
export function redisStore(options: StoreOptions): RedisSpoolStore {
  const { redis, dir, name, backlog } = options;
  const log = options.log ?? memoryLogger();
  return new RedisSpoolStore({
    redis,
    lock: new FileLock(join(dir, `${name}.lock`)),
    log,
    follow:
      backlog === undefined
        ? undefined
        : {
            store: new FileSpoolStore({
              directory: join(dir, `${name}.backlog`),
              legacyPeriod: 600,
              log,
            }),
            limit: backlog,
            lastKnown: join(dir, `${name}.state`),
            granted: new FileSpoolStore({
              directory: join(dir, `${name}.granted`),
              legacyPeriod: 600,
              log,
            }),
            stateIdFile: join(dir, `${name}.state-id`),
          },
  });
}
