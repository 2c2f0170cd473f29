import assert from "node:assert/strict";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { describe, it } from "node:test";
import { parseDuration } from "../src/config/duration.js";
import { ConfigError, defaultConfig, loadConfig } from "../src/config/load.js";
import { journalMatches, profileFor } from "../src/daemon/components.js";
import { configDir, poprelay, scratch } from "./helpers.js";

/** The problems a config dir produces, or [] when it loads. */
async function problems(dir: string, instance = ""): Promise<string[]> {
  try {
    await loadConfig(dir, instance);
    return [];
  } catch (error) {
    assert.ok(error instanceof ConfigError, `expected ConfigError, got ${error}`);
    return error.problems;
  }
}

describe("durations", () => {
  const good: [unknown, number][] = [
    [1800, 1800],
    ["1800", 1800],
    ["90s", 90],
    ["30m", 1800],
    ["1h", 3600],
    ["2d", 172800],
    [" 5m ", 300],
  ];
  for (const [input, seconds] of good) {
    it(`${JSON.stringify(input)} is ${seconds} s`, () =>
      assert.equal(parseDuration(input), seconds));
  }
  for (const bad of [
    "",
    "0",
    "0s",
    "-5",
    "1.5h",
    "5 minutes",
    "1h30m",
    "10y",
    "400d",
    null,
    true,
    {},
  ]) {
    it(`refuses ${JSON.stringify(bad)}`, () => assert.throws(() => parseDuration(bad)));
  }
});

describe("durations in every spelling, with the same bounds", () => {
  const cases: [string, RegExp][] = [
    ["9999999999999999999999", /relay\.period: must be at most 366 days/],
    ['"9999999999999999999999"', /relay\.period: must be at most 366 days/],
    ["31708800", /relay\.period: must be at most 366 days/],
    ["3e3", /:2: relay\.period: 3e3 is read as 3000: write numbers in decimal digits/],
    ["0x10", /:2: relay\.period: 0x10 is read as 16: write numbers in decimal digits/],
    ['"3e3"', /relay\.period: must be a duration such as 1800/],
    ['"0x10"', /relay\.period: must be a duration such as 1800/],
    ["1.5", /relay\.period: 1\.5 is read as 1\.5/],
  ];
  for (const [spelling, reason] of cases) {
    it(`relay.period: ${spelling} is refused, naming the key`, async () => {
      const dir = await configDir({ "10.yaml": `relay:\n  period: ${spelling}\n` });
      const found = await problems(dir);
      assert.ok(
        found.some((p) => reason.test(p)),
        found.join("\n"),
      );
    });
  }
  it("spool.redis.timeout and instance overrides have the same bound", async () => {
    const dir = await configDir({
      "10.yaml":
        "spool:\n  redis:\n    timeout: 9999999999999999999999\ninstances:\n  x:\n    relay:\n      period: 0x20\n",
    });
    const found = (await problems(dir)).join("\n");
    assert.match(found, /spool\.redis\.timeout: must be at most 366 days/);
    assert.match(found, /instances\.x\.relay\.period: 0x20 is read as 32/);
  });
  it("the largest period is accepted in every plain spelling", async () => {
    for (const spelling of ["31622400", '"31622400"', "366d", "8784h"]) {
      const dir = await configDir({ "10.yaml": `relay:\n  period: ${spelling}\n` });
      assert.equal((await loadConfig(dir)).config.relay.period, 31622400);
    }
  });
});

describe("the spool's directory is its own", () => {
  for (const [what, yaml, reason] of [
    [
      "map.file inside spool.directory",
      "spool:\n  directory: /srv/spool\nmap:\n  file: /srv/spool/relay\n",
      /:4: map\.file: \/srv\/spool\/relay is in spool\.directory \(\/srv\/spool\)/,
    ],
    [
      "map.file below spool.directory",
      "spool:\n  directory: /srv/spool\nmap:\n  file: /srv/spool/maps/relay\n",
      /map\.file: .* is in spool\.directory/,
    ],
    [
      "state.directory inside spool.directory",
      "spool:\n  directory: /srv/spool\nstate:\n  directory: /srv/spool/state\n",
      /:4: state\.directory: \/srv\/spool\/state is in spool\.directory/,
    ],
    [
      "state.directory the same as spool.directory",
      "spool:\n  directory: /srv/spool\nstate:\n  directory: /srv/spool/\n",
      /state\.directory: .* is in spool\.directory/,
    ],
  ] as const) {
    it(`refuses ${what}`, async () => {
      const dir = await configDir({ "10.yaml": yaml });
      const found = await problems(dir);
      assert.ok(
        found.some((p) => reason.test(p)),
        found.join("\n"),
      );
    });
  }
  it("accepts the spool below the map's and the state's directory (the defaults' layout)", async () => {
    const dir = await configDir({
      "10.yaml":
        "spool:\n  directory: /srv/p/spool\nstate:\n  directory: /srv/p\nmap:\n  file: /srv/p/relay\n",
    });
    assert.deepEqual(await problems(dir), []);
  });
});

