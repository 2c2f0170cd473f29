import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { builtinAgents } from "../src/matcher/agents.js";
import { toRecord } from "../src/matcher/record.js";
import { readSamples, runSamples } from "../src/matcher/samples.js";

// Classic syslog stamps have no year: the samples are read as if on this day.
// Late enough that every sample (stamped up to Nov 26, local or UTC) is in the past in any zone.
const NOW = new Date(2026, 10, 27, 0, 0, 0);

const profiles = builtinAgents();

it("the built-in profiles are the twelve moved from TypeScript, and more", () => {
  const names = profiles.map((p) => p.name);
  for (const name of [
    "courier",
    "cyrus",
    "dovecot",
    "ipop3d",
    "mailutils",
    "perdition",
    "popa3d",
    "qpopper",
    "solid-pop3d",
    "teapop",
    "tpop3d",
    "vpopmail",
  ])
    assert.ok(names.includes(name), `${name} is missing`);
});

it("the formats pop-before-smtp 1.50 and Mail::POPRelay read have profiles (issue 14)", () => {
  const names = profiles.map((p) => p.name);
  for (const name of [
    "apple-imap",
    "cucipop",
    "gnu-pop3d",
    "popa3d-patched",
    "qpopper-file",
    "vm-pop3d",
    "vpop3d",
  ])
    assert.ok(names.includes(name), `${name} is missing`);
});

for (const profile of profiles) {
  describe(`agent ${profile.name}: samples`, () => {
    const samples = readSamples(profile.samples?.file ?? "");
    const results = runSamples(profile, samples, NOW);

    it("has samples that must match and samples that must not", () => {
      assert.ok(samples.some((s) => "user" in s.expect));
      assert.ok(samples.some((s) => "reject" in s.expect));
    });

    it("every pattern is exercised by a sample that matches", () => {
      for (const pattern of profile.patterns) {
        const used = samples.some((s) => {
          if (!("user" in s.expect)) return false;
          const message = toRecord(s.entry, NOW)?.message;
          return message !== undefined && pattern.test(message);
        });
        assert.ok(used, `no sample exercises ${pattern}`);
      }
    });

    for (const { sample, failure, timeWarning } of results) {
      const label =
        "user" in sample.expect
          ? `line ${sample.line} grants ${sample.expect.ip}`
          : `line ${sample.line} is rejected: ${sample.expect.reject} (${sample.expect.why})`;
      it(label, () => {
        assert.equal(failure, undefined);
        if ("user" in sample.expect)
          assert.equal(timeWarning, undefined, "the sample's own time is used");
      });
    }
  });
}
