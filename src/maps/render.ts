/** The whole text of a relay map, from spool entries. Pure: no I/O. */
import { type CanonicalIp, canonicalIp } from "../address/ip.js";
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
  const byAddress = new Map<string, CanonicalIp>();
  for (const entry of entries) {
    const ip = canonicalIp(entry.ip);
    if (ip.address !== entry.ip) {
      throw new MapEntryError(
        `spool entry ${JSON.stringify(entry.ip)} is not in canonical form (${ip.address})`,
      );
    }
    byAddress.set(ip.address, ip);
  }
  // compareIps parses both addresses on every comparison: 3 s for 100,000 shuffled entries.
  // Keys computed once give the same order.
  const keyed = [...byAddress.values()].map((ip) => ({ ip, key: sortKey(ip) }));
  keyed.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  return keyed.map(({ ip }) => ip);
}

/**
 * Family digit, then the address in fixed-width hex, so that plain string order is compareIps'
 * order. Written out rather than parsed again: the address is canonical, and this is per entry.
 */
export function sortKey(ip: CanonicalIp): string {
  if (ip.family === 4) {
    return `4${ip.address
      .split(".")
      .map((octet) => Number(octet).toString(16).padStart(2, "0"))
      .join("")}`;
  }
  const [head = "", tail] = ip.address.split("::");
  const groups = (text: string) => (text === "" ? [] : text.split(":"));
  const left = groups(head);
  const right = tail === undefined ? [] : groups(tail);
  const zeros = Array<string>(8 - left.length - right.length).fill("0");
  return `6${[...left, ...zeros, ...right].map((group) => group.padStart(4, "0")).join("")}`;
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
  return renderAddresses(mapAddresses(entries), resolved, staticText);
}

/** renderMap for addresses that mapAddresses already checked and sorted. */
export function renderAddresses(
  addresses: readonly CanonicalIp[],
  resolved: ResolvedMap,
  staticText: string,
): string {
  const lines = resolved.header === null ? [] : [resolved.header];
  const line = compileTemplate(resolved.format, { m: resolved.mta, r: resolved.file });
  for (const ip of addresses) {
    if (ip.family === 6 && !resolved.ipv6) continue;
    lines.push(line({ i: resolved.key(ip) }));
  }
  let text = lines.map((line) => `${line}\n`).join("");
  if (staticText !== "") text += staticText.endsWith("\n") ? staticText : `${staticText}\n`;
  return text;
}
