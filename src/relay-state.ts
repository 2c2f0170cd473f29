import { rm } from "node:fs/promises";
import type { MapConfig } from "./config/types.js";
import type { Logger } from "./log.js";
import {
  buildDatabase,
  type DatabaseJob,
  type MapWriteResult,
  type StagedMap,
  stageMap,
} from "./maps/write.js";
import { sortedLookup } from "./spool/order.js";
import type { CurrentEntries, SessionPlan } from "./spool/sessions.js";
import type { SpoolEntry, SpoolStore } from "./spool/types.js";

export interface RelayChange<T> {
  /** What the spool operation returned. */
  result: T;
  map: MapWriteResult;
  /** Entries in the map now (unexpired), in address order. */
  live: readonly SpoolEntry[];
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
  constructor(
    cause: Error,
    /** The spool's live entries after the change: what the map should have held. */
    readonly state?: Pick<RelayChange<unknown>, "live" | "nextExpiry">,
  ) {
    super(cause.message, { cause });
    this.name = "MapWriteError";
  }
}

export interface RelayStateOptions {
  /**
   * Return once the spool change is durable and the text map is in place, and let the database
   * (postmap, makemap) and the restart command follow: the daemon does this, so that a login is
   * never held up by the database build of the one before it. Without it (the command line),
   * each change waits for its database, and puts the previous text back when it fails. Either
   * way the commands run after the spool's lock is released, one build at a time, the builds
   * asked for meanwhile coalesced into one from the newest text.
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
  private readonly builder: DatabaseBuilder;
  private readonly defer: boolean;
  private durable: ((live: readonly SpoolEntry[]) => void) | undefined;

  constructor(
    private readonly store: SpoolStore,
    private readonly map: MapConfig,
    private readonly log: Logger,
    private readonly clock: () => number = Date.now,
    options: RelayStateOptions = {},
  ) {
    this.defer = options.deferDatabase === true;
    this.builder = new DatabaseBuilder((fn) => this.store.exclusive(fn), log, !this.defer);
  }

  /** Grants relay to these logins (seed: addRelayAddress). */
  grant(entries: readonly SpoolEntry[]): Promise<RelayChange<SpoolEntry[]>> {
    return this.change(() => this.store.put(entries));
  }

