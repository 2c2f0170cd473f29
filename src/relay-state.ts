import { rm } from "node:fs/promises";
import type { MapConfig } from "./config/types.js";
import type { Logger } from "./log.js";
import {
  buildDatabase,
  type DatabaseJob,
  type MapWriteResult,
  type StagedMap,
  stageMap,
  writeMap,
} from "./maps/write.js";
import type { SessionPlan } from "./spool/sessions.js";
import type { SpoolEntry, SpoolStore } from "./spool/types.js";

export interface RelayChange<T> {
  /** What the spool operation returned. */
  result: T;
  map: MapWriteResult;
  /** Entries in the map now (unexpired), in address order. */
  live: SpoolEntry[];
  /** When the next live entry expires (ms since the epoch); undefined when none is live. */
  nextExpiry: number | undefined;
  /**
   * With `deferDatabase`: settles when the map's database has been rebuilt from this change's
   * text (or a later one); rejects with a MapWriteError. Undefined when there was nothing to build.
   */
  database?: Promise<MapWriteResult>;
}

/** The spool change is durable, but the map could not be written (the old one stands). */
export class MapWriteError extends Error {
  constructor(cause: Error) {
    super(cause.message, { cause });
    this.name = "MapWriteError";
  }
}

export interface RelayStateOptions {
  /**
   * Return once the spool change is durable and the text map is in place, and build the
   * database (postmap, makemap) after the lock is released, one build at a time, the builds
   * asked for meanwhile coalesced into one from the newest text. The daemon does this, so that
   * a login is never held up by the database build of the one before it.
   */
  deferDatabase?: boolean;
}

/**
 * The spool and the map kept in step: every change to the spool is followed by a map write,
 * both under the spool's lock, so concurrent processes never publish a map that misses an entry
 * another one added. The map holds only entries that have not expired. A deferred database is
 * put in place under the same lock, and only while the text it was built from is still the
 * live one: a writer that replaced the text builds the database for it.
 */
export class RelayState {
  private readonly builder: DatabaseBuilder | undefined;

  constructor(
    private readonly store: SpoolStore,
    private readonly map: MapConfig,
    private readonly log: Logger,
    private readonly clock: () => number = Date.now,
    options: RelayStateOptions = {},
  ) {
    if (options.deferDatabase)
      this.builder = new DatabaseBuilder((fn) => this.store.exclusive(fn), log);
  }

  /** Grants relay to these logins (seed: addRelayAddress). */
  grant(entries: readonly SpoolEntry[]): Promise<RelayChange<SpoolEntry[]>> {
    return this.change(() => this.store.put(entries));
  }

  /**
   * Logins and session ends (spool/sessions.ts plans them from the entries as they are under
   * the lock). An entry a session end shortens replaces the stored one: removed, then put.
   */
  track(
    plan: (current: ReadonlyMap<string, SpoolEntry>) => SessionPlan,
  ): Promise<RelayChange<SpoolEntry[]>> {
    return this.change(async () => {
      const current = new Map((await this.store.list()).map((e) => [e.ip, e]));
      const { put, replace } = plan(current);
      let replaced = replace;
      if (replace.length > 0) {
        try {
          await this.store.remove(replace.map((e) => e.ip));
        } catch (error) {
          // Shared state out of reach: the entries keep their longer expiry (session_max).
          this.log.warning(
            `session ends not recorded, relay lasts until session_max: ${(error as Error).message}`,
          );
          replaced = [];
        }
      }
      return this.store.put([...put, ...replaced]);
    });
  }

  /** Takes relay away from these addresses now. */
  revoke(ips: readonly string[]): Promise<RelayChange<string[]>> {
    return this.change(() => this.store.remove(ips));
  }

  /** Removes expired entries (seed: cleanRelayDirectory). */
  expire(): Promise<RelayChange<SpoolEntry[]>> {
    return this.change(() => this.store.removeExpired(this.clock()));
  }

  /** Removes every entry (seed: wipeRelayDirectory). */
  wipe(): Promise<RelayChange<number>> {
    return this.change(() => this.store.wipe());
  }

  /** Writes the map from the spool if it changed elsewhere (another host, another process). */
  refresh(): Promise<RelayChange<undefined>> {
    return this.change(async () => undefined);
  }

