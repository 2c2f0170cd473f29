/** The whole text of a relay map, from spool entries. Pure: no I/O. */
import { type CanonicalIp, canonicalIp, ipv4Number } from "../address/ip.js";
import { addressOrderKey, compareAddressOrder } from "../spool/order.js";
import type { SpoolEntry } from "../spool/types.js";
import { exact } from "./keys.js";
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
  return checkedAddressList(entries).map(asCanonical);
}

/**
 * mapAddresses as the addresses' strings: the entries' own when they come in order (the spool
 * lists them so), so that a map write keeps nothing per address and copies no address. Nothing
 * is remembered between calls either: a daemon with 100,000 entries kept an object, a parsed
 * address and a sort key for each, for its life (18 MB).
 *
 * `previous`, what an earlier call returned: an address found there was checked then (the
 * check depends on the string alone), and two addresses next to each other there are in order;
 * only the others are looked at. A grant in a map of 100,000 addresses checked them all again,
 * 30 ms of the grant.
 */
export function checkedAddressList(
  entries: readonly SpoolEntry[],
  /** Filled and returned (when the entries are in order) instead of a new array. */
  into?: string[],
  previous: readonly string[] = [],
): string[] {
  // Its full length at once: an array grown by push leaves its smaller copies behind, in the
  // large-object space at this size.
  const addresses = into ?? new Array<string>(entries.length);
  addresses.length = entries.length;
  let ordered = true;
  let last: string | undefined;
  // previous[seen] is the next address of `previous` not yet passed; lastSeen: `last` is
  // previous[seen - 1].
  let seen = 0;
  let lastSeen = false;
  for (let n = 0; n < entries.length; n++) {
    const address = (entries[n] as SpoolEntry).ip;
    let known = previous[seen] === address;
    if (!known) {
      assertCanonical(address);
      // Past the previous addresses that sort before this one (left out this time).
      while (seen < previous.length && compareAddressOrder(previous[seen] as string, address) < 0)
        seen++;
      known = previous[seen] === address;
    }
    if (last !== undefined && !(known && lastSeen) && compareAddressOrder(last, address) >= 0)
      ordered = false;
    if (known) seen++;
    lastSeen = known;
    last = address;
    addresses[n] = address;
  }
  if (ordered) return addresses;
  // Others get sorted here, by keys computed once per address (compareIps parses both
  // addresses on every comparison: 3 s for 100,000 shuffled entries).
  const keyed = [...new Set(addresses)].map((address) => ({
    address,
    key: addressOrderKey(address),
  }));
  keyed.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  return keyed.map(({ address }) => address);
}

/** Throws a MapEntryError unless `address` is a canonical address a client can have. */
function assertCanonical(address: string): void {
  // A canonical dotted quad that a client can have needs no parsing beyond its number.
  if (clientIpv4(ipv4Number(address))) return;
  const ip = canonicalIp(address);
  if (ip.address !== address) {
    throw new MapEntryError(
      `spool entry ${JSON.stringify(address)} is not in canonical form (${ip.address})`,
    );
  }
}

/**
 * Whether a dotted quad's number (ipv4Number; -1: not a canonical dotted quad) is an address a
 * client can have: what canonicalIp accepts without a NonClientIpError (see ipv4Problem there).
 */
function clientIpv4(n: number): boolean {
  const first = n >>> 24;
  return n !== -1 && first !== 0 && first < 224;
}

