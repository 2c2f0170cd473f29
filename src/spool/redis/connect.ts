import { readFileSync } from "node:fs";
import { Cluster, Redis, type RedisOptions } from "ioredis";
import { ConfigError } from "../../config/load.js";
import type { RedisConfig } from "../../config/types.js";
import { parseHostPort, parseRedisUrl, redactRedisUrl } from "./address.js";

export type RedisClient = Redis | Cluster;

export interface ConnectOptions {
  /**
   * Keep reconnecting, with commands failing at once while disconnected (the daemon, which
   * keeps logins on disk meanwhile); otherwise one attempt, and commands fail when it does
   * (the command line).
   */
  reconnect: boolean;
}

/** Where the configuration points, for messages: the URL without its password, or the nodes. */
export function describeRedis(config: RedisConfig): string {
  if (config.sentinels.length > 0)
    return `redis sentinel ${config.name} at ${config.sentinels.join(",")}`;
  if (config.cluster.length > 0) return `redis cluster at ${config.cluster.join(",")}`;
  return `redis ${redactRedisUrl(config.url)}`;
}

/** An ioredis client for a single server, Sentinel or Cluster, as the configuration says. */
export function connectRedis(config: RedisConfig, options: ConnectOptions): RedisClient {
  if (config.sentinels.length > 0 && config.cluster.length > 0)
    throw new ConfigError(["spool.redis: sentinels and cluster exclude each other; set one"]);
  const url = parseRedisUrl(config.url);
  const timeout = config.timeout * 1000;
  let tls: RedisOptions["tls"];
  if (url.tls) {
    try {
      tls = config.ca ? { ca: readFileSync(config.ca) } : {};
    } catch (error) {
      throw new ConfigError([`spool.redis.ca: ${(error as Error).message}`]);
    }
  }
  const common: RedisOptions = {
    username: url.username,
    password: url.password,
    tls,
    connectTimeout: timeout,
    commandTimeout: timeout,
    enableOfflineQueue: !options.reconnect,
    maxRetriesPerRequest: options.reconnect ? 0 : 1,
    // ioredis' own backoff (50 ms more per attempt, at most 2 s) while the daemon waits.
    retryStrategy: options.reconnect ? (times) => Math.min(times * 50, 2000) : () => null,
    lazyConnect: false,
  };
  if (config.cluster.length > 0) {
    return new Cluster(config.cluster.map(parseHostPort), {
      redisOptions: common,
      enableOfflineQueue: common.enableOfflineQueue,
      // The command line too tries a few times: a cluster may answer while it still settles.
      clusterRetryStrategy: options.reconnect
        ? common.retryStrategy
        : (times) => (times > 3 ? null : 200),
    });
  }
  if (config.sentinels.length > 0) {
    return new Redis({
      ...common,
      db: url.db,
      sentinels: config.sentinels.map(parseHostPort),
      name: config.name,
      enableTLSForSentinelMode: url.tls,
    });
  }
  return new Redis({ ...common, host: url.host, port: url.port, db: url.db });
}
