import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { networkMatcher, parseCidr } from "../src/address/cidr.js";
import { canonicalIp, compareIps, InvalidIpError, isCanonicalIp } from "../src/address/ip.js";

describe("canonicalIp", () => {
  const canonical: [string, string, 4 | 6][] = [
    ["198.51.100.7", "198.51.100.7", 4],
    ["0.0.0.0", "0.0.0.0", 4],
    ["255.255.255.255", "255.255.255.255", 4],
    ["2001:DB8:0:0:0:0:0:1", "2001:db8::1", 6],
    ["2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1", 6],
    ["2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1", 6],
    ["::1", "::1", 6],
    ["::ffff:198.51.100.7", "198.51.100.7", 4],
    ["::FFFF:c633:6407", "198.51.100.7", 4],
    ["2001:db8::192.0.2.1", "2001:db8::c000:201", 6],
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

  it("isCanonicalIp accepts only the canonical spelling", () => {
    assert.equal(isCanonicalIp("2001:db8::1"), true);
    assert.equal(isCanonicalIp("2001:DB8::1"), false);
    assert.equal(isCanonicalIp("::ffff:1.2.3.4"), false);
    assert.equal(isCanonicalIp(".lock"), false);
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

  it("folds IPv4-mapped networks to IPv4", () => {
    assert.equal(networkMatcher(["::ffff:10.0.0.0/104"])("10.1.2.3"), true);
  });

  it("refuses bad prefixes", () => {
    assert.throws(() => parseCidr("10.0.0.0/33"), /out of range/);
    assert.throws(() => parseCidr("10.0.0.0/x"), /bad prefix/);
    assert.throws(() => parseCidr("10.0.0/8"), /not a dotted quad/);
  });
});
