import ipaddr from "ipaddr.js";

/** An address in the one spelling poprelay uses for file names and map keys. */
export interface CanonicalIp {
  readonly address: string;
  readonly family: 4 | 6;
}

export class InvalidIpError extends Error {
  constructor(
    readonly input: string,
    reason: string,
  ) {
    super(`not an IP address: ${JSON.stringify(input.slice(0, 80))}: ${reason}`);
    this.name = "InvalidIpError";
  }
}

// Longest textual IPv6 form with an embedded IPv4 tail.
const MAX_TEXT_LENGTH = 45;
// Plain dotted quad only: inet_aton's short, hex and octal forms (1.2.3, 0x7f.1, 010.0.0.1)
// would let one address take several spellings.
const DOTTED_QUAD =
  /^(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?:\.(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;
const IPV6_CHARS = /^[0-9A-Fa-f:.]+$/;

/**
 * Validates text as a single IPv4 or IPv6 address and returns its canonical form:
 * dotted quad for IPv4, RFC 5952 for IPv6, IPv4-mapped IPv6 folded to IPv4.
 * Everything else (networks, zone ids, host names, padding, control characters) throws.
 */
export function canonicalIp(input: string): CanonicalIp {
  if (input.length === 0) throw new InvalidIpError(input, "empty");
  if (input.length > MAX_TEXT_LENGTH) throw new InvalidIpError(input, "too long");
  if (DOTTED_QUAD.test(input)) {
    return { address: ipaddr.IPv4.parse(input).toString(), family: 4 };
  }
  if (!input.includes(":")) {
    throw new InvalidIpError(input, "not a dotted quad (a.b.c.d, each 0-255, no leading zeros)");
  }
  if (input.includes("%")) throw new InvalidIpError(input, "zone ids are not allowed");
  if (!IPV6_CHARS.test(input) || !ipaddr.IPv6.isValid(input)) {
    throw new InvalidIpError(input, "not a valid IPv6 address");
  }
  const v6 = ipaddr.IPv6.parse(input);
  if (v6.isIPv4MappedAddress()) {
    return { address: v6.toIPv4Address().toString(), family: 4 };
  }
  return { address: v6.toRFC5952String(), family: 6 };
}

/** True when text is already an address in canonical form (a spool file name, say). */
export function isCanonicalIp(text: string): boolean {
  try {
    return canonicalIp(text).address === text;
  } catch {
    return false;
  }
}

/** Orders addresses numerically, IPv4 before IPv6, so that maps are deterministic. */
export function compareIps(a: string, b: string): number {
  const ba = ipaddr.parse(a).toByteArray();
  const bb = ipaddr.parse(b).toByteArray();
  if (ba.length !== bb.length) return ba.length - bb.length;
  for (let i = 0; i < ba.length; i++) {
    const d = (ba[i] ?? 0) - (bb[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}
