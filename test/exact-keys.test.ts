/**
 * The pure side of exact grants (src/maps/keys.ts): how each MTA spells a key and which
 * addresses it cannot grant exactly, checked against a model of each MTA's matching over
 * random addresses (fast-check). test/exact-grants.test.ts asks the MTAs themselves.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { type CanonicalIp, canonicalIp, formatIpv6, ipv6Groups } from "../src/address/ip.js";
import {
  glibcSpelling,
  postfixKey,
  sendmailExactness,
  sendmailKey,
  tcpserverExactness,
  tcpserverKey,
} from "../src/maps/keys.js";

const group = fc.oneof(fc.constant(0), fc.constant(1), fc.integer({ min: 0, max: 0xffff }));
const groups = fc.array(group, { minLength: 8, maxLength: 8 });
const ipv6 = groups
  .map((g) => {
    try {
      return canonicalIp(formatIpv6(g, 2));
    } catch {
      return undefined;
    }
  })
  .filter((ip): ip is CanonicalIp => ip !== undefined && ip.family === 6);

/** Sendmail's LookUpAddress: the key, then the key cut at its last "." or ":", repeatedly. */
function cuts(spelled: string): string[] {
  const found: string[] = [];
  for (let text = spelled; ; ) {
    const at = Math.max(text.lastIndexOf(":"), text.lastIndexOf("."));
    if (at <= 0) return found;
    text = text.slice(0, at).replace(/:$/, "");
    if (text !== "") found.push(text);
  }
}

describe("glibcSpelling", () => {
  const measured: [string, string][] = [
    ["::102:304", "::1.2.3.4"],
    ["::ffff:0:102:304", "::ffff:0:102:304"],
    ["::1", "::1"],
    ["::1:0", "::0.1.0.0"],
    ["2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1"],
    ["2001:db8::1", "2001:db8::1"],
  ];
  for (const [address, spelled] of measured)
    it(`${address} → ${spelled}`, () =>
      assert.equal(glibcSpelling(ipv6Groups(address) ?? []), spelled));
});

describe("exactness", () => {
  it("postfix: every address is one cidr network, which no address or cut contains", () => {
    assert.equal(postfixKey({ address: "198.51.100.7", family: 4 }), "198.51.100.7/32");
    assert.equal(postfixKey({ address: "2001:db8::1", family: 6 }), "2001:db8::1/128");
  });

  it("sendmail: refused exactly when a longer address's cuts reach the key", () => {
    assert.match(sendmailExactness(canonicalIp("2001:db8::1")) ?? "", /2001:db8::1:1/);
    assert.equal(sendmailExactness(canonicalIp("2001:db8:1::")), undefined);
    assert.equal(sendmailExactness(canonicalIp("198.51.100.7")), undefined);
    fc.assert(
      fc.property(ipv6, ipv6, (a, b) => {
        const key = sendmailKey(a);
        const reason = sendmailExactness(a);
        if (reason === undefined) {
          // Exact: no other address's lookups reach this key.
          if (b.address !== a.address) assert.ok(!cuts(sendmailKey(b)).includes(key));
        } else {
          // Refused: the address it names does reach it.
          const other = /let (\S+) relay/.exec(reason)?.[1] ?? "";
          assert.ok(cuts(`IPv6:${other}`).includes(key), `${reason} / ${key}`);
        }
      }),
      { numRuns: 3000 },
    );
  });

  it("qmail: refused exactly when the key ends in a colon (a prefix rule)", () => {
    fc.assert(
      fc.property(ipv6, ipv6, (a, b) => {
        const key = tcpserverKey(a);
        const prefix = key.endsWith(":");
        assert.equal(tcpserverExactness(a) !== undefined, prefix);
        // A whole-address key matches only that address's own $TCPREMOTEIP.
        if (!prefix && b.address !== a.address) assert.notEqual(tcpserverKey(b), key);
      }),
      { numRuns: 3000 },
    );
  });
});
