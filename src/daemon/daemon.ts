import { mkdir } from "node:fs/promises";
import { hostname } from "node:os";
import { setTimeout as sleep } from "node:timers/promises";
import { ConfigError, loadConfig } from "../config/load.js";
import type { Logger } from "../log.js";
import { parseListen } from "../policy/listen.js";
import { liveLookup } from "../policy/lookup.js";
import { PolicyServer } from "../policy/server.js";
import type { LogEntry } from "../readers/types.js";
import { MapWriteError, type RelayChange } from "../relay-state.js";
import { EarlyEnds, planSessions, type SessionEvent, sessionKey } from "../spool/sessions.js";
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
  /** Set while the reader's grants cannot be made durable; cleared by the next good write. */
  spoolError?: string;
  /** Set while a reload failed and the previous configuration is still in use. */
  reloadError?: string;
}

// After a failed map write, retry this often until one succeeds.
const MAP_RETRY_MS = 10_000;
// A grant that cannot be made durable is retried after this long, doubling up to the maximum.
const GRANT_RETRY_FIRST_MS = 250;
const GRANT_RETRY_MAX_MS = 10_000;
/**
 * One spool write that has not settled for this long is hung (a dead NFS server, a stuck disk):
 * the watchdog pings stop, so that systemd restarts the daemon. A write that fails fast is not
 * hung: it is retried in place, since a restart would not free the disk, and Restart= with
 * StartLimitBurst= would soon turn a full disk into a unit that stays down.
 */
