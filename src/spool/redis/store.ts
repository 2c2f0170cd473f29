import { randomBytes } from "node:crypto";
import { readFile } from "node:fs/promises";
import type { RedisConfig } from "../../config/types.js";
import { writeFileAtomic } from "../../fs/atomic.js";
import type { Logger } from "../../log.js";
import {
  assertKey,
  entryFromRecord,
  latestPerIp,
  parseEntry,
  sanitizeEntry,
  serializeEntry,
} from "../entry.js";
import type { FileSpoolStore } from "../file-store.js";
import type { FileLock } from "../lock.js";
import { SortedEntries, sortEntries } from "../order.js";
import type { PutOptions, SpoolEntry, SpoolStore } from "../types.js";
import { connectRedis, describeRedis, type RedisClient } from "./connect.js";
import { type FeedMessage, parseFeedMessage } from "./feed.js";
import { PUT, REMOVE } from "./scripts.js";

/** What the daemon keeps on local disk for the times Redis cannot be reached. */
export interface Backlog {
  /** Logins made meanwhile. */
  store: FileSpoolStore;
  /** At most this many addresses. */
  limit: number;
  /**
   * The state as last known, written when the store closes (a stop, a restart, a reload), so
   * that a daemon starting while Redis is unreachable still knows what its map holds and
   * expires it on time.
   */
  lastKnown: string;
  /**
   * The logins this host granted itself, until they expire, and (in `stateIdFile`) the id of
   * the Redis state they were published into. When Redis comes back with another state
   * (restarted without persistence, a failover to an empty replica, FLUSHDB), this host
   * publishes them again: no live login is lost with the shared state.
   */
  granted: FileSpoolStore;
  stateIdFile: string;
}

export interface RedisSpoolOptions {
  redis: RedisConfig;
  /** Serializes this host's map writes: Redis keeps the entries, each host its own map. */
  lock: FileLock;
  log: Logger;
  /**
   * Follow the change feed and keep every entry in memory (the daemon): list() answers from
   * memory, and a login made while Redis is unreachable goes to the backlog. Without it, every
   * call asks Redis (the command line).
   */
  follow?: Backlog;
}

interface Scripts {
  poprelayPut(keys: number, ...args: (string | number)[]): Promise<(string | number)[]>;
  poprelayRemove(keys: number, ...args: string[]): Promise<(string | number)[]>;
}

const CHUNK = 1000;
// A FLUSHDB sends no message: a follower looks at the state's id this often to notice it.
const STATE_CHECK_MS = 5000;
// After a failed resync while connected (a script error, a timeout), try again this often.
const RESYNC_RETRY_MS = 1000;

/**
 * The spool in Redis, shared by every host of a deployment: one key per address that expires
 * by itself with the entry, an index of addresses by expiry, a version counter and a change
 * channel, all under the namespace's hash tag.
 *
 * A follower (the daemon) holds the whole state in memory at a known version: a full read at
 * every (re)connection, then the changes from the channel in version order; a missed version
 * means a full read again. Its own changes return once the channel has brought them back, so
 * list() always shows Redis' state at one version, never a local guess. While Redis is
 * unreachable the follower keeps what it knew (entries still expire on time, through
 * removeExpired), and new logins wait in the on-disk backlog until Redis answers again.
 */
