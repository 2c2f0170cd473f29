/**
 * Agent profiles as files: validation with clear errors, the site's agents.d beside the
 * built-ins, and the commands that read them (match --agent NAME|FILE, agents, check).
 */
import assert from "node:assert/strict";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, it } from "node:test";
import { builtinAgentsDir, loadAgent } from "../src/matcher/agents.js";
import { ProfileError, parseProfile } from "../src/matcher/profile-file.js";
import { configDir, poprelay, scratch } from "./helpers.js";

const MINIMAL = [
  "name: srv",
  "summary: a test server",
  "covers: [srv 1.0]",
  "programs: [srv]",
  'journal: ["_SYSTEMD_UNIT=srv.service"]',
  "prefilter: ' logged in'",
  "patterns:",
  "  - '^(?<user>\\S+) logged in from (?<ip>[0-9a-f.:]+)$'",
  "",
].join("\n");

const LINE = "Nov 24 03:12:01 mail srv[9]: alice logged in from 198.51.100.7";

function problems(text: string, file = "/x/agents.d/srv.yaml"): string[] {
  try {
    parseProfile(text, file, "site");
  } catch (error) {
    assert.ok(error instanceof ProfileError);
    return error.problems;
  }
  return [];
}

describe("profile files: validation", () => {
  it("a minimal site profile is valid", () => {
    assert.deepEqual(problems(MINIMAL), []);
  });

  it("reads session rules (for relay while a session is open) and two-line correlation", () => {
    const profile = parseProfile(
      [
        MINIMAL,
        "correlate: {address: ['^Connect from (?<ip>[0-9.]+)$'], window: 20m}",
        "session:",
        "  id: pid",
        "  end: ['^(?<user>\\S+) logged out$']",
        "  restart: ['^starting up$']",
        "",
      ].join("\n"),
      "/x/agents.d/srv.yaml",
      "site",
    );
    assert.equal(profile.session?.id, "pid");
    assert.deepEqual(
      profile.session?.end.map((r) => r.source),
      [String.raw`^(?<user>\S+) logged out$`],
    );
    assert.deepEqual(
      profile.session?.restart.map((r) => r.source),
      ["^starting up$"],
    );
    assert.equal(profile.correlate?.windowSeconds, 1200);
  });

  it("names the file, the key and why, for every problem at once", () => {
    const found = problems(
      [
        "name: other",
        "summary: 3",
        "programs: []",
        'journal: ["_COMM=srv", "SYSLOG_IDENTIFIER=srv"]',
        "prefilter: x",
        "patterns:",
        "  - 'logged in from (?<ip>\\S+)'",
        "  - '^(?<user>\\S+) from (?<ip>[$'",
        "  - '^(?<user>\\S+) logged in$'",
        "correlate: {address: ['^from (?<host>\\S+)$'], window: forever}",
        "session: {id: session, end: ['^bye$']}",
        "samples: {file: ../srv.samples, provenance: guessed}",
        "colour: blue",
        "",
      ].join("\n"),
    );
    const expected = [
      /^\/x\/agents\.d\/srv\.yaml: colour: unknown key/,
      /: name: "other" must be the file's name, "srv"$/,
      /: summary: must be a string$/,
      /: covers: missing$/,
      /: programs: empty: name the server's syslog tags/,
      /: journal\[0\]: "_COMM=srv": _COMM and _CMDLINE are set by the process itself/,
      /: journal\[1\]: "SYSLOG_IDENTIFIER=srv" is not _FIELD=value$/,
      /: patterns\[0\]: must be anchored: start with \^ and end with \$$/,
      /: patterns\[1\]: Invalid regular expression/,
      /: correlate\.address\[0\]: has no \(\?<ip>\.\.\.\) group$/,
      /: correlate\.window: must be a duration/,
      /: session\.end\[0\]: names no session: it needs a \(\?<key>\.\.\.\) or \(\?<ip>\.\.\.\) group/,
      /: samples\.file: must be a file name in the same directory$/,
      /: samples\.provenance: must be one of captured, source, both$/,
    ];
    for (const pattern of expected)
      assert.ok(
        found.some((p) => pattern.test(p)),
        `${pattern} not in:\n${found.join("\n")}`,
      );
    assert.equal(found.length, expected.length, found.join("\n"));
  });

  it("a login pattern must yield an address: its own ip group, fields, or correlate", () => {
    const text = MINIMAL.replace("from (?<ip>[0-9a-f.:]+)$", "$");
    assert.match(
      problems(text).join("\n"),
      /patterns\[0\]: has no \(\?<ip>\.\.\.\) group and there is no correlate: key/,
    );
    assert.match(problems("{").join("\n"), /^\/x\/agents\.d\/srv\.yaml: not valid YAML/);
    assert.match(problems("- a\n").join("\n"), /must be a YAML mapping of keys/);
    assert.match(
      problems(`${MINIMAL}name: srv\n`).join("\n"),
      /not valid YAML: .*[Mm]ap keys must be unique/,
    );
  });

  it("a built-in profile must have samples", () => {
    assert.throws(
      () => parseProfile(MINIMAL, "/usr/share/poprelay/agents.d/srv.yaml", "built-in"),
      /srv\.yaml: samples: missing: a built-in profile has samples/,
    );
  });
});