  /**
   * Logins and session ends (spool/sessions.ts plans them from the entries as they are under
   * the lock). An entry a session end shortens replaces the stored one in one atomic write:
   * killed at any instant, the address has the old entry or the new one, never none.
   */
  track(plan: (current: CurrentEntries) => SessionPlan): Promise<RelayChange<SpoolEntry[]>> {
    return this.change(async () => {
      // The list is sorted by address: no Map of every entry for each login (19 ms at 100,000).
      const { put, replace } = plan(sortedLookup(await this.store.list()));
      const changed = await this.store.put(put);
      if (replace.length > 0) changed.push(...(await this.store.put(replace, { replace: true })));
      return changed;
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

  /**
   * Calls `listener` with the live entries as soon as each change is durable in the spool,
   * before the map is written: the policy service answers from that, whatever the map does.
   */
  onDurable(listener: (live: readonly SpoolEntry[]) => void): void {
    this.durable = listener;
  }

  entries(): Promise<readonly SpoolEntry[]> {
    return this.store.list();
  }

  /** Resolves when no deferred database build is running or waiting. */
  settled(): Promise<void> {
    return this.builder.idle();
  }

  /**
   * No command starts from now on; the one running may finish within `graceMs`, then its
   * process group is killed. The next start (or the cleanup timer) rebuilds what is missing.
   */
  stop(graceMs: number): Promise<void> {
    return this.builder.stop(graceMs);
  }

  private async change<T>(operation: () => Promise<T>, force = false): Promise<RelayChange<T>> {
    const change = await this.store.exclusive(async () => {
      const result = await operation();
      const now = this.clock();
      const listed = await this.store.list();
      // One pass (100,000 entries on every grant): whether all are live, and the next expiry.
      let allLive = true;
      let nextExpiry: number | undefined;
      for (const { expires } of listed) {
        if (expires <= now) allLive = false;
        else if (nextExpiry === undefined || expires < nextExpiry) nextExpiry = expires;
      }
      // A copy already: kept as it is when every entry is live (nearly always), no second one.
      const live = allLive ? listed : listed.filter((e) => e.expires > now);
      this.durable?.(live);
      let staged: StagedMap;
      try {
        if (!this.store.known() || this.map.mta === "none") {
          // No map (map.mta: none), or shared state not read yet: the map stays as it is.
          staged = {
            result: { changed: false, entries: live.length, file: this.map.file, products: [] },
          };
        } else {
          staged = await stageMap(live, this.map, { force, log: this.log }, !this.defer);
        }
      } catch (error) {
        // The spool change is durable all the same: its entries are the state to answer from.
        throw new MapWriteError(error as Error, { live, nextExpiry });
      }
      return { result, staged, live, nextExpiry };
    });
    const { result, staged, live, nextExpiry } = change;
    const relay: RelayChange<T> = { result, map: staged.result, live, nextExpiry };
    if (staged.job) {
      relay.database = this.builder.request(staged.job);
      // The build logs its own failure; a caller that does not wait for it must not crash.
      relay.database.catch(() => undefined);
      if (!this.defer) {
        try {
          relay.map = await relay.database;
        } catch (error) {
          throw new MapWriteError(error as Error, { live, nextExpiry });
        }
      }
    }
    return relay;
  }
}

interface Waiter {
  resolve: (result: MapWriteResult) => void;
  reject: (error: Error) => void;
}

interface Build {
  job: DatabaseJob;
  waiters: Waiter[];
}

/**
 * A running build is killed when a newer one waits and it has run this long, or this many
 * times its last good build, whichever is longer: a hung command gives way to the next write,
 * and a slow but working one is not starved by a stream of logins.
 */
const SUPERSEDE_AFTER_MS = 5_000;
const SUPERSEDE_FACTOR = 3;

/**
 * One database build at a time. Jobs asked for while one runs wait as one: only the newest is
 * built (its text holds every change before it), and every waiter gets its outcome.
 */
class DatabaseBuilder {
  private running: Promise<void> | undefined;
  private current: (Build & { abort: AbortController; since: number }) | undefined;
  private next: Build | undefined;
  private idleWaiters: (() => void)[] = [];
  private supersede: NodeJS.Timeout | undefined;
  private lastGoodMs = 0;
  private stopped = false;

  constructor(
    private readonly lock: <T>(fn: () => Promise<T>) => Promise<T>,
    private readonly log: Logger,
    private readonly rollback: boolean,
  ) {}

  request(job: DatabaseJob): Promise<MapWriteResult> {
    if (this.stopped) {
      void discard(job);
      return Promise.reject(new MapWriteError(new Error("not built: stopping")));
    }
    const outcome = new Promise<MapWriteResult>((resolve, reject) => {
      const waiter = { resolve, reject };
      // A database found stale while a build for the same live text is under way or waiting
      // (the text was published, its database not yet in place): that build covers it.
      const same = [this.next, this.current].find((b) => b?.job.textIno === job.textIno);
      if (!job.published && !job.publishText && same) {
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
    this.watchCurrent();
    return outcome;
  }

  idle(): Promise<void> {
    if (!this.running && !this.next) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** From now on no command starts; the running one gets `graceMs`, then is killed. */
  async stop(graceMs: number): Promise<void> {
    this.stopped = true;
    const next = this.next;
    this.next = undefined;
    if (next) {
      void discard(next.job);
      const error = new MapWriteError(new Error("not built: stopping"));
      for (const waiter of next.waiters) waiter.reject(error);
    }
    const running = this.running;
    if (!running) return;
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<"late">((resolve) => {
      timer = setTimeout(() => resolve("late"), graceMs);
    });
    if ((await Promise.race([running, late])) === "late") {
      this.log.warning(
        `map: stopping: the database command still runs after ${graceMs / 1000} s; killed`,
      );
      this.current?.abort.abort();
      await running;
    }
    clearTimeout(timer);
    clearTimeout(this.supersede);
  }

  /** While a newer build waits, the running one gets its time, then is killed (see above). */
  private watchCurrent(): void {
    const current = this.current;
    if (!current || !this.next || this.supersede) return;
    const limit = Math.max(SUPERSEDE_AFTER_MS, SUPERSEDE_FACTOR * this.lastGoodMs);
    this.supersede = setTimeout(
      () => {
        this.supersede = undefined;
        if (this.current !== current || !this.next) return;
        this.log.warning(
          `map: the database command has run for ${Math.round((Date.now() - current.since) / 1000)} s; killed, a newer map follows`,
        );
        current.abort.abort();
      },
      Math.max(0, current.since + limit - Date.now()),
    );
  }

  private start(): void {
    if (this.running) return;
    const next = this.next;
    if (!next || this.stopped) {
      for (const resolve of this.idleWaiters.splice(0)) resolve();
      return;
    }
    this.next = undefined;
    const current = { ...next, abort: new AbortController(), since: Date.now() };
    this.current = current;
    this.running = buildDatabase(next.job, {
      lock: this.lock,
      rollback: this.rollback,
      signal: current.abort.signal,
    })
      .then(
        (result) => {
          this.lastGoodMs = Date.now() - current.since;
          for (const waiter of next.waiters) waiter.resolve(result);
        },
        (error: Error) => {
          // Killed for a newer build: that one's text holds this one's changes too.
          if (current.abort.signal.aborted && this.next && !this.stopped) {
            this.next.waiters.push(...next.waiters);
            return;
          }
          const failure = new MapWriteError(error);
          for (const waiter of next.waiters) waiter.reject(failure);
        },
      )
      .finally(() => {
        this.current = undefined;
        this.running = undefined;
        clearTimeout(this.supersede);
        this.supersede = undefined;
        this.start();
        this.watchCurrent();
      });
    this.log.debug(`map: building the database (${next.waiters.length} change(s))`);
  }
}

/** A job replaced by a newer one before it was built: only its private directory is left. */
async function discard(job: DatabaseJob): Promise<void> {
  await rm(job.temp, { recursive: true, force: true }).catch(() => undefined);
}
