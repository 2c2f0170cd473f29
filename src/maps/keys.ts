/**
 * How each MTA spells a client address as a map key (`%i`). Input is always a canonical
 * address (address/ip.ts): dotted quad, or RFC 5952 IPv6 with IPv4-mapped folded to IPv4.
 */
import ipaddr from "ipaddr.js";
import type { CanonicalIp } from "../address/ip.js";

export type KeySpelling = (ip: CanonicalIp) => string;

/** Postfix and plain maps: the canonical address itself (IPv6 compressed, no brackets). */
export const asIs: KeySpelling = (ip) => ip.address;

/** Sendmail's access map tags IPv6 keys: `Connect:IPv6:2001:db8::1`. */
export const sendmailKey: KeySpelling = (ip) =>
  ip.family === 6 ? `IPv6:${ip.address}` : ip.address;

/** Exim's iplsearch reads the first unquoted colon as the end of the key, so IPv6 is quoted. */
export const eximKey: KeySpelling = (ip) => (ip.family === 6 ? `"${ip.address}"` : ip.address);

/**
 * tcprules keys are compared as text with $TCPREMOTEIP, so they must be spelled the way the
 * IPv6-patched tcpserver (Debian's ucspi-tcp-ipv6) formats it. Measured: like RFC 5952
 * (lowercase, no leading zeros, longest zero run compressed, the first on a tie) except that a
 * single zero group is compressed too: 2001:db8:0:1:1:1:1:1 arrives as 2001:db8::1:1:1:1:1.
 */
export const tcpserverKey: KeySpelling = (ip) => {
  if (ip.family === 4) return ip.address;
  const parts = ipaddr.IPv6.parse(ip.address).parts;
  let best = { start: -1, length: 0 };
  let run = { start: -1, length: 0 };
  parts.forEach((part, index) => {
    if (part !== 0) {
      run = { start: -1, length: 0 };
      return;
    }
    run = run.start < 0 ? { start: index, length: 1 } : { ...run, length: run.length + 1 };
    if (run.length > best.length) best = run;
  });
  const hex = parts.map((part) => part.toString(16));
  if (best.start < 0) return hex.join(":");
  const head = hex.slice(0, best.start).join(":");
  const tail = hex.slice(best.start + best.length).join(":");
  return `${head}::${tail}`;
};
