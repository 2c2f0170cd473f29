import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import ipaddr from "ipaddr.js";
import { networkMatcher, parseCidr } from "../src/address/cidr.js";
import {
  canonicalIp,
  compareIps,
  formatIpv6,
  InvalidIpError,
  ipv4Number,
  isCanonicalIp,
  NonClientIpError,
  parseIp,
} from "../src/address/ip.js";

describe("canonicalIp", () => {
  const canonical: [string, string, 4 | 6][] = [
    ["198.51.100.7", "198.51.100.7", 4],
    ["127.0.0.9", "127.0.0.9", 4],
    ["169.254.1.1", "169.254.1.1", 4],
    ["223.255.255.254", "223.255.255.254", 4],
    ["2001:DB8:0:0:0:0:0:1", "2001:db8::1", 6],
    ["2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1", 6],
    ["2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1", 6],
    ["::1", "::1", 6],
    ["::ffff:198.51.100.7", "198.51.100.7", 4],
    ["::FFFF:c633:6407", "198.51.100.7", 4],
    ["2001:db8::192.0.2.1", "2001:db8::c000:201", 6],
    // glibc prints the IPv6 host ::102:304 so: it is not the IPv4 host 1.2.3.4.
    ["::1.2.3.4", "::102:304", 6],
    ["::0102:0304", "::102:304", 6],
    ["0:0:0:0:0:0:1.2.3.4", "::102:304", 6],
    ["0:0:0:0:0:ffff:1.2.3.4", "1.2.3.4", 4],
    ["::ffff:0:1.2.3.4", "::ffff:0:102:304", 6],
    ["1::2.3.4.5", "1::203:405", 6],
    ["1:2:3:4:5:6:7::", "1:2:3:4:5:6:7:0", 6],
    ["::2:3:4:5:6:7:8", "0:2:3:4:5:6:7:8", 6],
    ["fec0::1", "fec0::1", 6],
  ];
  for (const [input, address, family] of canonical) {
    it(`${input} → ${address}`, () => assert.deepEqual(canonicalIp(input), { address, family }));
  }

  const refused: [string, RegExp][] = [
    ["", /empty/],
    ["../../etc/passwd", /not a dotted quad/],
    ["1.2.3.4/../../x", /not a valid IPv6|not a dotted quad/],
    ["1.2.3.4 OK\n0.0.0.0/0", /not a dotted quad/],
    ["1.2.3.4\n", /not a dotted quad/],
    [" 1.2.3.4", /not a dotted quad/],
    ["1.2.3.256", /not a dotted quad/],
    ["1.2.3.4.5", /not a dotted quad/],
    ["1.2.3", /not a dotted quad/],
    ["01.2.3.4", /not a dotted quad/],
    ["0x7f.0.0.1", /not a dotted quad/],
    ["2130706433", /not a dotted quad/],
    ["1.2.3.4/32", /not a dotted quad/],
    ["fe80::1%eth0", /zone ids/],
    ["fe80::1%25eth0", /zone ids/],
    ["2001:db8::/32", /not a valid IPv6/],
    ["1::2::3", /not a valid IPv6/],
    ["[2001:db8::1]", /not a valid IPv6/],
    ["2001:db8::1 OK", /not a valid IPv6/],
    ["mail.example.com", /not a dotted quad/],
    ["1:2:3:4:5:6:7:8:9", /not a valid IPv6/],
    ["1:2:3:4:5:6:7::8", /not a valid IPv6/],
    ["1:2:3:4:5:6:7", /not a valid IPv6/],
    [":1:2:3:4:5:6:7", /not a valid IPv6/],
    [":::1", /not a valid IPv6/],
    ["::1.2.3", /not a valid IPv6/],
    ["::1.2.3.4:5", /not a valid IPv6/],
    ["1.2.3.4::", /not a valid IPv6/],
    ["::ffff:01.2.3.4", /not a valid IPv6/],
    ["12345::", /not a valid IPv6/],
    // Valid addresses that no TCP client has as its source.
    ["0.0.0.0", /not a client address.*this network/],
    ["0.1.2.3", /not a client address.*this network/],
    ["255.255.255.255", /not a client address.*broadcast/],
    ["224.0.0.1", /not a client address.*multicast/],
    ["239.255.255.255", /not a client address.*multicast/],
    ["240.0.0.1", /not a client address.*reserved/],
    ["::", /not a client address.*unspecified/],
    ["0:0:0:0:0:0:0:0", /not a client address.*unspecified/],
    ["ff02::1", /not a client address.*multicast/],
    ["FF05::2", /not a client address.*multicast/],
    ["fe80::1", /not a client address.*link-local/],
    ["febf::1", /not a client address.*link-local/],
    ["::ffff:0.0.0.0", /not a client address.*this network/],
    ["::ffff:255.255.255.255", /not a client address.*broadcast/],
    ["::ffff:e000:1", /not a client address.*multicast/],
    ["1".repeat(50), /too long/],
  ];
  for (const [input, reason] of refused) {
    it(`refuses ${JSON.stringify(input)}`, () => {
      assert.throws(
        () => canonicalIp(input),
        (e: unknown) => e instanceof InvalidIpError && reason.test(e.message),
      );
    });
  }

  it("parseIp reads listen addresses and networks, which need not be clients", () => {
    assert.deepEqual(parseIp("0.0.0.0"), { address: "0.0.0.0", family: 4 });
    assert.deepEqual(parseIp("::"), { address: "::", family: 6 });
    assert.deepEqual(parseIp("::1.2.3.4"), { address: "::102:304", family: 6 });
  });

  it("isCanonicalIp accepts only the canonical spelling", () => {
    assert.equal(isCanonicalIp("0.0.0.0"), false);
    assert.equal(isCanonicalIp("ff02::1"), false);
    assert.equal(isCanonicalIp("2001:db8::1"), true);
    assert.equal(isCanonicalIp("2001:DB8::1"), false);
    assert.equal(isCanonicalIp("::ffff:1.2.3.4"), false);
    assert.equal(isCanonicalIp(".lock"), false);
  });

  it("ipv4Number reads exactly the plain dotted quads, as their 32-bit number", () => {
    const quad =
      /^(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?:\.(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;
    const part = fc.oneof(
      fc.integer({ min: 0, max: 300 }).map(String),
      fc.constantFrom("00", "01", "007", "", " 1", "1e2", "0x1", "-1", "+1", "1000"),
    );
    fc.assert(
      fc.property(fc.array(part, { minLength: 1, maxLength: 6 }), (parts) => {
        const text = parts.join(".");
        const n = ipv4Number(text);
        assert.equal(n !== -1, quad.test(text), text);
        if (n !== -1)
          assert.equal(
            n,
            parts.reduce((a, p) => a * 256 + Number(p), 0),
          );
      }),
      { seed: 15, numRuns: 5000 },
    );
  });

  it("compareIps sorts numerically, IPv4 first", () => {
    const sorted = ["2001:db8::1", "10.0.0.10", "::1", "10.0.0.2", "9.255.255.255"].sort(
      compareIps,
    );
    assert.deepEqual(sorted, ["9.255.255.255", "10.0.0.2", "10.0.0.10", "::1", "2001:db8::1"]);
  });
});

describe("networks", () => {
  it("matches members of IPv4 and IPv6 networks and single addresses", () => {
    const inside = networkMatcher(["127.0.0.0/8", "::1/128", "2001:db8::/32", "192.0.2.7"]);
    assert.equal(inside("127.1.2.3"), true);
    assert.equal(inside("128.0.0.1"), false);
    assert.equal(inside("::1"), true);
    assert.equal(inside("2001:db8:ffff::1"), true);
    assert.equal(inside("2001:db9::1"), false);
    assert.equal(inside("192.0.2.7"), true);
    assert.equal(inside("192.0.2.8"), false);
  });

  it("folds IPv4-mapped networks to IPv4, in any spelling", () => {
    assert.equal(networkMatcher(["::ffff:10.0.0.0/104"])("10.1.2.3"), true);
    assert.equal(networkMatcher(["0:0:0:0:0:ffff:a00:0/104"])("10.1.2.3"), true);
    assert.equal(networkMatcher(["::10.0.0.0/104"])("10.1.2.3"), false);
  });

  it("agrees with ipaddr.js on random addresses and networks, both families", () => {
    const v4 = fc
      .array(fc.integer({ min: 0, max: 255 }), { minLength: 4, maxLength: 4 })
      .map((bytes) => bytes.join("."));
    const g = fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 0xffff }));
    const v6 = fc
      .array(g, { minLength: 8, maxLength: 8 })
      .map((groups) => formatIpv6(groups, 2))
      // Folded to IPv4 by parseCidr and canonicalIp; compared in their IPv4 form above.
      .filter((text) => parseIp(text).family === 6);
    const network = fc.oneof(
      fc.tuple(v4, fc.integer({ min: 0, max: 32 })),
      fc.tuple(v6, fc.integer({ min: 0, max: 128 })),
    );
    fc.assert(
      fc.property(fc.array(network, { maxLength: 4 }), fc.oneof(v4, v6), (nets, ip) => {
        const texts = nets.map(([address, length]) => `${address}/${length}`);
        const expected = nets.some(([address, length]) => {
          const a = ipaddr.parse(ip);
          const n = ipaddr.parse(address);
          return a.kind() === n.kind() && a.match(n, length);
        });
        assert.equal(networkMatcher(texts)(ip), expected, `${ip} in ${texts.join(" ")}`);
      }),
      { seed: 15, numRuns: 2000 },
    );
  });

  it("refuses bad prefixes", () => {
    assert.throws(() => parseCidr("10.0.0.0/33"), /out of range/);
    assert.throws(() => parseCidr("10.0.0.0/x"), /bad prefix/);
    assert.throws(() => parseCidr("10.0.0/8"), /not a dotted quad/);
  });
});

