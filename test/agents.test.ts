import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { AGENTS } from "../src/matcher/agents/index.js";
import { createMatcher } from "../src/matcher/matcher.js";
import { readSamples } from "./support/samples.js";

// Classic syslog stamps have no year: the samples are read as if on this day.
// Late enough that every sample (stamped up to Nov 26, local or UTC) is in the past in any zone.
const NOW = new Date(2026, 10, 27, 0, 0, 0);

for (const profile of AGENTS.values()) {
  describe(`agent ${profile.name}: samples`, () => {
    const samples = readSamples(profile.name);
    const match = createMatcher({ profile, ignore: [], allow: [] });

    it("has samples that must match and samples that must not", () => {
      assert.ok(samples.some((s) => "user" in s.expect));
      assert.ok(samples.some((s) => "reject" in s.expect));
    });

    it("every pattern is exercised by a sample that matches", () => {
      for (const pattern of profile.patterns) {
        const used = samples.some((s) => {
          if (!("user" in s.expect)) return false;
          const text = s.entry.kind === "line" ? s.entry.text : String(s.entry.fields.MESSAGE);
          return pattern.test(text.slice(text.indexOf(": ") + 2)) || pattern.test(text);
        });
        assert.ok(used, `no sample exercises ${pattern}`);
      }
    });

    for (const sample of samples) {
      const label =
        "user" in sample.expect
          ? `line ${sample.line} grants ${sample.expect.ip}`
          : `line ${sample.line} is rejected: ${sample.expect.reject} (${sample.expect.why})`;
      it(label, () => {
        const verdict = match(sample.entry, NOW);
        if ("user" in sample.expect) {
          assert.ok(
            verdict.accepted,
            `rejected: ${!verdict.accepted && verdict.reason} ${!verdict.accepted ? (verdict.detail ?? "") : ""}`,
          );
          assert.deepEqual({ user: verdict.login.user, ip: verdict.login.ip }, sample.expect);
          assert.equal(verdict.login.timeWarning, undefined, "the sample's own time is used");
        } else {
          assert.equal(verdict.accepted, false, `accepted ${verdict.accepted && verdict.login.ip}`);
          assert.equal(!verdict.accepted && verdict.reason, sample.expect.reject);
        }
      });
    }
  });
}