/** A canonical address (checkedAddressList's) as a CanonicalIp. */
function asCanonical(address: string): CanonicalIp {
  return { address, family: address.includes(":") ? 6 : 4 };
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

/** exactAddresses over checkedAddressList's strings; `exact` is the same array when none is refused. */
export function exactAddressList(
  addresses: readonly string[],
  resolved: Pick<ResolvedMap, "exactness">,
): { exact: readonly string[]; refused: RefusedAddress[] } {
  const refused: RefusedAddress[] = [];
  // Most MTAs match addresses exactly whatever they are (see keys.ts): nothing to look at.
  if (resolved.exactness === exact) return { exact: addresses, refused };
  for (const address of addresses) {
    const ip = asCanonical(address);
    const reason = resolved.exactness(ip);
    if (reason !== undefined) refused.push({ ip, reason });
  }
  if (refused.length === 0) return { exact: addresses, refused };
  const left = new Set(refused.map(({ ip }) => ip.address));
  return { exact: addresses.filter((address) => !left.has(address)), refused };
}

/**
 * Header comment, the site's head lines (map.head), one line per address, then the site's
 * static lines: they come last because tcprules takes the first matching rule, so a final
 * `:allow` must not shadow the addresses. An address line whose key (its first word) a site
 * line has already is left out: the site's own line decides for that address, and the map has
 * no duplicate key (makemap refuses one with exit 65; postmap keeps the first and warns).
 * Only the address reaches a line, never the user name: log text is attacker-controlled.
 */
export function renderMap(
  entries: readonly SpoolEntry[],
  resolved: ResolvedMap,
  staticText: string,
  headText = "",
): string {
  return renderAddresses(
    exactAddresses(mapAddresses(entries), resolved).exact,
    resolved,
    staticText,
    headText,
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
  headText = "",
): string {
  return renderAddressBytes(
    addresses.map((ip) => ip.address),
    resolved,
    staticText,
    headText,
  ).toString("utf8");
}

/**
 * renderAddresses for checkedAddressList's addresses, as the UTF-8 bytes of the map: each line
 * is written into one buffer as it is made. The map of 100,000 addresses is made again on every
 * grant; as a string it was 100,000 line strings and their array, alive until joined, which
 * the young generation copied and then promoted, and the old one kept until its next full
 * collection.
 */
export function renderAddressBytes(
  addresses: readonly string[],
  resolved: ResolvedMap,
  staticText: string,
  headText = "",
  /** Written into (emptied first): the bytes returned are its, until it is written again. */
  out = new ByteWriter(),
  /** When given: where each address's line starts (its length + 1: then the lines' end). */
  starts?: Uint32Array,
): Buffer {
  const layout = mapLayout(resolved, staticText, headText);
  layout.head(out);
  let lines = 0;
  for (let n = 0; n < addresses.length; n++) {
    if (starts) starts[n] = out.size;
    const text = layout.line(addresses[n] as string);
    if (text === undefined) continue;
    // Room for them all, from the first line's length (IPv4 addresses differ by 8 at most).
    if (lines++ === 0)
      out.reserve((addresses.length + 1) * (text.length + 9) + staticText.length * 3);
    out.line(text);
  }
  if (starts) starts[addresses.length] = out.size;
  layout.tail(out);
  return out.bytes();
}

/** How a map is laid out around its address lines; the same for the same settings and files. */
export interface MapLayout {
  /** Empties `out` and writes what comes before the address lines. */
  head(out: ByteWriter): void;
  /** An address's line, or undefined when it has none (see renderMap). */
  line(address: string): string | undefined;
  /** Writes what comes after the address lines. */
  tail(out: ByteWriter): void;
}

export function mapLayout(resolved: ResolvedMap, staticText: string, headText: string): MapLayout {
  const template = compileTemplate(resolved.format, { m: resolved.mta, r: resolved.file });
  const taken = siteKeys(`${headText}\n${staticText}`);
  return {
    head(out) {
      out.clear();
      if (resolved.header !== null) out.line(resolved.header);
      if (headText !== "") out.line(headText.replace(/\n$/, ""));
    },
    line(address) {
      const ip = asCanonical(address);
      if (ip.family === 6 && !resolved.ipv6) return undefined;
      if (resolved.exactness(ip) !== undefined) return undefined;
      const text = template({ i: resolved.key(ip) });
      return taken.size > 0 && taken.has(firstWord(text)) ? undefined : text;
    },
    tail(out) {
      if (staticText !== "") out.text(staticText.endsWith("\n") ? staticText : `${staticText}\n`);
    },
  };
}

/** UTF-8 text appended to one buffer, which grows when it must. */
export class ByteWriter {
  private buffer = Buffer.allocUnsafe(4096);
  private length = 0;

  clear(): void {
    this.length = 0;
  }

  /** Makes room for at least `bytes` more. */
  reserve(bytes: number): void {
    if (this.length + bytes <= this.buffer.length) return;
    const bigger = Buffer.allocUnsafe(Math.max(this.length + bytes, this.buffer.length * 2));
    this.buffer.copy(bigger, 0, 0, this.length);
    this.buffer = bigger;
  }

  text(text: string): void {
    // At most 3 bytes per UTF-16 unit.
    this.reserve(text.length * 3);
    this.length += this.buffer.write(text, this.length, "utf8");
  }

  line(text: string): void {
    this.text(text);
    this.reserve(1);
    this.buffer[this.length++] = 0x0a;
  }

  /** Appends `source[from, to)`. */
  copy(source: Uint8Array, from: number, to: number): void {
    this.reserve(to - from);
    this.buffer.set(source.subarray(from, to), this.length);
    this.length += to - from;
  }

  get size(): number {
    return this.length;
  }

  bytes(): Buffer {
    return this.buffer.subarray(0, this.length);
  }

  /** Makes room for `bytes` in all (what is held is dropped), and returns that room. */
  room(bytes: number): Buffer {
    this.length = 0;
    this.reserve(bytes);
    return this.buffer;
  }
}

/** The keys of the site's lines, as the MTAs fold them (makemap and postmap: lower case). */
function siteKeys(text: string): Set<string> {
  const keys = new Set<string>();
  for (const line of text.split("\n")) {
    const word = firstWord(line);
    if (word !== "" && !word.startsWith("#")) keys.add(word);
  }
  return keys;
}

function firstWord(line: string): string {
  return (/^\s*(\S*)/.exec(line)?.[1] ?? "").toLowerCase();
}