describe("one address, one spelling", () => {
  const group = fc.integer({ min: 0, max: 0xffff });
  // Zero groups often, so that runs of them (and their compression) are common.
  const groups = fc.array(fc.oneof(fc.constant(0), group), { minLength: 8, maxLength: 8 });

  it("every spelling of an IPv6 address reads back as the same canonical address", () => {
    fc.assert(
      fc.property(groups, fc.boolean(), (parts, upper) => {
        const full = parts.map((p) => p.toString(16).padStart(4, "0")).join(":");
        const spellings = [full, formatIpv6(parts, 1), formatIpv6(parts, 2)];
        const mapped = parts.slice(0, 5).every((p) => p === 0) && parts[5] === 0xffff;
        const quad = [parts[6] ?? 0, parts[7] ?? 0].flatMap((p) => [p >> 8, p & 0xff]).join(".");
        spellings.push(`${full.split(":").slice(0, 6).join(":")}:${quad}`);
        const read = new Set(spellings.map((s) => parseIp(upper ? s.toUpperCase() : s).address));
        assert.equal(read.size, 1, spellings.join(" "));
        const [address = ""] = read;
        // Only ::ffff:a.b.c.d is an IPv4 host; every other address stays IPv6.
        assert.equal(address.includes("."), mapped);
        assert.equal(parseIp(address).address, address);
      }),
      { numRuns: 2000 },
    );
  });

  it("a client address is refused only with a reason, never changed", () => {
    fc.assert(
      fc.property(groups, (parts) => {
        const text = formatIpv6(parts, 2);
        try {
          assert.equal(canonicalIp(text).address, parseIp(text).address);
        } catch (error) {
          assert.ok(error instanceof NonClientIpError, String(error));
        }
      }),
      { numRuns: 2000 },
    );
  });
});
