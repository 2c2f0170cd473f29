import { dirname, isAbsolute, join, relative, resolve } from "node:path";
import type { Config } from "../config/types.js";
import type { Logger } from "../log.js";
import { FileSpoolStore } from "./file-store.js";
import { FileLock } from "./lock.js";
import type { SpoolStore } from "./types.js";

/**
 * The configured backend. `follower` (the daemon, with its instance's name) follows Redis'
 * change feed and keeps logins on disk while Redis is unreachable; the command line asks
 * Redis directly.
 */
export async function openSpoolStore(
  config: Config,
  log: Logger,
  follower?: string,
): Promise<SpoolStore> {
  const legacyPeriod = config.relay.period;
  if (config.spool.backend === "file")
    return new FileSpoolStore({ directory: config.spool.directory, legacyPeriod, log });
  // Loaded only here: the Redis client is a tenth of a second of every command's start-up.
  const { RedisSpoolStore } = await import("./redis/store.js");
  return new RedisSpoolStore({
    redis: config.spool.redis,
    // Redis keeps the entries; the lock serializes this host's writers of the map.
    lock: new FileLock(join(config.state.directory, "redis.lock")),
    log,
    follow:
      follower === undefined
        ? undefined
        : {
            store: new FileSpoolStore({
              directory: join(config.state.directory, `${follower}.backlog`),
              legacyPeriod,
              log,
            }),
            limit: config.spool.redis.backlog,
            lastKnown: join(config.state.directory, `${follower}.redis-state`),
            granted: new FileSpoolStore({
              directory: join(config.state.directory, `${follower}.granted`),
              legacyPeriod,
              log,
            }),
            stateIdFile: join(config.state.directory, `${follower}.redis-state-id`),
          },
  });
}

/**
 * Where nothing else may live: every name in spool.directory is read as an entry, so a map (or
 * its database, or poprelay's state) kept there would be granted as an address or fail the
 * read. Problems as `key: reason`, for the loader to place in a file.
 */
export function validateSpoolPaths(config: Config): string[] {
  if (config.spool.backend !== "file") return [];
  const spool = config.spool.directory;
  const problems: string[] = [];
  if (config.map.mta !== "none" && within(dirname(config.map.file), spool)) {
    problems.push(
      `map.file: ${config.map.file} is in spool.directory (${spool}): the map would be read as a spool entry; give the map and the spool separate directories`,
    );
  }
  if (within(config.state.directory, spool)) {
    problems.push(
      `state.directory: ${config.state.directory} is in spool.directory (${spool}): give the state and the spool separate directories`,
    );
  }
  return problems;
}

/** `path` is `dir` or below it. */
function within(path: string, dir: string): boolean {
  const rel = relative(resolve(dir), resolve(path));
  return rel === "" || (!rel.startsWith("..") && !isAbsolute(rel));
}
