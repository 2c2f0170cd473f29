import { findEntry } from "../spool/order.js";
import type { SpoolEntry } from "../spool/types.js";

/**
 * The policy service's question, answered from the live entries in address order (a binary
 * search): an entry past its expiry no longer counts, even before the timer removes it.
 */
export function liveLookup(
  live: () => readonly SpoolEntry[],
  clock: () => number = Date.now,
): (ip: string) => boolean {
  return (ip) => (findEntry(live(), ip)?.expires ?? 0) > clock();
}
