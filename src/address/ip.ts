import { createRequire } from "node:module";

/** An address in the one spelling poprelay uses for file names and map keys. */
export interface CanonicalIp {
  readonly address: string;
  readonly family: 4 | 6;
}

export class InvalidIpError extends Error {
  constructor(
    readonly input: string,
    reason: string,
    what = "not an IP address",
  ) {
    super(`${what}: ${JSON.stringify(input.slice(0, 80))}: ${reason}`);
    this.name = "InvalidIpError";
  }
}

/** A valid address that no TCP client can have as its source: never granted relay. */
export class NonClientIpError extends InvalidIpError {
  constructor(input: string, reason: string) {
    super(input, reason, "not a client address");
    this.name = "NonClientIpError";
  }
}

// Longest textual IPv6 form with an embedded IPv4 tail.
const MAX_TEXT_LENGTH = 45;
// Plain dotted quad only: inet_aton's short, hex and octal forms (1.2.3, 0x7f.1, 010.0.0.1)
// would let one address take several spellings.
const DOTTED_QUAD =
  /^(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?:\.(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;
const IPV6_CHARS = /^[0-9A-Fa-f:.]+$/;
const GROUP = /^[0-9A-Fa-f]{1,4}$/;

/** The result of reading an address: canonical, and whether it was written IPv4-mapped. */
export interface ParsedIp {
  ip: CanonicalIp;
  /** `::ffff:a.b.c.d` (in any spelling) folded to IPv4: a prefix length on it counts 96 more. */
  mapped: boolean;
}

/**
 * Reads text as a single IPv4 or IPv6 address, any valid spelling, and gives its canonical
 * form: dotted quad for IPv4, RFC 5952 for IPv6. Only IPv4-mapped addresses (::ffff:a.b.c.d)
 * fold to IPv4: `::a.b.c.d` is the IPv6 address ::102:304 that glibc prints so, a different
 * host from a.b.c.d (ipaddr.js parses it as mapped, so it is not used here). Everything else
 * (networks, zone ids, host names, padding, control characters) throws an InvalidIpError.
 * Says nothing about whether a client can have the address: see canonicalIp.
 */
export function parseAddress(input: string): ParsedIp {
  if (input.length === 0) throw new InvalidIpError(input, "empty");
  if (input.length > MAX_TEXT_LENGTH) throw new InvalidIpError(input, "too long");
  // ipv4Number reads exactly the spellings DOTTED_QUAD matches, without a regular expression.
  if (ipv4Number(input) !== -1) return { ip: { address: input, family: 4 }, mapped: false };
  if (!input.includes(":")) {
    throw new InvalidIpError(input, "not a dotted quad (a.b.c.d, each 0-255, no leading zeros)");
  }
  if (input.includes("%")) throw new InvalidIpError(input, "zone ids are not allowed");
  const groups = IPV6_CHARS.test(input) ? ipv6Groups(input) : undefined;
  if (groups === undefined) throw new InvalidIpError(input, "not a valid IPv6 address");
  if (groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff) {
    const [high = 0, low = 0] = groups.slice(6);
    const address = [high >> 8, high & 0xff, low >> 8, low & 0xff].join(".");
    return { ip: { address, family: 4 }, mapped: true };
  }
  return { ip: { address: formatIpv6(groups, 2), family: 6 }, mapped: false };
}

/**
 * A plain dotted quad (four decimal parts 0-255, no leading zeros: the canonical spelling) as a
 * 32-bit number; -1 for anything else.
 */
export function ipv4Number(text: string): number {
  let value = 0;
  let part = 0;
  let digits = 0;
  let parts = 0;
  for (let i = 0; i <= text.length; i++) {
    const code = i < text.length ? text.charCodeAt(i) : 0x2e;
    if (code === 0x2e /* . */) {
      if (digits === 0 || part > 255 || ++parts > 4) return -1;
      value = value * 256 + part;
      part = 0;
      digits = 0;
    } else if (code >= 0x30 && code <= 0x39) {
      if (digits > 0 && part === 0) return -1; // a leading zero
      part = part * 10 + (code - 0x30);
      if (++digits > 3) return -1;
    } else {
      return -1;
    }
  }
  return parts === 4 ? value : -1;
}

/** parseAddress without the mapped flag: listen addresses and networks, not clients. */
export function parseIp(input: string): CanonicalIp {
  return parseAddress(input).ip;
}

/**
 * The address of a client that may be granted relay, in canonical form (see parseAddress).
 * Every path an address takes into poprelay (matcher, `add`, the spool, the Redis feed, the
 * policy service, the map writer) goes through here. Refused with a NonClientIpError: addresses
 * no TCP client can have as its source (unspecified, multicast, broadcast and reserved, "this
 * network" 0.0.0.0/8, and their ::ffff: forms), and IPv6 link-local (fe80::/10), which names
 * one host only together with a zone (an interface) that neither logs nor maps carry.
 * Loopback and the documentation ranges are clients like any other (match.ignore keeps
 * loopback out by default).
 */
export function canonicalIp(input: string): CanonicalIp {
  const { ip } = parseAddress(input);
  const reason = ip.family === 4 ? ipv4Problem(ip.address) : ipv6Problem(ip.address);
  if (reason !== undefined) throw new NonClientIpError(input, reason);
  return ip;
}

function ipv4Problem(address: string): string | undefined {
  const first = Number(address.slice(0, address.indexOf(".")));
  if (first === 0) return '"this network" (0.0.0.0/8) is never a source address';
  if (first >= 224 && first <= 239) return "multicast (224.0.0.0/4)";
  if (address === "255.255.255.255") return "the broadcast address";
  if (first >= 240) return "reserved (240.0.0.0/4)";
  return undefined;
}

function ipv6Problem(address: string): string | undefined {
  if (address === "::") return "the unspecified address";
  const first = Number.parseInt(address.slice(0, address.indexOf(":")) || "0", 16);
  if (first >= 0xff00) return "multicast (ff00::/8)";
  if ((first & 0xffc0) === 0xfe80)
    return "link-local (fe80::/10): without its interface it names no one host";
  return undefined;
}

/** Why text is not a client address in canonical form (a spool file name, say), or undefined. */
export function canonicalProblem(text: string): string | undefined {
  try {
    const { address } = canonicalIp(text);
    return address === text ? undefined : `not in canonical form (${address})`;
  } catch (error) {
    return (error as Error).message;
  }
}

/** True when text is already a client address in canonical form. */
export function isCanonicalIp(text: string): boolean {
  return canonicalProblem(text) === undefined;
}

/** The eight 16-bit groups of an IPv6 address, or undefined when the text is not one. */
export function ipv6Groups(text: string): number[] | undefined {
  let body = text;
  const tail: number[] = [];
  if (body.includes(".")) {
    // An IPv4 tail fills the last two groups; only after the last colon.
    const colon = body.lastIndexOf(":");
    const quad = body.slice(colon + 1);
    if (!DOTTED_QUAD.test(quad)) return undefined;
    const [a = 0, b = 0, c = 0, d = 0] = quad.split(".").map(Number);
    tail.push((a << 8) | b, (c << 8) | d);
    // Keep the colon before the tail: "::1.2.3.4" leaves "::", "1::2.3.4.5" leaves "1::".
    body = body.slice(0, colon + 1);
    if (!body.endsWith("::")) body = body.slice(0, -1);
  }
  const halves = body.split("::");
  if (halves.length > 2) return undefined;
  const read = (part: string): number[] | undefined => {
    if (part === "") return [];
    const groups = part.split(":");
    if (!groups.every((g) => GROUP.test(g))) return undefined;
    return groups.map((g) => Number.parseInt(g, 16));
  };
  const head = read(halves[0] ?? "");
  const rest = halves.length === 2 ? read(halves[1] ?? "") : [];
  if (head === undefined || rest === undefined) return undefined;
  const given = head.length + rest.length + tail.length;
  if (halves.length === 1) return given === 8 ? [...head, ...tail] : undefined;
  // "::" stands for at least one zero group.
  if (given > 7) return undefined;
  return [...head, ...Array<number>(8 - given).fill(0), ...rest, ...tail];
}

/**
 * Lowercase hex groups without leading zeros, the longest run of at least `minRun` zero groups
 * (the first on a tie) written `::`. RFC 5952 and glibc use 2; the IPv6 tcpserver uses 1.
 */
export function formatIpv6(groups: readonly number[], minRun: number): string {
  let best = { start: -1, length: 0 };
  let start = -1;
  groups.forEach((group, index) => {
    if (group !== 0) {
      start = -1;
      return;
    }
    if (start < 0) start = index;
    const length = index - start + 1;
    if (length > best.length) best = { start, length };
  });
  const hex = groups.map((group) => group.toString(16));
  if (best.length < minRun) return hex.join(":");
  const head = hex.slice(0, best.start).join(":");
  const tail = hex.slice(best.start + best.length).join(":");
  return `${head}::${tail}`;
}

let ipaddr: typeof import("ipaddr.js") | undefined;

/**
 * Orders addresses numerically, IPv4 before IPv6: the order maps are written in, with an
 * address parser of its own (ipaddr.js) so that tests check poprelay's sort keys against it.
 * Loaded on first use: no command needs it at start.
 */
export function compareIps(a: string, b: string): number {
  ipaddr ??= createRequire(import.meta.url)("ipaddr.js") as typeof import("ipaddr.js");
  const ba = ipaddr.parse(a).toByteArray();
  const bb = ipaddr.parse(b).toByteArray();
  if (ba.length !== bb.length) return ba.length - bb.length;
  for (let i = 0; i < ba.length; i++) {
    const d = (ba[i] ?? 0) - (bb[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}
