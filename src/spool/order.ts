import { ipv4Number } from "../address/ip.js";
import type { CurrentEntries } from "./sessions.js";
import type { SpoolEntry } from "./types.js";

/**
 * compareIps' order (numeric, IPv4 first) as a string: family digit, then the address in
 * fixed-width hex. Computed once per entry: compareIps parses both addresses per comparison.
 */
export function addressOrderKey(ip: string): string {
  if (!ip.includes(":")) {
    let key = "4";
    for (const octet of ip.split(".")) key += Number(octet).toString(16).padStart(2, "0");
    return key;
  }
  const [head = "", tail] = ip.split("::");
  const groups = (text: string) => (text === "" ? [] : text.split(":"));
  const left = groups(head);
  const right = tail === undefined ? [] : groups(tail);
  const zeros = Array<string>(8 - left.length - right.length).fill("0");
  return `6${[...left, ...zeros, ...right].map((group) => group.padStart(4, "0")).join("")}`;
}

/**
 * Where `a` sorts against `b` in addressOrderKey's order, without a string: a dotted quad is read
 * as a number (most addresses); others (IPv6) compare by their keys. Nothing is remembered per
 * address: a daemon with 100,000 entries kept 100,000 keys and a map of them for its life.
 */
export function compareAddressOrder(a: string, b: string): number {
  return compareTo(a, ipv4Number(b), b);
}

/** compareAddressOrder(a, b) with b's number (ipv4Number) worked out once. */
function compareTo(a: string, bNumber: number, b: string): number {
  const aNumber = ipv4Number(a);
  if (aNumber !== -1 && bNumber !== -1) return aNumber - bNumber;
  const ka = addressOrderKey(a);
  const kb = addressOrderKey(b);
  return ka < kb ? -1 : ka > kb ? 1 : 0;
}

/** Entries in address order, as SpoolStore.list() returns them. */
export function sortEntries(entries: SpoolEntry[]): SpoolEntry[] {
  const keyed = entries.map((entry) => ({ entry, key: addressOrderKey(entry.ip) }));
  keyed.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  return keyed.map(({ entry }) => entry);
}

/** Where `ip` is, or would go, in entries sorted by address. */
export function searchSorted(sorted: readonly SpoolEntry[], ip: string): number {
  const target = ipv4Number(ip);
  let low = 0;
  let high = sorted.length;
  while (low < high) {
    const mid = (low + high) >>> 1;
    if (compareTo((sorted[mid] as SpoolEntry).ip, target, ip) < 0) low = mid + 1;
    else high = mid;
  }
  return low;
}

/** The entry for `ip` in entries sorted by address, if there is one. */
export function findEntry(sorted: readonly SpoolEntry[], ip: string): SpoolEntry | undefined {
  const entry = sorted[searchSorted(sorted, ip)];
  return entry?.ip === ip ? entry : undefined;
}

/** Entries sorted by address (SpoolStore.list()), looked up by address with a binary search. */
export function sortedLookup(sorted: readonly SpoolEntry[]): CurrentEntries {
  return { get: (ip) => findEntry(sorted, ip), values: () => sorted };
}

/**
 * Entries in address order, kept up to date change by change: a grant in a spool of 100,000
 * entries costs a binary search, not a sort. One array, found by binary search: no map by
 * address beside it. list() hands out that array itself, read-only, and the next change copies
 * it first (copy on write; an entry added or removed makes a new array anyway): a daemon lists
 * the spool twice per login, and a copy of 100,000 entries took 3 ms each time.
 */
export class SortedEntries {
  private sorted: SpoolEntry[];
  /** The array was handed out by list(): it must not change any more. */
  private shared = false;

  constructor(entries: readonly SpoolEntry[] = []) {
    // A later entry for the same address replaces an earlier one, as set() does.
    const sorted = sortEntries([...entries]);
    let kept = 0;
    for (const entry of sorted) {
      if (kept > 0 && sorted[kept - 1]?.ip === entry.ip) sorted[kept - 1] = entry;
      else sorted[kept++] = entry;
    }
    sorted.length = kept;
    this.sorted = sorted;
  }

  get size(): number {
    return this.sorted.length;
  }

  get(ip: string): SpoolEntry | undefined {
    return findEntry(this.sorted, ip);
  }

  set(entry: SpoolEntry): void {
    const at = searchSorted(this.sorted, entry.ip);
    if (this.sorted[at]?.ip === entry.ip) this.own()[at] = entry;
    else this.replace(at, 0, entry);
  }

  delete(ip: string): boolean {
    const at = searchSorted(this.sorted, ip);
    if (this.sorted[at]?.ip !== ip) return false;
    this.replace(at, 1);
    return true;
  }

  /** The entries in address order, as they are now: later changes do not show in it. */
  list(): readonly SpoolEntry[] {
    this.shared = true;
    return this.sorted;
  }

  /**
   * A new array with `remove` entries at `at` left out and `entry` put there. One loop: at
   * 100,000 entries, splice took 5 ms (and a copy before it 3 ms more), this takes 3 ms.
   */
  private replace(at: number, remove: 0 | 1, entry?: SpoolEntry): void {
    const from = this.sorted;
    const added = entry === undefined ? 0 : 1;
    const next = new Array<SpoolEntry>(from.length - remove + added);
    for (let n = 0; n < at; n++) next[n] = from[n] as SpoolEntry;
    if (entry !== undefined) next[at] = entry;
    for (let n = at + remove; n < from.length; n++)
      next[n - remove + added] = from[n] as SpoolEntry;
    this.sorted = next;
    this.shared = false;
  }

  /** The array, to be changed: a copy if list() handed it out. */
  private own(): SpoolEntry[] {
    if (this.shared) {
      this.sorted = this.sorted.slice();
      this.shared = false;
    }
    return this.sorted;
  }
}
