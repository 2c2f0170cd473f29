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

const orderKeys = new Map<string, string>();

/** addressOrderKey, remembered for the addresses a process keeps seeing. */
function orderKey(ip: string): string {
  let key = orderKeys.get(ip);
  if (key === undefined) {
    if (orderKeys.size >= 1_000_000) orderKeys.clear();
    key = addressOrderKey(ip);
    orderKeys.set(ip, key);
  }
  return key;
}

/** Entries in address order, as SpoolStore.list() returns them. */
export function sortEntries(entries: SpoolEntry[]): SpoolEntry[] {
  const keyed = entries.map((entry) => ({ entry, key: orderKey(entry.ip) }));
  keyed.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  return keyed.map(({ entry }) => entry);
}

/** Where `ip` is, or would go, in entries sorted by address. */
export function searchSorted(sorted: readonly SpoolEntry[], ip: string): number {
  const key = orderKey(ip);
  let low = 0;
  let high = sorted.length;
  while (low < high) {
    const mid = (low + high) >>> 1;
    if (orderKey((sorted[mid] as SpoolEntry).ip) < key) low = mid + 1;
    else high = mid;
  }
  return low;
}

/** The entry for `ip` in entries sorted by address, if there is one. */
export function findEntry(sorted: readonly SpoolEntry[], ip: string): SpoolEntry | undefined {
  const entry = sorted[searchSorted(sorted, ip)];
  return entry?.ip === ip ? entry : undefined;
}

/**
 * Entries by address, with their sorted list kept up to date change by change: a grant in a
 * spool of 100,000 entries costs a binary search, not a sort.
 */
export class SortedEntries {
  private readonly byIp = new Map<string, SpoolEntry>();
  private sorted: SpoolEntry[];

  constructor(entries: readonly SpoolEntry[] = []) {
    this.sorted = sortEntries([...entries]);
    for (const entry of this.sorted) this.byIp.set(entry.ip, entry);
  }

  get size(): number {
    return this.byIp.size;
  }

  get(ip: string): SpoolEntry | undefined {
    return this.byIp.get(ip);
  }

  set(entry: SpoolEntry): void {
    const had = this.byIp.has(entry.ip);
    this.byIp.set(entry.ip, entry);
    const at = searchSorted(this.sorted, entry.ip);
    if (had && this.sorted[at]?.ip === entry.ip) this.sorted[at] = entry;
    else this.sorted.splice(at, 0, entry);
  }

  delete(ip: string): boolean {
    if (!this.byIp.delete(ip)) return false;
    const at = searchSorted(this.sorted, ip);
    if (this.sorted[at]?.ip === ip) this.sorted.splice(at, 1);
    return true;
  }

  /** A copy, in address order. */
  list(): SpoolEntry[] {
    return [...this.sorted];
  }
}
