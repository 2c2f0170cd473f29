import { ipv4Number, ipv6Groups, parseAddress } from "./ip.js";

/** A network: its family, its address as bytes (4 or 16), and its prefix length. */
export interface Network {
  family: 4 | 6;
  bytes: Uint8Array;
  length: number;
}

/**
 * Parses `a.b.c.d/len`, `v6::/len`, or a single address (a /32 or /128 network).
 * IPv4-mapped IPv6 networks are folded to IPv4 as addresses are.
 */
export function parseCidr(text: string): Network {
  const slash = text.indexOf("/");
  const { ip, mapped } = parseAddress(slash === -1 ? text : text.slice(0, slash));
  const bytes = addressBytes(ip.address);
  const max = bytes.length * 8;
  if (slash === -1) return { family: ip.family, bytes, length: max };
  const lengthText = text.slice(slash + 1);
  if (!/^\d{1,3}$/.test(lengthText))
    throw new TypeError(`${JSON.stringify(text)}: bad prefix length`);
  let length = Number(lengthText);
  if (mapped) length -= 96;
  if (length < 0 || length > max)
    throw new TypeError(`${JSON.stringify(text)}: prefix length out of range`);
  return { family: ip.family, bytes, length };
}

/**
 * A pure membership test over a list of networks; addresses must be canonical. An IPv4 address
 * is read as one 32-bit number, without a string or an object per test: the matcher asks this
 * for every login line.
 */
export function networkMatcher(networks: readonly string[]): (ip: string) => boolean {
  const parsed = networks.map(parseCidr);
  const v4 = parsed
    .filter((n) => n.family === 4)
    .map((n) => {
      const mask = n.length === 0 ? 0 : (0xffffffff << (32 - n.length)) >>> 0;
      return { base: (quadNumber(n.bytes) & mask) >>> 0, mask };
    });
  const v6 = parsed.filter((n) => n.family === 6);
  const inV4 = (quad: number) => {
    for (const { base, mask } of v4) if ((quad & mask) >>> 0 === base) return true;
    return false;
  };
  return (ip) => {
    const quad = ipv4Number(ip);
    if (quad !== -1) return inV4(quad);
    const bytes = addressBytes(parseAddress(ip).ip.address);
    if (bytes.length === 4) return inV4(quadNumber(bytes));
    return v6.some((n) => prefixEqual(bytes, n.bytes, n.length));
  };
}

/** The bytes of a canonical address: 4 for a dotted quad, 16 for IPv6. */
function addressBytes(address: string): Uint8Array {
  const quad = ipv4Number(address);
  if (quad !== -1)
    return Uint8Array.of(quad >>> 24, (quad >>> 16) & 0xff, (quad >>> 8) & 0xff, quad & 0xff);
  const groups = ipv6Groups(address);
  if (groups === undefined) throw new TypeError(`${JSON.stringify(address)}: not an address`);
  return Uint8Array.from(groups.flatMap((g) => [g >> 8, g & 0xff]));
}

function quadNumber(bytes: Uint8Array): number {
  return (
    (((bytes[0] ?? 0) << 24) |
      ((bytes[1] ?? 0) << 16) |
      ((bytes[2] ?? 0) << 8) |
      (bytes[3] ?? 0)) >>>
    0
  );
}

/** Whether the first `length` bits of two addresses of the same family are equal. */
function prefixEqual(a: Uint8Array, b: Uint8Array, length: number): boolean {
  const whole = length >>> 3;
  for (let i = 0; i < whole; i++) if (a[i] !== b[i]) return false;
  const rest = length & 7;
  if (rest === 0) return true;
  const mask = (0xff << (8 - rest)) & 0xff;
  return ((a[whole] ?? 0) & mask) === ((b[whole] ?? 0) & mask);
}
