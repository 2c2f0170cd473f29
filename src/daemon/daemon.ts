import { mkdir } from "node:fs/promises";
import { ConfigError, loadConfig } from "../config/load.js";
import type { Logger } from "../log.js";
import { parseListen } from "../policy/listen.js";
import { liveLookup } from "../policy/lookup.js";
import { PolicyServer } from "../policy/server.js";
import type { LogEntry } from "../readers/types.js";
import { MapWriteError, type RelayChange } from "../relay-state.js";
import type { SpoolEntry } from "../spool/types.js";
import { buildComponents, type Components } from "./components.js";
import { monotonicUsec, type Notifier } from "./notify.js";
import { ExpiryTimer } from "./timers.js";

export interface DaemonOptions {
  configDir: string;
  instance: string;
  log: Logger;
  notifier: Notifier;
}

interface Counts {
  lines: number;
  logins: number;
  rejected: Record<string, number>;
  last?: { user: string; ip: string; time: number };
  /** Set while the map could not be written; cleared by the next good write. */
  mapError?: string;
  /** Set while a reload failed and the previous configuration is still in use. */
  reloadError?: string;
}

// After a failed map write, retry this often until one succeeds.
const MAP_RETRY_MS = 10_000;
// READY and the stop wait this long at most for a database or restart command, then go on
// (READY) or kill it (stop): a hung command never holds up systemd.
const START_WAIT_MS = 5_000;
const STOP_WAIT_MS = 3_000;
// Rejections worth a warning: someone is trying something.
const SUSPICIOUS = new Set(["spoof", "ambiguous"]);

/**
 * `poprelay run`: wires reader → matcher → spool → map for one configuration, keeps expiry on
 * time, and answers systemd (READY, RELOADING, STATUS, WATCHDOG). Every grant is durable in the
 * spool before the reader may persist its position past the line that caused it.
 */
export class Daemon {
  private current: Components | undefined;
  private readonly counts: Counts = { lines: 0, logins: 0, rejected: {} };
  private readonly expiry: ExpiryTimer;
  private mapRetry: NodeJS.Timeout | undefined;
  private watchdog: NodeJS.Timeout | undefined;
  private statusTimer: NodeJS.Timeout | undefined;
  private lastStatus = "";
  /** The map's entries as of the last change, in address order: the policy service's answers. */
  private live: SpoolEntry[] = [];
  private policy: { listen: string; server: PolicyServer } | undefined;
  private unwatch: (() => void) | undefined;
  /** A refresh after a change elsewhere is running; `again`: another change came meanwhile. */
  private refreshing: { again: boolean } | undefined;
  // Start, reload and stop run one at a time, in the order they were asked for.
  private lifecycle: Promise<unknown> = Promise.resolve();
  /** Set as soon as a stop is asked for: no retry is scheduled, and no READY sent, after it. */
  private stopping = false;

  constructor(private readonly options: DaemonOptions) {
    this.expiry = new ExpiryTimer(
      () => this.expire(),
      (error) => this.options.log.error(`expiring entries failed: ${error.message}`),
    );
  }

  start(): Promise<void> {
    return this.serial(async () => {
      const loaded = await loadConfig(this.options.configDir, this.options.instance);
      const components = await buildComponents(loaded, this.options.log);
      try {
        await this.listenForPolicy(components);
        await this.bring(components);
      } catch (error) {
        await this.policy?.server.stop();
        await components.store.close();
        throw error;
      }
      if (this.stopping) return;
      this.startWatchdog();
      this.options.notifier.send({ READY: "1", STATUS: this.status() });
    });
  }

  /** SIGHUP: a bad configuration leaves the running one in place, and says so. */
  reload(): Promise<void> {
    return this.serial(async () => {
      const { log, notifier } = this.options;
      notifier.send({
        RELOADING: "1",
        MONOTONIC_USEC: monotonicUsec(),
        STATUS: "reloading the configuration",
      });
      let next: Components;
      try {
        const loaded = await loadConfig(this.options.configDir, this.options.instance);
        next = await buildComponents(loaded, log);
        try {
          await this.listenForPolicy(next);
        } catch (error) {
          await next.store.close();
          throw error;
        }
      } catch (error) {
        const reason =
          error instanceof ConfigError ? error.problems.join("; ") : (error as Error).message;
        this.counts.reloadError = reason;
        log.error(`reload failed, still running on the previous configuration: ${reason}`);
        notifier.send({ READY: "1", STATUS: this.status() });
        return;
      }
      const previous = this.current;
      await previous?.reader.stop();
      // The new configuration writes the whole map again: a command still running is not waited for.
      await previous?.relay.stop(STOP_WAIT_MS);
      this.counts.reloadError = undefined;
      // Closed first: it leaves the state it knew for the new store, should Redis not answer.
      await previous?.store.close();
      try {
        await this.bring(next);
      } catch (error) {
        // Halfway: the old reader is stopped and the new one did not start. Nothing reads the
        // log any more; the caller stops the daemon so that systemd starts it afresh.
        await next.store.close();
        notifier.send({ READY: "1", STATUS: `reload failed halfway: ${(error as Error).message}` });
        throw error;
      }
      log.notice(`reloaded the configuration from ${this.options.configDir}`);
      notifier.send({ READY: "1", STATUS: this.status() });
    });
  }

