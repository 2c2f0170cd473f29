/**
 * Grants and their neighbours, for proving through each MTA that a grant lets exactly its own
 * address relay. Pure: the tests feed these to Postfix (XCLIENT), tcprulescheck, Sendmail and
 * Exim. Neighbours are the addresses an inexact key would open: text extensions of the key
 * (what a lookup cut at `:` or `.`, or a prefix rule, reaches), the same /64, /112, /120 and
 * /24, and the IPv4/IPv6 look-alikes (`::a.b.c.d`, `::ffff:a.b.c.d`).
 */
import fc from "fast-check";
import {
  type CanonicalIp,
  canonicalIp,
  formatIpv6,
  ipv6Groups,
  parseIp,
} from "../../src/address/ip.js";
import { glibcSpelling } from "../../src/maps/keys.js";

/** Grants that are known traps: compressed runs, trailing ::, ::a.b.c.d, ::1. */
const FIXED_GRANTS = [
  "2001:db8::1",
  "2001:db8::1:0",
  "2001:db8:1:2::",
  "2001:db8:0:1:1:1:1:1",
  "1:2:3:4:5:6:7:0",
  "2001:db8::",
  "::1:5",
  "::102:304",
  "::ffff:0:102:304",
  "2001:db8:1::1:0:0:1",
  "198.51.100.7",
  "192.0.2.1",
  "10.20.30.4",
];

const octet = fc.integer({ min: 0, max: 255 });
const ipv4 = fc.tuple(octet, octet, octet, octet).map((parts) => parts.join("."));
// Zero groups often, so that compressed runs (and their parent keys) are common.
const group = fc.oneof(fc.constant(0), fc.constant(1), fc.integer({ min: 0, max: 0xffff }));
const ipv6 = fc.array(group, { minLength: 8, maxLength: 8 }).map((groups) => formatIpv6(groups, 2));

/** Random client addresses (not loopback: the test Postfix's mynetworks is 127.0.0.1). */
export function grants(count: number, seed: number): CanonicalIp[] {
  const drawn = fc.sample(fc.oneof(ipv4, ipv6, ipv6), { numRuns: count * 3, seed });
  const found = new Map<string, CanonicalIp>();
  for (const text of [...FIXED_GRANTS, ...drawn]) {
    const ip = client(text);
    if (ip && !ip.address.startsWith("127.") && ip.address !== "::1") found.set(ip.address, ip);
    if (found.size >= FIXED_GRANTS.length + count) break;
  }
  return [...found.values()];
}

function client(text: string): CanonicalIp | undefined {
  try {
    return canonicalIp(text);
  } catch {
    return undefined;
  }
}

/** Addresses close to `ip` in every sense an MTA's matching could confuse: canonical forms. */
export function neighbours(ip: CanonicalIp, seed: number): string[] {
  const random = fc.sample(fc.integer({ min: 1, max: 0xfffe }), { numRuns: 4, seed });
  const [r1 = 1, r2 = 2, r3 = 3, r4 = 4] = random;
  const texts: string[] = [];
  if (ip.family === 4) {
    const parts = ip.address.split(".").map(Number);
    const [a = 0, b = 0, c = 0, d = 0] = parts;
    for (const other of [d ^ 1, (d + 1) % 256, r1 % 256, 0, 255])
      texts.push(`${a}.${b}.${c}.${other}`);
    // Text extensions: what a prefix rule or a lookup cut at "." would reach from the key.
    for (const digit of "0123456789") texts.push(`${ip.address}${digit}`);
    texts.push(`${a}.${b}.${c}.${d}0`, `${a}.${b}.${c + 1}.${d}`, `${a}.${b}.${c}.${d}.1`);
    // ::a.b.c.d is an IPv6 host, ::ffff:0:a.b.c.d too; ::ffff:a.b.c.(d+1) is a neighbour.
    texts.push(`::${ip.address}`, `::ffff:0:${ip.address}`, `::ffff:${a}.${b}.${c}.${d ^ 1}`);
    texts.push(`64:ff9b::${ip.address}`);
  } else {
    const groups = ipv6Groups(ip.address) ?? [];
    const withLast = (value: number, index = 7) =>
      formatIpv6(
        groups.map((g, i) => (i === index ? value : g)),
        2,
      );
    const last = groups[7] ?? 0;
    // Same /120, /112, /64.
    texts.push(withLast(last ^ 1), withLast((last & 0xff00) | (r1 & 0xff)), withLast(r2));
    texts.push(withLast(r3, 6), withLast(r4, 4), withLast((groups[5] ?? 0) ^ 1, 5));
    // Text extensions of every spelling a map might use: parent keys and prefix rules.
    const spellings = new Set([ip.address, glibcSpelling(groups), formatIpv6(groups, 1)]);
    for (const spelled of spellings) {
      for (const tail of [":1", ":5", ":1:5", ":5:6:7", ":0", ":abcd:0:7", "1", "0", ":ffff"])
        texts.push(`${spelled}${tail}`);
      if (spelled.endsWith("::")) texts.push(`${spelled}1`, `${spelled}dead:beef`);
    }
    // The IPv4 look-alike of ::a.b.c.d and ::ffff:a.b.c.d hosts.
    const high = groups[6] ?? 0;
    texts.push(`${high >> 8}.${high & 0xff}.${last >> 8}.${last & 0xff}`);
  }
  const found = new Set<string>();
  for (const text of texts) {
    const other = client(text);
    if (other && other.address !== ip.address) found.add(other.address);
  }
  return [...found];
}

/** Every spelling of an address a client could present: compressed, full, and glibc's. */
export function spellings(address: string): string[] {
  const ip = parseIp(address);
  if (ip.family === 4) return [address];
  const groups = ipv6Groups(address) ?? [];
  const full = groups.map((g) => g.toString(16).padStart(4, "0")).join(":");
  return [...new Set([address, full, glibcSpelling(groups)])];
}

export interface ProbeSet {
  grants: CanonicalIp[];
  /** Canonical addresses that must not relay, none of them a grant. */
  neighbours: string[];
}

export function probeSet(count: number, seed: number): ProbeSet {
  const granted = grants(count, seed);
  const taken = new Set(granted.map((ip) => ip.address));
  const near = new Set<string>();
  granted.forEach((ip, index) => {
    for (const other of neighbours(ip, seed + index)) if (!taken.has(other)) near.add(other);
  });
  return { grants: granted, neighbours: [...near] };
}
