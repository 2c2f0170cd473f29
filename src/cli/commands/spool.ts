/** The commands that change or show the spool, then write the map. */
import { canonicalIp, InvalidIpError } from "../../address/ip.js";
import { type LoadedConfig, loadConfig } from "../../config/load.js";
import { chooseMapType } from "../../maps/choose-type.js";
import { grantProblem } from "../../maps/settings.js";
import type { MapWriteResult } from "../../maps/write.js";
import { RelayState } from "../../relay-state.js";
import { openSpoolStore } from "../../spool/open.js";
import type { SpoolEntry } from "../../spool/types.js";
import type { CommandContext } from "../command.js";

interface Opened {
  loaded: LoadedConfig;
  relay: RelayState;
}

async function open(context: CommandContext): Promise<Opened> {
  const loaded = await loadConfig(context.configDir, context.instance);
  const { config } = loaded;
  const store = await openSpoolStore(config, context.log);
  context.cleanup.push(() => store.close());
  // The same choice as the daemon's, so both write the same table type.
  const { map } = await chooseMapType(config.map);
  return { loaded, relay: new RelayState(store, map, context.log) };
}

function mapSummary(map: MapWriteResult): string {
  return `map ${map.file}: ${map.entries} ${map.entries === 1 ? "entry" : "entries"}${map.changed ? "" : " (unchanged)"}`;
}

const time = (ms: number) => new Date(ms).toISOString().replace(/\.\d+Z$/, "Z");

function formatList(entries: readonly SpoolEntry[], now: number, json: boolean): string {
  if (json) {
    return entries
      .map(
        (e) =>
          `${JSON.stringify({
            ...e,
            login: time(e.login),
            expires: time(e.expires),
            expired: e.expires <= now,
            ...(e.until === undefined ? {} : { until: time(e.until) }),
            ...(e.sessions
              ? { sessions: e.sessions.map((s) => ({ ...s, since: time(s.since) })) }
              : {}),
          })}\n`,
      )
      .join("");
  }
  const rows = entries.map((e) => [
    e.ip,
    e.user,
    e.agent,
    time(e.login),
    e.expires <= now ? "expired" : time(e.expires),
    // Open sessions keep the address relaying until relay.period after their end.
    e.sessions && e.expires > now
      ? `${e.sessions.length} open, then ${time(e.until ?? e.expires)}`
      : "",
  ]);
  const head = ["ADDRESS", "USER", "AGENT", "LOGIN", "EXPIRES", "SESSIONS"];
  // The column only when some entry has open sessions: the table is otherwise as it was.
  const shown = rows.some((r) => r[5] !== "") ? head.length : head.length - 1;
  const table = [head, ...rows].map((r) => r.slice(0, shown));
  const widths = table[0]?.map((_, i) => Math.max(...table.map((r) => (r[i] ?? "").length))) ?? [];
  return table
    .map(
      (r) =>
        `${r
          .map((c, i) => c.padEnd(widths[i] ?? 0))
          .join("  ")
          .trimEnd()}\n`,
    )
    .join("");
}

/** `poprelay add IP [--user NAME]`. */
export async function add(context: CommandContext): Promise<number> {
  const client = canonicalIp(context.args[0] ?? "");
  const ip = client.address;
  const { loaded, relay } = await open(context);
  const problem = grantProblem(loaded.config.map, client);
  if (problem !== undefined)
    throw new InvalidIpError(ip, problem, `map.mta ${loaded.config.map.mta} cannot grant it`);
  const now = Date.now();
  const entry = {
    ip,
    user: context.options.user ?? "-",
    agent: "manual",
    login: now,
    expires: now + loaded.config.relay.period * 1000,
  };
  const { map } = await relay.grant([entry]);
  context.out(`${ip} may relay until ${time(entry.expires)}; ${mapSummary(map)}\n`);
  return 0;
}

/** `poprelay remove IP`. */
export async function remove(context: CommandContext): Promise<number> {
  const ip = canonicalIp(context.args[0] ?? "").address;
  const { relay } = await open(context);
  const { result, map } = await relay.revoke([ip]);
  context.out(
    `${ip} ${result.length > 0 ? "removed" : "was not in the spool"}; ${mapSummary(map)}\n`,
  );
  return 0;
}

/** `poprelay list [--json]`. */
export async function list(context: CommandContext): Promise<number> {
  const { relay } = await open(context);
  context.out(formatList(await relay.entries(), Date.now(), context.options.json === true));
  return 0;
}

/** `poprelay clean`: without --instance, for the base configuration and every instance. */
export async function clean(context: CommandContext): Promise<number> {
  const first = await open(context);
  // The timer runs without --instance: it covers the base configuration and every instance
  // named under instances:, once per distinct spool and map.
  const names = context.instance ? [context.instance] : ["", ...first.loaded.instances];
  const done = new Set<string>();
  for (const name of names) {
    const { loaded, relay } =
      name === context.instance ? first : await open({ ...context, instance: name });
    const key = `${loaded.config.spool.directory}\0${loaded.config.map.file}`;
    if (done.has(key)) continue;
    done.add(key);
    const { result, map } = await relay.expire();
    const label = names.length > 1 ? `${name || "(base)"}: ` : "";
    context.out(
      `${label}${result.length} expired ${result.length === 1 ? "entry" : "entries"} removed; ${mapSummary(map)}\n`,
    );
  }
  return 0;
}

/** `poprelay wipe`. */
export async function wipe(context: CommandContext): Promise<number> {
  const { relay } = await open(context);
  const { result, map } = await relay.wipe();
  context.out(`${result} ${result === 1 ? "entry" : "entries"} removed; ${mapSummary(map)}\n`);
  return 0;
}

/** `poprelay generate`. */
export async function generate(context: CommandContext): Promise<number> {
  const { relay } = await open(context);
  const { map } = await relay.regenerate();
  context.out(`${mapSummary(map)}\n`);
  return 0;
}