describe("profile files: the site's agents.d and the built-ins", () => {
  it("a site profile of a built-in's name replaces it; loading a name reads only its file", async () => {
    const dir = await configDir({ "50-test.yaml": "agent: dovecot\n" });
    await mkdir(join(dir, "agents.d"));
    const site = (await readFile(join(builtinAgentsDir(), "dovecot.yaml"), "utf8")).replace(
      /^programs:\n {2}- ["']dovecot["']$/m,
      "programs:\n  - 'dovecot-site'",
    );
    await writeFile(join(dir, "agents.d", "dovecot.yaml"), site);
    // Another site file is broken: loading dovecot does not read it.
    await writeFile(join(dir, "agents.d", "broken.yaml"), "name: [\n");
    const profile = loadAgent("dovecot", dir);
    assert.equal(profile.source, "site");
    assert.deepEqual(profile.programs, ["dovecot-site"]);
    assert.equal(loadAgent("courier", dir).source, "built-in");
    assert.throws(
      () => loadAgent("nosuch", dir),
      /no such profile \(built in: .*dovecot.*; site: broken, dovecot\)/,
    );
  });

  it("match --agent takes a file; agents lists source and samples; check runs the samples", async () => {
    const dir = await scratch("poprelay-agents-");
    const conf = await configDir({ "50-test.yaml": "agent: srv\nmatch:\n  ignore: []\n" });
    const log = join(dir, "mail.log");
    await writeFile(log, `${LINE}\nNov 24 03:12:02 mail evil[9]: bob logged in from 203.0.113.9\n`);

    // A file given by path, outside agents.d.
    await writeFile(join(dir, "srv.yaml"), MINIMAL);
    const byFile = await poprelay([
      "match",
      "--agent",
      join(dir, "srv.yaml"),
      "--json",
      "--config-dir",
      conf,
      log,
    ]);
    assert.equal(byFile.code, 0, byFile.stderr);
    assert.deepEqual(JSON.parse(byFile.stdout), {
      user: "alice",
      ip: "198.51.100.7",
      agent: "srv",
      protocol: null,
    });

    // The same profile in the site's agents.d, with samples: by name.
    await mkdir(join(conf, "agents.d"));
    const samples = [
      "# captured for the test",
      '# expect: {"user": "alice", "ip": "198.51.100.7"}',
      LINE,
      "# reject: spoof  another program",
      "Nov 24 03:12:02 mail evil[9]: bob logged in from 203.0.113.9",
      "",
    ].join("\n");
    await writeFile(join(conf, "agents.d", "srv.samples"), samples);
    await writeFile(
      join(conf, "agents.d", "srv.yaml"),
      `${MINIMAL}samples: {file: srv.samples, provenance: captured}\n`,
    );
    const byName = await poprelay(["match", "--agent", "srv", "--json", "--config-dir", conf, log]);
    assert.equal(byName.stdout, byFile.stdout);

    const agents = await poprelay(["agents", "--config-dir", conf]);
    assert.equal(agents.code, 0, agents.stderr);
    assert.match(
      agents.stdout,
      /^srv {9}a test server\n {14}site: .*agents\.d\/srv\.yaml; samples captured from the running server$/m,
    );
    assert.match(
      agents.stdout,
      /^teapop .*\n {14}built-in: .*teapop\.yaml; samples read from source/m,
    );

    const check = await poprelay(["check", "--config-dir", conf]);
    assert.equal(check.code, 0, check.stderr);
    assert.match(
      check.stdout,
      /^agents ok: \d+ profile\(s\) \(\d+ built-in, 1 in .*agents\.d\), \d+ sample line\(s\) as annotated$/m,
    );

    // A sample that says the wrong thing fails check, naming its line.
    await writeFile(
      join(conf, "agents.d", "srv.samples"),
      samples.replace("# reject: spoof", "# reject: no-match"),
    );
    const failed = await poprelay(["check", "--config-dir", conf]);
    assert.equal(failed.code, 1);
    assert.match(failed.stderr, /srv\.samples:5: expected no-match, got spoof/);
  });
});

describe("match.regex written for whole lines", () => {
  it("is refused with the fix when it starts with the agent's own tag: it would never match again", async () => {
    const conf = await configDir({
      "50-test.yaml": [
        "agent: dovecot",
        "match:",
        `  regex: ${JSON.stringify(String.raw`dovecot: pop3-login: Login: user=<(?<user>.+?)>.*rip=(?<ip>\d+\.\d+\.\d+\.\d+)`)}`,
        "",
      ].join("\n"),
    });
    const check = await poprelay(["check", "--config-dir", conf]);
    assert.equal(check.code, 1);
    assert.match(
      check.stderr,
      /match\.regex: starts with the syslog tag "dovecot:", but it runs on the message after the tag .*remove the tag/,
    );
    // Without the tag it is accepted.
    await writeFile(
      join(conf, "conf.d", "50-test.yaml"),
      `agent: dovecot\nmatch:\n  regex: ${JSON.stringify(String.raw`^pop3-login: Login: user=<(?<user>.+?)>.*rip=(?<ip>\d+\.\d+\.\d+\.\d+)`)}\n`,
    );
    const ok = await poprelay(["check", "--config-dir", conf]);
    assert.equal(ok.code, 0, ok.stderr);
  });
});
