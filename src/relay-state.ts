import type { MapConfig } from "./config/types.js";
import type { Logger } from "./log.js";
import { type MapWriteResult, writeMap } from "./maps/write.js";
import type { SpoolEntry, SpoolStore } from "./spool/types.js";

export interface RelayChange<T> {
  /** What the spool operation returned. */
  result: T;
  map: MapWriteResult;
  /** Entries in the map now. */
  live: number;
  /** When the next live entry expires (ms since the epoch); undefined when none is live. */
  nextExpiry: number | undefined;
}

/** The spool change is durable, but the map could not be written (the old one stands). */
export class MapWriteError extends Error {
  constructor(cause: Error) {
    super(cause.message, { cause });
    this.name = "MapWriteError";
  }
}

/**
 * The spool and the map kept in step: every change to the spool is followed by a map write,
 * both under the spool's lock, so concurrent processes never publish a map that misses an entry
 * another one added. The map holds only entries that have not expired.
 */
export class RelayState {
  constructor(
    private readonly store: SpoolStore,
    private readonly map: MapConfig,
    private readonly log: Logger,
    private readonly clock: () => number = Date.now,
  ) {}

  /** Grants relay to these logins (seed: addRelayAddress). */
  grant(entries: readonly SpoolEntry[]): Promise<RelayChange<SpoolEntry[]>> {
    return this.change(() => this.store.put(entries));
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

  /** Writes the map from the spool even when its text is unchanged (seed: generateRelayFile). */
  regenerate(): Promise<RelayChange<undefined>> {
    return this.change(async () => undefined, true);
  }

  entries(): Promise<SpoolEntry[]> {
    return this.store.list();
  }

  private change<T>(operation: () => Promise<T>, force = false): Promise<RelayChange<T>> {
    return this.store.exclusive(async () => {
      const result = await operation();
      const now = this.clock();
      const live = (await this.store.list()).filter((e) => e.expires > now);
      let map: MapWriteResult;
      try {
        map = await writeMap(live, this.map, { force, log: this.log });
      } catch (error) {
        throw new MapWriteError(error as Error);
      }
      const nextExpiry = live.reduce<number | undefined>(
        (min, e) => (min === undefined || e.expires < min ? e.expires : min),
        undefined,
      );
      return { result, map, live: live.length, nextExpiry };
    });
  }
}
