/** The whole text of a relay map, from spool entries. Pure: no I/O. */
import { type CanonicalIp, canonicalIp } from "../address/ip.js";
import { addressOrderKey } from "../spool/order.js";
import type { SpoolEntry } from "../spool/types.js";
import type { ResolvedMap } from "./resolve.js";
import { compileTemplate } from "./template.js";

export class MapEntryError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "MapEntryError";
  }
}

/**
 * Checks each entry's address again and returns them canonical, sorted as compareIps orders
 * them (numerically, IPv4 first) and without duplicates. A spool file could have been planted or
 * corrupted, and an address is the only thing copied into a map line, so anything but a
 * canonical address throws.
 */
export function mapAddresses(entries: readonly SpoolEntry[]): CanonicalIp[] {
  let keyed: { ip: CanonicalIp; key: string }[] = [];
  let ordered = true;
  let last = "";
  for (const entry of entries) {
    const known = checked(entry.ip);
    if (known.key <= last) ordered = false;
    last = known.key;
    keyed.push(known);
  }
  // The spool lists its entries in this order already; others get sorted here. compareIps
  // parses both addresses on every comparison (3 s for 100,000 shuffled entries): keys computed
  // once give the same order.
  if (!ordered) {
    keyed = [...new Map(keyed.map((k) => [k.ip.address, k])).values()];
    keyed.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }
  return keyed.map(({ ip }) => ip);
}

/** Addresses already checked, with their sort keys: a daemon renders the same ones again. */
const checkedAddresses = new Map<string, { ip: CanonicalIp; key: string }>();
const CHECKED_LIMIT = 1_000_000;

function checked(address: string): { ip: CanonicalIp; key: string } {
  const known = checkedAddresses.get(address);
  if (known) return known;
  const ip = canonicalIp(address);
  if (ip.address !== address) {
    throw new MapEntryError(
      `spool entry ${JSON.stringify(address)} is not in canonical form (${ip.address})`,
    );
  }
  const result = { ip, key: sortKey(ip) };
  if (checkedAddresses.size >= CHECKED_LIMIT) checkedAddresses.clear();
  checkedAddresses.set(address, result);
  return result;
}

export interface RefusedAddress {
  ip: CanonicalIp;
  /** Which other addresses a line for it would open, in the MTA's own matching. */
  reason: string;
}

/**
 * Splits checked addresses into those the MTA can grant exactly and those it cannot (keys.ts):
 * a line for one of these would let other addresses relay too, so it is left out.
 */
export function exactAddresses(
  addresses: readonly CanonicalIp[],
  resolved: Pick<ResolvedMap, "exactness">,
): { exact: CanonicalIp[]; refused: RefusedAddress[] } {
  const exact: CanonicalIp[] = [];
  const refused: RefusedAddress[] = [];
  for (const ip of addresses) {
    const reason = resolved.exactness(ip);
    if (reason === undefined) exact.push(ip);
    else refused.push({ ip, reason });
  }
  return { exact, refused };
}

/**
 * Family digit, then the address in fixed-width hex, so that plain string order is compareIps'
 * order (the spool sorts by the same key).
 */
export function sortKey(ip: CanonicalIp): string {
  return addressOrderKey(ip.address);
}

/**
 * Header comment, one line per address, then the site's static lines: they come last because
 * tcprules takes the first matching rule, so a final `:allow` must not shadow the addresses.
 * Only the address reaches a line, never the user name: log text is attacker-controlled.
 */
export function renderMap(
  entries: readonly SpoolEntry[],
  resolved: ResolvedMap,
  staticText: string,
): string {
  return renderAddresses(
    exactAddresses(mapAddresses(entries), resolved).exact,
    resolved,
    staticText,
  );
}

/**
 * renderMap for addresses that mapAddresses already checked and sorted. Addresses the MTA
 * cannot grant exactly are never written, whoever calls this (see exactAddresses).
 */
export function renderAddresses(
  addresses: readonly CanonicalIp[],
  resolved: ResolvedMap,
  staticText: string,
): string {
  const line = compileTemplate(resolved.format, { m: resolved.mta, r: resolved.file });
  const lines: string[] = resolved.header === null ? [] : [resolved.header];
  for (const ip of addresses) {
    if (ip.family === 6 && !resolved.ipv6) continue;
    if (resolved.exactness(ip) !== undefined) continue;
    lines.push(line({ i: resolved.key(ip) }));
  }
  lines.push("");
  let text = lines.join("\n");
  if (staticText !== "") text += staticText.endsWith("\n") ? staticText : `${staticText}\n`;
  return text;
}