  /** SIGTERM: finish the batch in flight, persist the reader's position, stop the timers. */
  stop(): Promise<void> {
    // Also before READY: the start under way finishes first (serial), then this stop.
    this.stopping = true;
    clearTimeout(this.mapRetry);
    return this.serial(async () => {
      this.options.notifier.send({ STOPPING: "1", STATUS: "stopping" });
      clearTimeout(this.mapRetry);
      // No command starts from here, not even for the batch the reader finishes: its logins
      // are durable in the spool, and the next start writes their map. A database build under
      // way may finish, so the database matches the text when we exit; a hung one is killed.
      const commands = this.current?.relay.stop(STOP_WAIT_MS);
      await this.current?.reader.stop();
      await commands;
      this.unwatch?.();
      if (this.policy) {
        const p = this.policy.server.stats();
        this.options.log.info(
          `policy service: ${p.requests} requests answered, ${p.ok} OK, ${p.dunno} DUNNO, ${p.errors} refused`,
        );
        await this.policy.server.stop();
      }
      await this.current?.store.close();
      this.expiry.cancel();
      for (const timer of [this.mapRetry, this.watchdog, this.statusTimer]) clearTimeout(timer);
      this.current = undefined;
    });
  }

  /** One line with live counts, for STATUS= and the log. */
  status(): string {
    const c = this.counts;
    const parts = [
      `${this.live.length} ${this.live.length === 1 ? "relay" : "relays"} active`,
      `${c.logins} logins seen`,
    ];
    if (c.last)
      parts.push(`last ${c.last.user} from ${c.last.ip} at ${new Date(c.last.time).toISOString()}`);
    if (this.current) {
      parts.push(this.current.reader.status());
      const store = this.current.store.status();
      if (store) parts.push(store);
    }
    // Its counts change with every request: STATUS would follow them every second.
    if (this.policy) parts.push(`policy service on ${this.policy.listen}`);
    if (c.mapError) parts.push(`DEGRADED: map not written: ${c.mapError}`);
    if (c.reloadError) parts.push(`reload failed: ${c.reloadError}`);
    return parts.join("; ");
  }

  private serial<T>(step: () => Promise<T>): Promise<T> {
    const result = this.lifecycle.then(step);
    this.lifecycle = result.catch(() => undefined);
    return result;
  }

  /** Makes `next` current: the map reflects the spool, then its reader starts. */
  private async bring(next: Components): Promise<void> {
    const { config } = next;
    await mkdir(config.state.directory, { recursive: true, mode: 0o750 });
    // Shared state: wait (spool.redis.timeout at most) to know it, else start degraded.
    await next.store.opened();
    this.unwatch?.();
    this.current = next;
    next.relay.onDurable((live) => {
      if (this.current === next) this.live = live;
    });
    // READY=1 follows: the map and its database are both in place by then, or the database
    // command has had START_WAIT_MS and goes on in the background.
    await this.change(() => next.relay.expire(), START_WAIT_MS);
    this.unwatch = next.store.watch(() => this.refresh());
    // The store may have learnt its state between opened() and the watch (Redis answering late).
    this.refresh();
    const map = config.map.mta === "none" ? "no map" : `${config.map.mta} map ${config.map.file}`;
    this.options.log.notice(
      `${next.name}: agent ${next.profile?.name ?? "none"}, ${next.source} input, ${config.spool.backend} spool, ${map}, relay period ${config.relay.period} s`,
    );
    // Readers change state on their own (journalctl restarting, a file rotated): STATUS follows.
    await next.reader.start(
      (entries) => this.consume(next, entries),
      () => this.publishStatus(),
    );
  }

  /**
   * policy.listen as the configuration `next` says: the running server is kept when the address
   * is the same (Postfix's connections stay), replaced when it changed, stopped when unset.
   */
  private async listenForPolicy(next: Components): Promise<void> {
    const listen = next.config.policy.listen;
    if (this.policy?.listen === listen) return;
    const previous = this.policy;
    if (listen !== "") {
      const server = new PolicyServer({
        listen: parseListen(listen),
        lookup: liveLookup(() => this.live),
        log: this.options.log,
      });
      await server.start();
      this.policy = { listen, server };
    } else {
      this.policy = undefined;
    }
    await previous?.server.stop();
  }

  /** The spool changed elsewhere (another host, `poprelay add`): the map follows, coalesced. */
  private refresh(): void {
    if (this.refreshing) {
      this.refreshing.again = true;
      return;
    }
    const current = this.current;
    if (!current) return;
    const refreshing = { again: false };
    this.refreshing = refreshing;
    this.change(() => current.relay.refresh())
      .catch((error: Error) =>
        this.options.log.error(`following the spool failed: ${error.message}`),
      )
      .finally(() => {
        this.refreshing = undefined;
        if (refreshing.again) this.refresh();
      });
  }

