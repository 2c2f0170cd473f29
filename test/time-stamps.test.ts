import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { parseTextLine } from "../src/matcher/text-line.js";

const LINE = "pop3-login: Info: Login: user=<a>, method=PLAIN, rip=192.0.2.1, lip=192.0.2.2";

/** The time of a classic stamp read at `now` (an ISO string), in the zone the test sets. */
function stampTime(stamp: string, now: string): string {
  const record = parseTextLine(`${stamp} ${LINE}`, new Date(now));
  assert.ok(record?.time !== undefined, `no time for ${stamp}`);
  return new Date(record.time).toISOString();
}

describe("year-less local stamps and daylight saving time", () => {
  const zone = process.env.TZ;
  // Node reads TZ again when it changes.
  process.env.TZ = "Europe/Berlin";
  after(() => {
    if (zone === undefined) delete process.env.TZ;
    else process.env.TZ = zone;
  });

  it("in the repeated hour, read in its second occurrence: the second", () => {
    // 25 Oct 2026: 03:00 CEST (01:00 UTC) becomes 02:00 CET; 02:30 is 00:30 and 01:30 UTC.
    assert.equal(stampTime("Oct 25 02:30:00", "2026-10-25T01:40:00Z"), "2026-10-25T01:30:00.000Z");
    // Read long after (a catch-up): still the second.
    assert.equal(stampTime("Oct 25 02:30:00", "2026-10-25T09:00:00Z"), "2026-10-25T01:30:00.000Z");
  });

  it("in the repeated hour, read in its first occurrence: the first (the second is to come)", () => {
    assert.equal(stampTime("Oct 25 02:30:00", "2026-10-25T00:40:00Z"), "2026-10-25T00:30:00.000Z");
  });

  it("outside the repeated hour, and in summer: the one reading", () => {
    assert.equal(stampTime("Oct 25 03:30:00", "2026-10-25T05:00:00Z"), "2026-10-25T02:30:00.000Z");
    assert.equal(stampTime("Oct 25 01:59:59", "2026-10-25T05:00:00Z"), "2026-10-24T23:59:59.000Z");
    assert.equal(stampTime("Jul 25 07:30:00", "2026-07-25T06:00:00Z"), "2026-07-25T05:30:00.000Z");
  });
});