export class RedisSpoolStore implements SpoolStore {
  private readonly client: RedisClient;
  private readonly subscriber: RedisClient | undefined;
  private readonly keys: {
    version: string;
    index: string;
    channel: string;
    entry: string;
    stateId: string;
  };
  private readonly where: string;
  private state: SortedEntries | undefined;
  private version = 0;
  /** Changes that arrived during a full read, applied after it. */
  private buffered: FeedMessage[] | undefined;
  private resyncing: Promise<void> | undefined;
  private resyncAgain = false;
  private retry: NodeJS.Timeout | undefined;
  private waiters: { version: number; resolve: () => void }[] = [];
  private readonly listeners = new Set<() => void>();
  private firstSync: { promise: Promise<void>; resolve: () => void };
  /** Why Redis is unreachable, and since when; undefined while all is well. */
  private outage: { since: number; reason: string } | undefined;
  /** The addresses in the backlog. */
  private readonly waiting = new Set<string>();
  /** The last connection error, for the command line's messages. */
  private lastError: string | undefined;
  private closed = false;
  /** Moves on with every sign of trouble: a full read begun before it proves nothing. */
  private epoch = 0;
  private counted: Promise<void> = Promise.resolve();
  /** The id of the Redis state `state` was read from; undefined before the first full read. */
  private stateId: string | undefined;
  private stateCheck: NodeJS.Timeout | undefined;
  /** Entries a lost state held, kept here until they expire, are revoked, or Redis has them. */
  private readonly kept = new Map<string, SpoolEntry>();

  constructor(private readonly options: RedisSpoolOptions) {
    const { redis } = options;
    const tag = `{${redis.namespace}}`;
    this.keys = {
      version: `${tag}:version`,
      index: `${tag}:index`,
      channel: `${tag}:changes`,
      entry: `${tag}:entry:`,
      // Made by the first reader of a state, gone with it: a new id is a new, emptied state.
      stateId: `${tag}:state-id`,
    };
    this.where = describeRedis(redis);
    this.client = connectRedis(redis, { reconnect: options.follow !== undefined });
    this.client.defineCommand("poprelayPut", { lua: PUT });
    this.client.defineCommand("poprelayRemove", { lua: REMOVE });
    let resolve = () => {};
    const promise = new Promise<void>((r) => {
      resolve = r;
    });
    this.firstSync = { promise, resolve };
    this.client.on("error", (error: Error) => {
      this.lastError = error.message;
      this.unreachable(error.message);
    });
    if (options.follow) {
      const subscriber = connectRedis(redis, { reconnect: true });
      this.subscriber = subscriber;
      subscriber.on("error", (error: Error) => this.unreachable(error.message));
      subscriber.on("message", (_channel: string, text: string) => this.received(text));
      // Every (re)connection of either: subscribe, then read everything (see fullRead).
      for (const client of [this.client, subscriber]) {
        client.on("ready", () => this.resync());
        client.on("close", () => this.unreachable("connection closed"));
      }
      this.counted = this.countBacklog(options.follow);
      this.stateCheck = setInterval(() => this.checkStateId(), STATE_CHECK_MS);
      this.stateCheck.unref();
    }
  }

