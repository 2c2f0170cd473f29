import { join } from "node:path";
import type { Config } from "../config/types.js";
import type { Logger } from "../log.js";
import { FileSpoolStore } from "./file-store.js";
import { FileLock } from "./lock.js";
import type { SpoolStore } from "./types.js";

export { validateSpoolPaths } from "./paths.js";

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