  /** The reader's sink: one batch of entries, in log order. */
  private async consume(components: Components, entries: LogEntry[]): Promise<boolean> {
    const { log } = this.options;
    const match = components.match;
    if (!match) return false;
    const now = new Date();
    const period = components.config.relay.period * 1000;
    const grants: SpoolEntry[] = [];
    for (const entry of entries) {
      this.counts.lines++;
      const verdict = match(entry, now);
      if (!verdict.accepted) {
        this.counts.rejected[verdict.reason] = (this.counts.rejected[verdict.reason] ?? 0) + 1;
        if (SUSPICIOUS.has(verdict.reason))
          log.warning(`refused a login line (${verdict.reason}): ${verdict.detail ?? ""}`);
        continue;
      }
      const { login } = verdict;
      if (login.timeWarning) log.warning(`${login.ip}: ${login.timeWarning}`);
      const expires = login.time + period;
      // Replayed after a stop: a login whose period has passed grants nothing.
      if (expires <= now.getTime()) continue;
      grants.push({
        ip: login.ip,
        user: login.user,
        agent: login.agent,
        login: login.time,
        expires,
      });
      this.counts.logins++;
      this.counts.last = { user: login.user, ip: login.ip, time: login.time };
    }
    if (grants.length === 0) return false;
    for (const g of grants)
      log.info(
        `relay for ${g.ip} (${JSON.stringify(g.user)}) until ${new Date(g.expires).toISOString()}`,
      );
    await this.change(() => components.relay.grant(grants));
    return true;
  }

  private async expire(): Promise<void> {
    const current = this.current;
    if (current) await this.change(() => current.relay.expire());
  }

  /**
   * Runs a spool change. A failed map write leaves the spool change durable (the reader may
   * move on) and is retried until a write succeeds; any other failure propagates.
   */
  private async change<T>(
    operation: () => Promise<RelayChange<T>>,
    waitForDatabaseMs = 0,
  ): Promise<void> {
    try {
      const change = await operation();
      this.applied(change);
      // The database is rebuilt after the spool change and the text: a failure comes later.
      const database = change.database?.then(
        () => this.mapWritten(),
        (error: unknown) => this.mapFailed(error),
      );
      if (database && waitForDatabaseMs > 0) {
        let timer: NodeJS.Timeout | undefined;
        const late = new Promise<"late">((resolve) => {
          timer = setTimeout(() => resolve("late"), waitForDatabaseMs);
        });
        if ((await Promise.race([database, late])) === "late")
          this.options.log.warning(
            `map: the database command still runs after ${waitForDatabaseMs / 1000} s; going on without waiting for it`,
          );
        clearTimeout(timer);
      }
    } catch (error) {
      this.mapFailed(error);
    }
  }

  /** A failed map write leaves the spool change durable; it is retried until one succeeds. */
  private mapFailed(error: unknown): void {
    if (!(error instanceof MapWriteError)) throw error;
    // The spool holds the change: the policy service and the expiry timer follow it.
    if (error.state) {
      this.live = error.state.live;
      this.expiry.schedule(error.state.nextExpiry);
    }
    this.counts.mapError = error.message;
    this.publishStatus();
    clearTimeout(this.mapRetry);
    if (this.stopping) return;
    this.mapRetry = setTimeout(() => {
      const current = this.current;
      if (!current) return;
      this.change(() => current.relay.regenerate()).catch((e: Error) =>
        this.options.log.error(`writing the map failed: ${e.message}`),
      );
    }, MAP_RETRY_MS);
  }

  /** A whole map (text and database) is in place: a failure before it is over. */
  private mapWritten(): void {
    if (!this.counts.mapError) return;
    this.options.log.notice("the map is written again");
    this.counts.mapError = undefined;
    this.publishStatus();
  }

  private applied(change: RelayChange<unknown>): void {
    this.live = change.live;
    // With a database still to build, its outcome says whether the map is whole again.
    if (!change.database) this.mapWritten();
    this.expiry.schedule(change.nextExpiry);
    this.publishStatus();
  }

  /** STATUS at most once a second: a burst of logins is one update. */
  private publishStatus(): void {
    if (this.statusTimer) return;
    this.statusTimer = setTimeout(() => {
      this.statusTimer = undefined;
      const status = this.status();
      if (status === this.lastStatus) return;
      this.lastStatus = status;
      this.options.notifier.send({ STATUS: status });
    }, 1000);
    this.statusTimer.unref();
  }

  private startWatchdog(): void {
    const usec = Number(process.env.WATCHDOG_USEC);
    const pid = process.env.WATCHDOG_PID;
    if (!usec || (pid && Number(pid) !== process.pid) || this.watchdog) return;
    // Half the interval, as sd_watchdog_enabled(3) advises.
    this.watchdog = setInterval(() => this.options.notifier.send({ WATCHDOG: "1" }), usec / 2000);
  }
}