describe("loading conf.d", () => {
  it("merges files in lexical order, later wins, lists merge by replacement", async () => {
    const dir = await configDir({
      "10-base.yaml":
        "relay:\n  period: 10m\nmap:\n  mta: sendmail\nmatch:\n  ignore: [10.0.0.0/8]\n",
      "90-local.yaml": "relay:\n  period: 1h\nmatch:\n  allow: [192.0.2.0/24]\n",
      "50-middle.yaml": "relay:\n  period: 90s\nmap:\n  file: /srv/relay\n",
      README: "not yaml: [",
      "60-old.yaml.dpkg-old": "relay: {period: 1}",
    });
    const { config, files } = await loadConfig(dir);
    assert.deepEqual(
      files.map((f) => f.split("/").pop()),
      ["10-base.yaml", "50-middle.yaml", "90-local.yaml"],
    );
    assert.equal(config.relay.period, 3600);
    assert.equal(config.map.mta, "sendmail");
    assert.equal(config.map.file, "/srv/relay");
    assert.deepEqual(config.match.ignore, ["10.0.0.0/8"]);
    assert.deepEqual(config.match.allow, ["192.0.2.0/24"]);
    assert.equal(config.input.source, "auto");
  });

  it("applies instances.NAME after every file's general settings; agent defaults to the instance", async () => {
    const dir = await configDir({
      "10-a.yaml": "relay:\n  period: 10m\ninstances:\n  courier:\n    relay:\n      period: 5m\n",
      "20-b.yaml":
        "relay:\n  period: 20m\ninstances:\n  dovecot:\n    input:\n      source: file\n",
    });
    const courier = await loadConfig(dir, "courier");
    assert.equal(courier.config.relay.period, 300);
    assert.equal(courier.config.agent, "courier");
    assert.equal(courier.config.input.source, "auto");
    const dovecot = await loadConfig(dir, "dovecot");
    assert.equal(dovecot.config.relay.period, 1200);
    assert.equal(dovecot.config.input.source, "file");
    const none = await loadConfig(dir);
    assert.equal(none.config.agent, "");
    assert.equal(none.config.relay.period, 1200);
  });

  it("an explicit agent beats the instance name", async () => {
    const dir = await configDir({ "10.yaml": "agent: ipop3d\n" });
    assert.equal((await loadConfig(dir, "whatever")).config.agent, "ipop3d");
  });

  it("an empty file is allowed; an empty conf.d is a clear error", async () => {
    assert.deepEqual(await problems(await configDir({ "10.yaml": "" })), []);
    const [message] = await problems(await configDir({}));
    assert.match(message ?? "", /conf\.d: no \*\.yaml files/);
    const missing = join(await scratch(), "nowhere");
    assert.match(
      (await problems(missing))[0] ?? "",
      /nowhere\/conf\.d: cannot read the configuration directory \(ENOENT\)/,
    );
  });

  it("names file, line, key and reason for unknown keys and wrong types", async () => {
    const dir = await configDir({
      "10-a.yaml": [
        "agent: dovecot",
        "relay:",
        "  period: soon",
        "map:",
        "  mta: postfixx",
        "  restart:",
        "    enabled: yes",
        "period: 5m",
        "input:",
        "  journal: /var/log/journal",
        "match:",
        "  ignore: [10.0.0.0/33, 127.0.0.1]",
        "  allow: 192.0.2.0/24",
        "spool:",
        "  directory: relative/path",
        "  dirctory: /x",
        "",
      ].join("\n"),
    });
    const found = await problems(dir);
    const file = join(dir, "conf.d", "10-a.yaml");
    const expect = [
      `${file}:3: relay.period: must be a duration such as 1800, 90s, 30m or 1h: value was "soon"`,
      `${file}:5: map.mta: must be one of the possible values`,
      `${file}:7: map.restart.enabled: must be true or false`,
      `${file}:8: period: unknown key (did you mean relay.period?)`,
      `${file}:10: input.journal: must be a mapping of its keys, not a single value`,
      `${file}:12: match.ignore: item 0: "10.0.0.0/33": prefix length out of range`,
      `${file}:13: match.allow: must be a list`,
      `${file}:15: spool.directory: must be an absolute path`,
      `${file}:16: spool.dirctory: unknown key (did you mean spool.directory?)`,
    ];
    for (const prefix of expect) {
      assert.ok(
        found.some((p) => p.startsWith(prefix)),
        `missing ${prefix}\nin:\n${found.join("\n")}`,
      );
    }
    assert.equal(found.length, expect.length, found.join("\n"));
  });

  it("reports YAML syntax errors with line and column, in every file", async () => {
    const dir = await configDir({
      "10-a.yaml": "relay:\n  period: [1h\n",
      "20-b.yaml": "map:\n  mta: postfix\n  mta: exim\n",
      "30-c.yaml": "- just\n- a list\n",
    });
    const found = await problems(dir);
    assert.equal(found.length, 3, found.join("\n"));
    assert.match(found[0] ?? "", /10-a\.yaml:\d+:\d+: YAML: /);
    assert.match(found[1] ?? "", /20-b\.yaml:3:\d+: YAML: Map keys must be unique/);
    assert.match(found[2] ?? "", /30-c\.yaml: the file must be a mapping/);
  });

  it("validates instance sections with their full key path", async () => {
    const dir = await configDir({
      "10.yaml":
        "instances:\n  dovecot:\n    relay:\n      period: never\n    bogus: 1\n  'bad name!':\n    agent: x\n",
    });
    const found = await problems(dir);
    const file = join(dir, "conf.d", "10.yaml");
    assert.ok(
      found.some((p) =>
        p.startsWith(`${file}:4: instances.dovecot.relay.period: must be a duration`),
      ),
      found.join("\n"),
    );
    assert.ok(
      found.some((p) => p.startsWith(`${file}:5: instances.dovecot.bogus: unknown key`)),
      found.join("\n"),
    );
    assert.ok(
      found.some((p) => p.includes("instances.bad name!: not a valid instance name")),
      found.join("\n"),
    );
  });

  it("refuses a bad --instance name", async () => {
    const dir = await configDir({ "10.yaml": "" });
    assert.match((await problems(dir, "../etc"))[0] ?? "", /not a valid instance name/);
  });

  it("checks match.regex and map settings after merging, naming the file that set them", async () => {
    const dir = await configDir({
      "10.yaml": "match:\n  regex: 'Login: user=<(?<user>[^>]*)>'\n",
      "20.yaml": "map:\n  mta: exim\n  type: hash\n",
    });
    const found = await problems(dir);
    assert.ok(
      found.some((p) => /10\.yaml:2: match\.regex: needs a named group \(\?<ip>/.test(p)),
      found.join("\n"),
    );
    assert.ok(
      found.some((p) => /20\.yaml:3: map\.type: /.test(p)),
      found.join("\n"),
    );
    const broken = await configDir({ "10.yaml": "match:\n  regex: '(?<ip>['\n" });
    assert.match((await problems(broken))[0] ?? "", /match\.regex: not a valid regular expression/);
  });
});

describe("poprelay check", () => {
  it("exits 0 and prints the merged config with --print", async () => {
    const dir = await configDir({ "10.yaml": "relay:\n  period: 45m\n" });
    const result = await poprelay([
      "check",
      "--print",
      "--config-dir",
      dir,
      "--instance",
      "dovecot",
    ]);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /^# instance: dovecot$/m);
    assert.match(result.stdout, /^ {2}period: 2700$/m);
    assert.match(result.stdout, /^agent: dovecot$/m);
  });

  it("exits 1 naming file, key and reason; POPRELAY_CONFIG_DIR is honoured", async () => {
    const dir = await configDir({ "10.yaml": "relay:\n  period: -1\n" });
    const result = await poprelay(["check"], { POPRELAY_CONFIG_DIR: dir });
    assert.equal(result.code, 1);
    assert.match(result.stderr, /10\.yaml:2: relay\.period: must be longer than 0 seconds/);
    assert.doesNotMatch(result.stderr, /at .*\.js:\d+/, "no stack trace");
  });

  it("exits 2 on usage errors", async () => {
    assert.equal((await poprelay(["check", "--json"])).code, 2);
    assert.equal((await poprelay(["frobnicate"])).code, 2);
    assert.equal((await poprelay([])).code, 2);
    assert.equal((await poprelay(["add"])).code, 2);
    assert.equal((await poprelay(["--no-such-option"])).code, 2);
  });

  it("a directory with an empty conf.d exits 1 with a message, not a stack trace", async () => {
    const dir = await scratch();
    await mkdir(join(dir, "conf.d"));
    const result = await poprelay(["check", "--config-dir", dir]);
    assert.equal(result.code, 1);
    assert.match(result.stderr, /no \*\.yaml files/);
    assert.doesNotMatch(result.stderr, /at .*\.js:\d+/);
  });
});

describe("match.programs and match.trusted", () => {
  it("replace the agent's tags and trust rules, and become the journalctl matches", async () => {
    const dir = await configDir({
      "10.yaml": [
        "agent: dovecot",
        "match:",
        "  programs: [dovecot-b]",
        '  trusted: ["_SYSTEMD_UNIT=dovecot-b.service", "_EXE=/opt/dovecot/lib/log _UID=0"]',
        "input:",
        "  journal:",
        "    matches: [PRIORITY=6]",
        "",
      ].join("\n"),
    });
    const profile = profileFor((await loadConfig(dir)).config);
    assert.deepEqual(profile.programs, ["dovecot-b"]);
    assert.deepEqual(profile.journal, [
      { _SYSTEMD_UNIT: "dovecot-b.service" },
      { _EXE: "/opt/dovecot/lib/log", _UID: "0" },
    ]);
    assert.deepEqual(journalMatches(profile, ["PRIORITY=6"]), [
      "_SYSTEMD_UNIT=dovecot-b.service",
      "PRIORITY=6",
      "+",
      "_EXE=/opt/dovecot/lib/log",
      "_UID=0",
      "PRIORITY=6",
    ]);
  });

  it("refuse rules a process could satisfy by naming itself, and untrusted fields", async () => {
    const dir = await configDir({
      "10.yaml":
        'match:\n  trusted: ["_COMM=log", "SYSLOG_IDENTIFIER=dovecot", "_COMM=log _CMDLINE=x"]\n  programs: ["a b"]\n',
    });
    const found = await problems(dir);
    assert.match(
      found.join("\n"),
      /match\.trusted: item 0: "_COMM=log": _COMM and _CMDLINE are set by the process itself/,
    );
    assert.equal(found.length, 2, found.join("\n"));
    assert.match(found[1] ?? "", /match\.programs: item 0: "a b" is not a syslog tag/);
  });

  it("an unknown or missing agent is a clear error", () => {
    assert.throws(
      () => profileFor({ ...defaultConfig(), agent: "nosuch" }),
      /agent: "nosuch": no such profile \(built in: .*dovecot/,
    );
    assert.throws(() => profileFor(defaultConfig()), /agent: not set; run with --instance NAME/);
  });
});

describe("match.regex", () => {
  const check = async (regex: string) =>
    problems(await configDir({ "10.yaml": `match:\n  regex: ${JSON.stringify(regex)}\n` }));

  it("accepts a regex whose ip group requires an address", async () => {
    assert.deepEqual(
      await check(String.raw`^\S+ \((?<user>[^,]+),(?<ip>[\d.]+)\) Authenticated\.$`),
      [],
    );
    assert.deepEqual(
      await check(
        String.raw`rip=(?<ip>(?:\d{1,3}\.){3}\d{1,3}|[0-9a-f:]{2,39}), user=(?<user>\S+)`,
      ),
      [],
    );
  });

  it("refuses one whose ip group can match nothing at all", async () => {
    for (const regex of [
      String.raw`rip=(?<ip>[\d.]*)`,
      String.raw`rip=(?<ip>\S*), `,
      String.raw`(?<ip>[(]|\d+|)`,
    ]) {
      const found = await check(regex);
      assert.equal(found.length, 1, `${regex}: ${found.join("\n")}`);
      assert.match(
        found[0] ?? "",
        /match\.regex: the group \(\?<ip>.*\) can match an empty string/,
      );
    }
  });
});
