/**
 * How each MTA spells a client address as a map key (`%i`), and which addresses its own matching
 * cannot grant exactly. Pure: the text writers (render.ts) and any in-process database writer
 * take their keys from here. Input is always a canonical client address (address/ip.ts).
 *
 * Exact means: a line for address A lets A relay and no other address, judged by the MTA's own
 * lookup, not by an exact-key query such as `postmap -q`.
 */
import { type CanonicalIp, formatIpv6, ipv6Groups } from "../address/ip.js";

export type KeySpelling = (ip: CanonicalIp) => string;

/** Why a line for this address would open relay to other addresses too; undefined: exact. */
export type Exactness = (ip: CanonicalIp) => string | undefined;

/** For MTAs that compare addresses as numbers, or whose matching poprelay cannot know. */
export const exact: Exactness = () => undefined;

/** Plain maps: the canonical address itself (IPv6 compressed, no brackets). */
export const asIs: KeySpelling = (ip) => ip.address;

/**
 * Postfix: the address as a one-address network, `198.51.100.7/32` or `2001:db8::1/128`.
 * The map is meant for `check_client_access cidr:MAP`: a cidr table compares the client's
 * address as a number with each line, once, without the parent-network lookups that hash,
 * btree, lmdb and cdb tables make (access(5): `2001:db8::1` there also grants `2001:db8::1:5`).
 * The same text built by postmap into MAP.db (or .lmdb, .cdb) matches no client at all, since
 * no address, parent network or host name contains a `/`; smtpd looks it up only so that it
 * notices the rebuilt file (st_nlink 0 after the rename) and restarts with the new cidr table,
 * which it would otherwise read only when it starts.
 */
export const postfixKey: KeySpelling = (ip) => `${ip.address}/${ip.family === 4 ? 32 : 128}`;

/**
 * Sendmail's access map: `Connect:IPv6:` keys spelled as glibc's inet_ntop spells the client
 * address, which is what sendmail looks up (`::102:304` is `::1.2.3.4` there).
 */
export const sendmailKey: KeySpelling = (ip) =>
  ip.family === 6 ? `IPv6:${glibcSpelling(groupsOf(ip))}` : ip.address;

/**
 * Sendmail looks up `Connect:` with the client address, then with it cut at its last `.` or
 * `:` again and again (its LookUpAddress ruleset). A dotted quad is no such cut of another
 * one; an IPv6 address is when its spelling followed by `:` begins another address's spelling:
 * `2001:db8::1` is a cut of `2001:db8::1:5`, `::1` of `::1:5:6`. Those cannot be granted.
 */
export const sendmailExactness: Exactness = (ip) => {
  if (ip.family === 4) return undefined;
  const longer = extensionOf(groupsOf(ip));
  return longer === undefined
    ? undefined
    : `Sendmail's access map looks up parent networks, so Connect:IPv6:${glibcSpelling(groupsOf(ip))} would also let ${longer} relay`;
};

/**
 * Exim's iplsearch reads the first unquoted colon as the end of the key, so IPv6 is quoted.
 * iplsearch compares addresses as numbers (an address without a mask is a /32 or /128 network),
 * so every key is exact.
 */
export const eximKey: KeySpelling = (ip) => (ip.family === 6 ? `"${ip.address}"` : ip.address);

/**
 * tcprules keys are compared as text with $TCPREMOTEIP, so they must be spelled the way the
 * IPv6-patched tcpserver (Debian's ucspi-tcp-ipv6) formats it. Measured: like RFC 5952
 * (lowercase, no leading zeros, longest zero run compressed, the first on a tie) except that a
 * single zero group is compressed too: 2001:db8:0:1:1:1:1:1 arrives as 2001:db8::1:1:1:1:1.
 */
export const tcpserverKey: KeySpelling = (ip) =>
  ip.family === 4 ? ip.address : formatIpv6(groupsOf(ip), 1);

/**
 * tcpserver takes a rule whose key ends in `.` or `:` as a prefix of the address (measured with
 * tcprulescheck): a rule for `2001:db8:1:2::` also matches `2001:db8:1:2::1`. Every address
 * spelled with a trailing `::` (its last group is 0) has such a key, and cannot be granted.
 */
export const tcpserverExactness: Exactness = (ip) => {
  const key = tcpserverKey(ip);
  return key.endsWith(":")
    ? `tcprules reads the rule ${key} as a prefix, so it would also let ${key}1 relay`
    : undefined;
};

function groupsOf(ip: CanonicalIp): number[] {
  const groups = ipv6Groups(ip.address);
  if (groups === undefined) throw new TypeError(`not an IPv6 address: ${ip.address}`);
  return groups;
}

/**
 * glibc's inet_ntop for IPv6: RFC 5952 compression (a single zero group is not compressed),
 * except that an address in ::/96 whose zero run is exactly the first six groups, or one in
 * ::ffff:0:0/96, ends in a dotted quad: ::102:304 is ::1.2.3.4.
 */
export function glibcSpelling(groups: readonly number[]): string {
  const leadingZeros = groups.findIndex((group) => group !== 0);
  const mixed = leadingZeros === 6 || (leadingZeros === 5 && groups[5] === 0xffff);
  if (!mixed) return formatIpv6(groups, 2);
  const [high = 0, low = 0] = groups.slice(6);
  const quad = [high >> 8, high & 0xff, low >> 8, low & 0xff].join(".");
  return leadingZeros === 6 ? `::${quad}` : `::ffff:${quad}`;
}

/**
 * Another address whose glibc spelling starts with this one's and a `:` (so a lookup cut at
 * colons reaches this one), or undefined. Only an address with a compressed zero run can be
 * such a cut: the other address fills that run's place with more groups, so it is tried with
 * 1 to (run - 2) extra groups of 1 at the end (the run must stay at least 2 to stay `::`).
 */
function extensionOf(groups: readonly number[]): string | undefined {
  const spelled = glibcSpelling(groups);
  const at = spelled.indexOf("::");
  if (at < 0 || spelled.endsWith("::") || spelled.includes(".")) return undefined;
  const head = spelled
    .slice(0, at)
    .split(":")
    .filter((g) => g !== "").length;
  const tail = spelled.slice(at + 2).split(":").length;
  const run = 8 - head - tail;
  for (let extra = 1; run - extra >= 2; extra++) {
    const other = [
      ...groups.slice(0, head),
      ...Array<number>(run - extra).fill(0),
      ...groups.slice(8 - tail),
      ...Array<number>(extra).fill(1),
    ];
    const text = glibcSpelling(other);
    if (text.startsWith(`${spelled}:`)) return text;
  }
  return undefined;
}