  /** Resolves once the state was read from Redis, or after spool.redis.timeout. */
  async opened(): Promise<void> {
    if (!this.options.follow) return;
    await this.counted;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, this.options.redis.timeout * 1000);
    });
    await Promise.race([this.firstSync.promise, timeout]);
    clearTimeout(timer);
    if (!this.state) await this.loadLastKnown(this.options.follow.lastKnown);
  }

  exclusive<T>(fn: () => Promise<T>): Promise<T> {
    return this.options.lock.run(() => fn());
  }

  known(): boolean {
    return !this.options.follow || this.state !== undefined;
  }

  watch(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  status(): string {
    if (!this.options.follow) return "";
    const waiting = this.waiting.size > 0 ? `; ${this.waiting.size} logins waiting on disk` : "";
    if (this.outage) {
      const since = new Date(this.outage.since).toISOString();
      return `DEGRADED: ${this.where} unreachable since ${since} (${this.outage.reason})${waiting}`;
    }
    if (!this.state) return `${this.where}: connecting${waiting}`;
    return `${this.where}: version ${this.version}${waiting}`;
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.retry);
    clearInterval(this.stateCheck);
    for (const client of [this.client, this.subscriber]) client?.disconnect();
    for (const waiter of this.waiters.splice(0)) waiter.resolve();
    const follow = this.options.follow;
    if (follow && this.state) {
      // One object by address, each entry in its stored form (as the change channel has them).
      const entries = this.state.list().map((e) => `${JSON.stringify(e.ip)}:${serializeEntry(e)}`);
      await writeFileAtomic(follow.lastKnown, `{${entries.join(",")}}\n`, 0o640).catch(
        (error: Error) => this.options.log.error(`${follow.lastKnown}: ${error.message}`),
      );
    }
  }

  /** The state a previous run left, unexpired entries only; Redis' replaces it when it answers. */
  private async loadLastKnown(path: string): Promise<void> {
    let text: string;
    try {
      text = await readFile(path, "utf8");
    } catch {
      return;
    }
    const now = Date.now();
    const entries: SpoolEntry[] = [];
    try {
      for (const [ip, record] of Object.entries(JSON.parse(text) as Record<string, unknown>)) {
        const entry = entryFromRecord(ip, record);
        if (entry && entry.expires > now) entries.push(entry);
      }
    } catch {
      this.options.log.warning(`${path}: not a state poprelay wrote; ignored`);
      return;
    }
    // Version 0: the first change from the channel is a gap, and a full read follows.
    this.state = new SortedEntries(entries);
    this.options.log.warning(
      `${this.where} not read yet: working from the ${entries.length} entries it held when it last stopped`,
    );
  }

  async put(entries: readonly SpoolEntry[], options: PutOptions = {}): Promise<SpoolEntry[]> {
    for (const entry of entries) assertKey(entry.ip);
    const batch = latestPerIp(entries).map(sanitizeEntry);
    if (batch.length === 0) return [];
    const follow = this.options.follow;
    if (options.replace && follow && (this.outage || !this.state))
      return this.endsNotRecorded(this.outage?.reason ?? "not read yet");
    // Remembered here first: whatever becomes of Redis, this host can publish them again.
    if (follow) await follow.granted.put(batch, options);
    if (follow && (this.outage || !this.state)) return this.toBacklog(follow, batch);
    try {
      const byIp = new Map(batch.map((e) => [e.ip, e]));
      const changed: SpoolEntry[] = [];
      for (let i = 0; i < batch.length; i += CHUNK) {
        const { version, ips } = await this.putRemote(batch.slice(i, i + CHUNK), options);
        await this.caughtUp(version);
        for (const ip of ips) {
          const entry = byIp.get(ip);
          if (entry) changed.push(entry);
        }
      }
      return changed;
    } catch (error) {
      if (!follow) throw this.failure(error);
      // A timeout, a failover, READONLY, OOM...: the script is idempotent, so the batch waits
      // on disk and is sent again, whether or not it got through.
      this.unreachable((error as Error).message);
      if (options.replace) return this.endsNotRecorded((error as Error).message);
      return this.toBacklog(follow, batch);
    }
  }

  /**
   * A session's end while Redis is away is not kept on disk, whose room is for logins (README:
   * Sessions): the entry it would shorten keeps its longer expiry, within session_max.
   */
  private endsNotRecorded(reason: string): SpoolEntry[] {
    this.options.log.warning(
      `${this.where}: session ends not recorded, relay lasts until session_max: ${reason}`,
    );
    return [];
  }

  async remove(ips: readonly string[]): Promise<string[]> {
    for (const ip of ips) assertKey(ip);
    const unique = [...new Set(ips)];
    const removed: string[] = [];
    try {
      for (let i = 0; i < unique.length; i += CHUNK) {
        const chunk = unique.slice(i, i + CHUNK);
        const reply = await this.scripts().poprelayRemove(
          chunk.length + 2,
          this.keys.version,
          this.keys.index,
          ...chunk.map((ip) => this.keys.entry + ip),
          this.keys.channel,
          ...chunk,
        );
        await this.caughtUp(Number(reply[0]));
        removed.push(...reply.slice(1).map(String));
      }
    } catch (error) {
      throw this.failure(error);
    }
    return removed;
  }

  async removeExpired(now: number): Promise<SpoolEntry[]> {
    // Redis drops the entries' keys by itself; only the index is left to tidy.
    const tidy = async () => {
      await this.client.zremrangebyscore(this.keys.index, "-inf", now);
    };
    if (this.options.follow) {
      const state = this.state;
      if (!state) return [];
      const expired = state.list().filter((e) => e.expires <= now);
      for (const entry of expired) state.delete(entry.ip);
      await this.options.follow.granted
        .removeExpired(now)
        .catch((e: Error) => this.options.log.error(`own grants: ${e.message}`));
      if (!this.outage) await tidy().catch((e: Error) => this.unreachable(e.message));
      return expired;
    }
    try {
      const scored = await this.client.zrangebyscore(this.keys.index, "-inf", now, "WITHSCORES");
      const ips: string[] = [];
      const expiries: number[] = [];
      for (let i = 0; i < scored.length; i += 2) {
        ips.push(scored[i] ?? "");
        expiries.push(Number(scored[i + 1]));
      }
      const found = await this.read(ips);
      await tidy();
      // Keys Redis already dropped: the address and its expiry are all that is left.
      return ips.map(
        (ip, i) =>
          found.get(ip) ?? { ip, user: "", agent: "", login: 0, expires: expiries[i] ?? now },
      );
    } catch (error) {
      throw this.failure(error);
    }
  }

  async wipe(): Promise<number> {
    let ips: string[];
    try {
      ips = await this.client.zrange(this.keys.index, "0", "-1");
    } catch (error) {
      throw this.failure(error);
    }
    return (await this.remove(ips)).length;
  }

  async list(): Promise<readonly SpoolEntry[]> {
    if (this.state) return this.state.list();
    if (this.options.follow) return [];
    try {
      return sortEntries((await this.snapshot(Date.now())).entries);
    } catch (error) {
      throw this.failure(error);
    }
  }

  private scripts(): Scripts {
    return this.client as unknown as Scripts;
  }

  private async putRemote(
    batch: SpoolEntry[],
    options: PutOptions = {},
  ): Promise<{ version: number; ips: string[] }> {
    const args: (string | number)[] = [];
    for (const entry of batch) args.push(entry.ip, serializeEntry(entry), entry.expires);
    const reply = await this.scripts().poprelayPut(
      batch.length + 2,
      this.keys.version,
      this.keys.index,
      ...batch.map((e) => this.keys.entry + e.ip),
      this.keys.channel,
      options.replace ? "replace" : "",
      ...args,
    );
    return { version: Number(reply[0]), ips: reply.slice(1).map(String) };
  }

  /**
   * A follower's own change is in list() once the channel brought it back. When it does not
   * come in time (the subscription dropped), a full read will bring it.
   */
  private caughtUp(version: number): Promise<void> {
    if (!this.options.follow || this.closed) return Promise.resolve();
    if (version < this.version) {
      // Redis' version went back (FLUSHDB, a failover to a stale replica): read it all again.
      this.options.log.warning(`${this.where}: version ${version} is behind ${this.version}`);
      this.resync();
      return Promise.resolve();
    }
    if (this.version >= version) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        this.options.log.warning(
          `${this.where}: change ${version} did not come back on ${this.keys.channel}; reading everything again`,
        );
        this.resync();
        resolve();
      }, this.options.redis.timeout * 1000);
      const waiter = {
        version,
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
      };
      this.waiters.push(waiter);
    });
  }

  /** Every live entry, with the version they are at. */
  private async snapshot(
    now: number,
  ): Promise<{ version: number; entries: SpoolEntry[]; stateId: string }> {
    const result = await this.client
      .multi()
      .get(this.keys.version)
      .zrangebyscore(this.keys.index, `(${now}`, "+inf")
      .get(this.keys.stateId)
      .exec();
    if (!result) throw new Error("the read was aborted");
    for (const [error] of result) if (error) throw error;
    const version = Number(result[0]?.[1] ?? 0) || 0;
    const ips = (result[1]?.[1] as string[] | undefined) ?? [];
    const stateId = String(result[2]?.[1] ?? "");
    const found = await this.read(ips);
    return { version, entries: [...found.values()], stateId };
  }

  private async read(ips: readonly string[]): Promise<Map<string, SpoolEntry>> {
    const found = new Map<string, SpoolEntry>();
    for (let i = 0; i < ips.length; i += CHUNK) {
      const chunk = ips.slice(i, i + CHUNK);
      if (chunk.length === 0) continue;
      const values = await this.client.mget(...chunk.map((ip) => this.keys.entry + ip));
      chunk.forEach((ip, j) => {
        const text = values[j];
        if (text === null || text === undefined) return;
        // Checked as hostile: anyone with access to Redis could have written it.
        const entry = parseEntry(ip, text);
        if (entry) found.set(ip, entry);
        else
          this.options.log.warning(`${this.where}: ignoring ${this.keys.entry}${ip}: not an entry`);
      });
    }
    return found;
  }

  /** Send the backlog, then read everything; runs again if asked meanwhile. */
  private resync(): void {
    if (this.closed || !this.options.follow) return;
    if (this.resyncing) {
      this.resyncAgain = true;
      return;
    }
    clearTimeout(this.retry);
    this.resyncing = this.fullRead(this.options.follow)
      .catch((error: Error) => this.unreachable(error.message))
      .finally(() => {
        this.resyncing = undefined;
        if (this.resyncAgain) {
          this.resyncAgain = false;
          this.resync();
        }
      });
  }

  /**
   * Under the lock, so no login goes to the backlog while it is being sent, and none is
   * granted from a state about to be replaced.
   */
  private fullRead(backlog: Backlog): Promise<void> {
    return this.options.lock.run(async () => {
      const subscriber = this.subscriber;
      if (this.closed || this.client.status !== "ready" || subscriber?.status !== "ready") return;
      const epoch = this.epoch;
      // Subscribed before the read, so no change after it is missed (a repeat is harmless).
      await subscriber.subscribe(this.keys.channel);
      await this.sendBacklog(backlog);
      const republished = await this.republish(backlog);
      this.buffered = [];
      let snapshot: { version: number; entries: SpoolEntry[]; stateId: string };
      try {
        snapshot = await this.snapshot(Date.now());
      } catch (error) {
        this.buffered = undefined;
        throw error;
      }
      const buffered = this.buffered;
      this.buffered = undefined;
      const previous = this.state;
      const lost =
        previous !== undefined &&
        ((this.stateId !== undefined && this.stateId !== snapshot.stateId) ||
          snapshot.version < this.version);
      const now = Date.now();
      const read = new Set(snapshot.entries.map((e) => e.ip));
      if (lost) {
        // Not adopted as it is: what this host knew stays until it expires (or is revoked),
        // while the hosts that granted it publish it again.
        const lostEntries = previous.list().filter((e) => e.expires > now && !read.has(e.ip));
        for (const entry of lostEntries) this.kept.set(entry.ip, entry);
        this.options.log.warning(
          `${this.where} came back with another state (version ${snapshot.version}, was ${this.version}): restarted without persistence, an empty replica or FLUSHDB; the ${lostEntries.length} entries it lost are kept here until they expire`,
        );
      } else if (!republished) {
        await this.forgetRevoked(backlog, snapshot.entries);
      }
      for (const [ip, entry] of this.kept)
        if (read.has(ip) || entry.expires <= now) this.kept.delete(ip);
      this.state = new SortedEntries([...snapshot.entries, ...this.kept.values()]);
      this.version = snapshot.version;
      this.stateId = snapshot.stateId;
      for (const message of buffered) this.apply(message);
      this.options.log.info(
        `${this.where}: ${this.state.size} entries read at version ${this.version}`,
      );
      // Trouble during the read (the feed dropped): the state is read, but not yet followed.
      if (this.outage && epoch === this.epoch) {
        const seconds = Math.round((Date.now() - this.outage.since) / 1000);
        this.options.log.notice(`${this.where}: reachable again after ${seconds} s`);
        this.outage = undefined;
      }
      this.firstSync.resolve();
      this.settleWaiters();
      this.changed();
    });
  }

  /**
   * This host's own live grants, published again when Redis holds another state than the one
   * they went into (or went back in version); idempotent: a later login in Redis wins. True
   * when they were sent.
   */
  private async republish(backlog: Backlog): Promise<boolean> {
    const reply = await this.client
      .multi()
      .set(this.keys.stateId, randomBytes(12).toString("hex"), "NX")
      .get(this.keys.stateId)
      .get(this.keys.version)
      .exec();
    if (!reply) throw new Error("the read was aborted");
    for (const [error] of reply) if (error) throw error;
    const id = String(reply[1]?.[1] ?? "");
    const version = Number(reply[2]?.[1] ?? 0) || 0;
    const recorded = await readFile(backlog.stateIdFile, "utf8").then(
      (text) => text.trim(),
      () => undefined,
    );
    const wentBack = this.state !== undefined && version < this.version;
    if (recorded === id && !wentBack) return false;
    const now = Date.now();
    const own = (await backlog.granted.list()).filter((e) => e.expires > now);
    for (let i = 0; i < own.length; i += CHUNK) await this.putRemote(own.slice(i, i + CHUNK));
    await writeFileAtomic(backlog.stateIdFile, `${id}\n`, 0o640);
    if (own.length > 0 && recorded !== undefined)
      this.options.log.notice(
        `${this.where} holds another state than the one this host published to: ${own.length} live logins granted here published again`,
      );
    return true;
  }

  /** Own grants that the same state no longer holds were removed (poprelay remove): forgotten. */
  private async forgetRevoked(backlog: Backlog, entries: readonly SpoolEntry[]): Promise<void> {
    const read = new Set(entries.map((e) => e.ip));
    const gone = (await backlog.granted.list()).filter((e) => !read.has(e.ip)).map((e) => e.ip);
    if (gone.length > 0) await backlog.granted.remove(gone);
  }

  /** A FLUSHDB leaves the connections as they were: the state's id tells. */
  private checkStateId(): void {
    if (this.closed || this.outage || !this.state || this.stateId === undefined) return;
    this.client.get(this.keys.stateId).then(
      (id) => {
        if (id === this.stateId || this.closed) return;
        this.options.log.warning(
          `${this.where}: the shared state was replaced (FLUSHDB?); reading everything again`,
        );
        this.resync();
      },
      () => undefined,
    );
  }

  private async sendBacklog(backlog: Backlog): Promise<void> {
    const now = Date.now();
    const waiting = await backlog.store.list();
    if (waiting.length === 0) return;
    let sent = 0;
    for (let i = 0; i < waiting.length; i += CHUNK) {
      const chunk = waiting.slice(i, i + CHUNK);
      // Expired while it waited: nothing to send.
      const live = chunk.filter((e) => e.expires > now);
      try {
        if (live.length > 0) await this.putRemote(live);
        sent += live.length;
      } catch (error) {
        if (!isScriptError(error)) throw error;
        sent += await this.sendOneByOne(live);
      }
      const done = chunk.map((e) => e.ip);
      await backlog.store.remove(done);
      for (const ip of done) this.waiting.delete(ip);
    }
    this.options.log.notice(`${this.where}: sent ${sent} logins kept on disk`);
  }

  /** A chunk Redis refused: each entry alone, so one it never takes cannot hold back the rest. */
  private async sendOneByOne(entries: SpoolEntry[]): Promise<number> {
    let sent = 0;
    for (const entry of entries) {
      try {
        await this.putRemote([entry]);
        sent++;
      } catch (error) {
        if (!isScriptError(error)) throw error;
        this.options.log.error(
          `${this.where} refused the login of ${JSON.stringify(entry.user)} from ${entry.ip}: ${(error as Error).message}`,
        );
      }
    }
    return sent;
  }

  private async toBacklog(backlog: Backlog, batch: SpoolEntry[]): Promise<SpoolEntry[]> {
    const kept: SpoolEntry[] = [];
    for (const entry of batch) {
      if (this.waiting.has(entry.ip) || this.waiting.size + kept.length < backlog.limit) {
        kept.push(entry);
        continue;
      }
      this.options.log.error(
        `${this.where} unreachable and ${backlog.limit} logins already wait on disk (spool.redis.backlog): the login of ${JSON.stringify(entry.user)} from ${entry.ip} is not kept`,
      );
    }
    await backlog.store.put(kept);
    for (const entry of kept) this.waiting.add(entry.ip);
    if (kept.length > 0)
      this.options.log.warning(
        `${this.where} unreachable: ${kept.length} login(s) kept on disk until it answers (${this.waiting.size} waiting)`,
      );
    // Nothing changed in the shared state yet: the map stays as it is.
    return [];
  }

  private async countBacklog(backlog: Backlog): Promise<void> {
    try {
      for (const entry of await backlog.store.list()) this.waiting.add(entry.ip);
    } catch (error) {
      this.options.log.error(`the backlog cannot be read: ${(error as Error).message}`);
    }
  }

  private received(text: string): void {
    const message = parseFeedMessage(text);
    if (!message) {
      this.options.log.warning(
        `${this.where}: ignoring a message on ${this.keys.channel}: ${JSON.stringify(text.slice(0, 200))}`,
      );
      return;
    }
    if (this.buffered) {
      this.buffered.push(message);
      return;
    }
    if (!this.state) return;
    if (message.version > this.version + 1) {
      this.options.log.warning(
        `${this.where}: changes ${this.version + 1} to ${message.version - 1} were missed; reading everything again`,
      );
      this.resync();
      return;
    }
    // A change this process waits for is its own: its caller writes the map anyway.
    const own = this.waiters.some((w) => w.version === message.version);
    if (this.apply(message) && !own) this.changed();
    this.settleWaiters();
  }

  /** Applies one change in version order; false when it was already in the state. */
  private apply(message: FeedMessage): boolean {
    const state = this.state;
    if (!state || message.version <= this.version) return false;
    this.version = message.version;
    // Redis decided which login wins: its change is the state.
    if (message.op === "put") {
      for (const entry of message.entries) state.set(entry);
    } else {
      for (const ip of message.ips) {
        state.delete(ip);
        this.kept.delete(ip);
      }
      // Revoked (poprelay remove, wipe): not one to publish again.
      this.options.follow?.granted
        .remove(message.ips)
        .catch((e: Error) => this.options.log.error(`own grants: ${e.message}`));
    }
    return true;
  }

  private settleWaiters(): void {
    const ready = this.waiters.filter((w) => w.version <= this.version);
    this.waiters = this.waiters.filter((w) => w.version > this.version);
    for (const waiter of ready) waiter.resolve();
  }

  private changed(): void {
    for (const listener of this.listeners) listener();
  }

  private unreachable(reason: string): void {
    if (this.closed || !this.options.follow) return;
    this.epoch++;
    if (!this.outage) {
      this.outage = { since: Date.now(), reason };
      this.options.log.error(
        `${this.where} unreachable (${reason}): the map stays as it is, logins are kept on disk`,
      );
      this.changed();
    } else {
      this.outage.reason = reason;
    }
    // A command failed but the connections stand (a timeout, a failover): no "ready" will come
    // to end the outage, so try a full read in a while.
    clearTimeout(this.retry);
    this.retry = setTimeout(() => this.resync(), RESYNC_RETRY_MS);
  }

  private failure(error: unknown): Error {
    const message = (error as Error).message;
    const reason = this.lastError && this.lastError !== message ? ` (${this.lastError})` : "";
    return new Error(`${this.where}: ${message}${reason}`, { cause: error });
  }
}

function isScriptError(error: unknown): boolean {
  return (error as Error).name === "ReplyError";
}