const HUNG_WRITE_MS = 120_000;
/** A live line's stamp this far before the time it was read is wrong (see consume). */
const STAMP_DRIFT_MS = 5 * 60_000;
const DRIFT_WARN_EVERY_MS = 10 * 60_000;
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
  private live: readonly SpoolEntry[] = [];
  private policy: { listen: string; server: PolicyServer } | undefined;
  private unwatch: (() => void) | undefined;
  /** A refresh after a change elsewhere is running; `again`: another change came meanwhile. */
  private refreshing: { again: boolean } | undefined;
  // Start, reload and stop run one at a time, in the order they were asked for.
  private lifecycle: Promise<unknown> = Promise.resolve();
  /** Ends the grant retries of the running reader's sink, so that it can stop. */
  private sinkAbort = new AbortController();
  /** When the spool write under way began (performance.now()); undefined when none is. */
  private writeStarted: number | undefined;
  private watchdogHeld = false;
  /** Live login lines with old stamps since the last warning, and when the next may be given. */
  private readonly drift = { count: 0, next: 0 };
  /** Session ends read before their login line (Dovecot's dropped connections). */
  private readonly earlyEnds = new EarlyEnds();
  /**
   * Set as soon as a stop is asked for: no retry is scheduled, no READY sent, and a change still
   * under way (a refresh after a spool event) arms no expiry timer, which would keep the process
   * alive for minutes.
   */
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
      const components = await buildComponents(loaded, this.options.log, this.options.configDir);
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
        next = await buildComponents(loaded, log, this.options.configDir);
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
      await this.stopReader(previous);
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
      // No command starts from here, not even for the batch the reader finishes: its logins
      // are durable in the spool, and the next start writes their map. A database build under
      // way may finish, so the database matches the text when we exit; a hung one is killed.
      const commands = this.current?.relay.stop(STOP_WAIT_MS);
      await this.stopReader(this.current);
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
    if (c.spoolError) parts.push(`DEGRADED: logins not yet granted, retrying: ${c.spoolError}`);
    if (c.mapError) parts.push(`DEGRADED: map not written: ${c.mapError}`);
    if (c.reloadError) parts.push(`reload failed: ${c.reloadError}`);
    return parts.join("; ");
  }

  private serial<T>(step: () => Promise<T>): Promise<T> {
    const result = this.lifecycle.then(step);
    this.lifecycle = result.catch(() => undefined);
    return result;
  }

  /**
   * Stops a reader whose sink may be retrying a grant: the reader is told first (so that it
   * takes the end of the retries as a stop, not a failure), then the retries end. The failed
   * batch stays unacknowledged: the next start reads it again.
   */
  private async stopReader(components: Components | undefined): Promise<void> {
    if (!components) return;
    const stopped = components.reader.stop();
    this.sinkAbort.abort();
    await stopped;
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
    const abort = new AbortController();
    this.sinkAbort = abort;
    await next.reader.start(
      (entries, live) => this.consume(next, entries, live, abort.signal),
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
    if (this.stopping) return;
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
  private async consume(
    components: Components,
    entries: LogEntry[],
    live: boolean,
    abort: AbortSignal,
  ): Promise<boolean> {
    const { log } = this.options;
    const match = components.match;
    if (!match) return false;
    const now = new Date();
    const { period, session_max } = components.config.relay;
    // A session never shortens relay: its bound is at least one period.
    const settings = { periodMs: period * 1000, maxMs: Math.max(session_max, period) * 1000 };
    // Sessions are told apart by host, instance and agent: one server's end line or restart
    // never touches another's sessions, on this host or (through Redis) another.
    const rules = components.profile?.session;
    const key = (id: string) =>
      sessionKey(`${hostname()}/${components.name}`, components.profile?.name ?? "", id);
    const grants: SpoolEntry[] = [];
    /** The grants whose login opened a session, which holds relay while it is open. */
    const held = new Set<SpoolEntry>();
    const events: SessionEvent[] = [];
    // An end may be logged before its login (server-made ids only: a pid is reused).
    const add = (event: SessionEvent) =>
      events.push(...(rules?.id === "pid" ? [event] : this.earlyEnds.order(event)));
    const expired: { ip: string; time: number }[] = [];
    for (const entry of entries) {
      this.counts.lines++;
      const verdict = match(entry, now);
      if (!verdict.accepted) {
        this.counts.rejected[verdict.reason] = (this.counts.rejected[verdict.reason] ?? 0) + 1;
        if (SUSPICIOUS.has(verdict.reason))
          log.warning(`refused a login line (${verdict.reason}): ${verdict.detail ?? ""}`);
        const end = verdict.end;
        if (rules && end) {
          add(
            end.key === undefined
              ? { kind: "restart", prefix: key(""), time: end.time }
              : { kind: "end", id: key(end.key), ip: end.ip, user: end.user, time: end.time },
          );
        }
        continue;
      }
      const { login } = verdict;
      if (login.timeWarning) log.warning(`${login.ip}: ${login.timeWarning}`);
      // Read as it was written, a line cannot be old: a stamp that says so is read in another
      // time zone than the log was written in (or a clock is wrong). The read time counts.
      if (live && now.getTime() - login.time > STAMP_DRIFT_MS) {
        this.stampDrift(login.ip, login.time, now);
        login.time = now.getTime();
      }
      const expires = login.time + settings.periodMs;
      const session = rules && login.session !== undefined ? login.session : undefined;
      // Replayed after a stop: a login whose relay has passed grants nothing.
      const lasts = session === undefined ? expires : login.time + settings.maxMs;
      if (lasts <= now.getTime()) {
        expired.push(login);
        continue;
      }
      const grant = {
        ip: login.ip,
        user: login.user,
        agent: login.agent,
        login: login.time,
        expires,
      };
      grants.push(grant);
      if (session !== undefined) held.add(grant);
      if (rules)
        add({
          kind: "login",
          entry: grant,
          ...(session === undefined ? {} : { session: { id: key(session), user: login.user } }),
        });
      this.counts.logins++;
      this.counts.last = { user: login.user, ip: login.ip, time: login.time };
    }
    const last = expired.at(-1);
    if (last)
      log.info(
        `not granted: ${expired.length} login(s) read after their relay period had passed (the last: ${last.ip} at ${new Date(last.time).toISOString()})`,
      );
    for (const g of grants)
      log.info(
        `relay for ${g.ip} (${JSON.stringify(g.user)}) until ${new Date(g.expires).toISOString()}${held.has(g) ? ", or while its session is open" : ""}`,
      );
    if (rules) {
      if (events.length === 0) return false;
      await this.grantDurably(
        () => components.relay.track((current) => planSessions(current, events, settings)),
        events.length,
        abort,
      );
      return true;
    }
    if (grants.length === 0) return false;
    await this.grantDurably(() => components.relay.grant(grants), grants.length, abort);
    return true;
  }

  /** Warns of a live line's old stamp: the first at once, then at most one line a while. */
  private stampDrift(ip: string, time: number, now: Date): void {
    const drift = this.drift;
    drift.count++;
    if (now.getTime() < drift.next) return;
    const minutes = Math.round((now.getTime() - time) / 60_000);
    const others = drift.count > 1 ? ` (${drift.count - 1} more since the last warning)` : "";
    this.options.log.warning(
      `${ip}: the login line read at ${now.toISOString()} says ${new Date(time).toISOString()}, ${minutes} min earlier; granting from the time it was read${others}. Is the log written in another time zone than poprelay runs in (TZ)?`,
    );
    drift.count = 0;
    drift.next = now.getTime() + DRIFT_WARN_EVERY_MS;
  }

  /**
   * Writes grants to the spool, retrying with backoff until it succeeds: the reader waits (its
   * position stays before these lines), STATUS and the log say DEGRADED, and once the fault
   * clears (space freed, the file system writable again) the grants are made, with everything
   * read meanwhile in the next batch. Rejects only when the reader is being stopped.
   */
  private async grantDurably(
    operation: () => Promise<RelayChange<unknown>>,
    count: number,
    abort: AbortSignal,
  ): Promise<void> {
    const { log } = this.options;
    let wait = GRANT_RETRY_FIRST_MS;
    for (;;) {
      this.writeStarted = performance.now();
      try {
        await this.change(operation);
        this.writeStarted = undefined;
        if (this.counts.spoolError !== undefined) {
          log.notice(
            `the spool is written again: ${count} login(s) held back by the fault are granted`,
          );
          this.counts.spoolError = undefined;
          this.publishStatus();
        }
        return;
      } catch (error) {
        this.writeStarted = undefined;
        const text = (error as Error).message ?? String(error);
        if (text !== this.counts.spoolError)
          log.error(
            `DEGRADED: cannot write ${count} login(s) to the spool: ${text}; retrying until it works, the reader waits and skips nothing`,
          );
        this.counts.spoolError = text;
        this.publishStatus();
      }
      try {
        await sleep(wait, undefined, { signal: abort });
      } catch {
        throw new Error("stopping: the grants not written stay unacknowledged");
      }
      wait = Math.min(wait * 2, GRANT_RETRY_MAX_MS);
    }
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
      if (!this.stopping) this.expiry.schedule(error.state.nextExpiry);
    }
    if (error.message !== this.counts.mapError)
      this.options.log.error(
        `DEGRADED: the map is not written: ${error.message}; the spool has every grant, the map is written again on the next change or in ${MAP_RETRY_MS / 1000} s`,
      );
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
    if (!this.stopping) this.expiry.schedule(change.nextExpiry);
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
    this.watchdog = setInterval(() => this.pingWatchdog(), usec / 2000);
  }

  /** WATCHDOG=1, unless a spool write hangs: then systemd is left to restart the daemon. */
  private pingWatchdog(): void {
    const started = this.writeStarted;
    const hung = started !== undefined && performance.now() - started > HUNG_WRITE_MS;
    if (hung !== this.watchdogHeld) {
      this.watchdogHeld = hung;
      if (hung)
        this.options.log.error(
          `a spool write has not finished for ${HUNG_WRITE_MS / 1000} s: no more watchdog pings, so that systemd restarts poprelay`,
        );
      else this.options.log.notice("the hung spool write finished: watchdog pings again");
    }
    if (!hung) this.options.notifier.send({ WATCHDOG: "1" });
  }
}