  /** Writes the map from the spool even when its text is unchanged (seed: generateRelayFile). */
  regenerate(): Promise<RelayChange<undefined>> {
    return this.change(async () => undefined, true);
  }

  entries(): Promise<SpoolEntry[]> {
    return this.store.list();
  }

  /** Resolves when no deferred database build is running or waiting. */
  settled(): Promise<void> {
    return this.builder?.idle() ?? Promise.resolve();
  }

  private async change<T>(operation: () => Promise<T>, force = false): Promise<RelayChange<T>> {
    const change = await this.store.exclusive(async () => {
      const result = await operation();
      const now = this.clock();
      const live = (await this.store.list()).filter((e) => e.expires > now);
      let staged: StagedMap;
      try {
        if (!this.store.known() || this.map.mta === "none") {
          // No map (map.mta: none), or shared state not read yet: the map stays as it is.
          staged = {
            result: { changed: false, entries: live.length, file: this.map.file, products: [] },
          };
        } else if (this.builder) {
          staged = await stageMap(live, this.map, { force, log: this.log });
        } else {
          staged = { result: await writeMap(live, this.map, { force, log: this.log }) };
        }
      } catch (error) {
        throw new MapWriteError(error as Error);
      }
      const nextExpiry = live.reduce<number | undefined>(
        (min, e) => (min === undefined || e.expires < min ? e.expires : min),
        undefined,
      );
      return { result, staged, live, nextExpiry };
    });
    const { result, staged, live, nextExpiry } = change;
    const relay: RelayChange<T> = { result, map: staged.result, live, nextExpiry };
    if (staged.job && this.builder) {
      relay.database = this.builder.request(staged.job);
      // The build logs its own failure; a caller that does not wait for it must not crash.
      relay.database.catch(() => undefined);
    }
    return relay;
  }
}

interface Waiter {
  resolve: (result: MapWriteResult) => void;
  reject: (error: Error) => void;
}

/**
 * One database build at a time. Jobs asked for while one runs wait as one: only the newest is
 * built (its text holds every change before it), and every waiter gets its outcome.
 */
class DatabaseBuilder {
  private running: Promise<void> | undefined;
  private current: { job: DatabaseJob; waiters: Waiter[] } | undefined;
  private next: { job: DatabaseJob; waiters: Waiter[] } | undefined;
  private idleWaiters: (() => void)[] = [];

  constructor(
    private readonly lock: <T>(fn: () => Promise<T>) => Promise<T>,
    private readonly log: Logger,
  ) {}

  request(job: DatabaseJob): Promise<MapWriteResult> {
    const outcome = new Promise<MapWriteResult>((resolve, reject) => {
      const waiter = { resolve, reject };
      // A database found stale while a build for the same live text is under way or waiting
      // (the text was published, its database not yet in place): that build covers it.
      const same = [this.next, this.current].find((b) => b?.job.textIno === job.textIno);
      if (!job.published && same) {
        void discard(job);
        same.waiters.push(waiter);
      } else if (this.next) {
        void discard(this.next.job);
        this.next = { job, waiters: [...this.next.waiters, waiter] };
      } else {
        this.next = { job, waiters: [waiter] };
      }
    });
    this.start();
    return outcome;
  }

  idle(): Promise<void> {
    if (!this.running && !this.next) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private start(): void {
    if (this.running) return;
    const next = this.next;
    if (!next) {
      for (const resolve of this.idleWaiters.splice(0)) resolve();
      return;
    }
    this.next = undefined;
    this.current = next;
    this.running = buildDatabase(next.job, { lock: this.lock })
      .then(
        (result) => {
          this.current = undefined;
          for (const waiter of next.waiters) waiter.resolve(result);
        },
        (error: Error) => {
          this.current = undefined;
          const failure = new MapWriteError(error);
          for (const waiter of next.waiters) waiter.reject(failure);
        },
      )
      .finally(() => {
        this.running = undefined;
        this.start();
      });
    this.log.debug(`map: building the database (${next.waiters.length} change(s))`);
  }
}

/** A job replaced by a newer one before it was built: only its private directory is left. */
async function discard(job: DatabaseJob): Promise<void> {
  await rm(job.temp, { recursive: true, force: true }).catch(() => undefined);
}
