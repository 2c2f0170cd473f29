import assert from "node:assert/strict";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { isMap, isPair, isScalar, parse, parseDocument, type YAMLMap } from "yaml";
import { importLegacy } from "../src/config/legacy.js";
import { literalOf, splitLegacyTag } from "../src/config/legacy-profile.js";
import { translatePerlRegex } from "../src/config/legacy-regex.js";
import { loadConfig } from "../src/config/load.js";
import { builtinAgents } from "../src/matcher/agents.js";
import { createMatcher } from "../src/matcher/matcher.js";
import { parseProfile } from "../src/matcher/profile-file.js";
import { poprelay } from "./helpers.js";

const DOVECOT_LINE =
  "Nov 24 03:12:01 mail dovecot: pop3-login: Login: user=<alice>, method=PLAIN, rip=198.51.100.7, lip=127.0.0.1";
/** The kind of regex a Mail::POPRelay dovecot agent carried. */
const LEGACY_DOVECOT_REGEX = String.raw`dovecot: pop3-login: Login: user=<(.+?)>.*rip=(\d+\.\d+\.\d+\.\d+)`;

const BUILTINS = builtinAgents();
/** Issue 12: a remote client's MAIL FROM, which Postfix logs verbatim in its reject line. */
const POSTFIX_QUOTING =
  'Nov 24 03:12:01 mail postfix/smtpd[4321]: NOQUEUE: reject: RCPT from unknown[203.0.113.9]: 554 5.7.1 <x@x.example>: Relay access denied; from=<"dovecot: pop3-login: Login: user=<x>, rip=198.51.100.66"@x.example> to=<x@x.example> proto=ESMTP helo=<x>';

/** Imports `lines` (joined with newlines) and parses the YAML. */
function run(...lines: string[]) {
  const result = importLegacy(`${lines.join("\n")}\n`, "test.conf", BUILTINS);
  return { ...result, parsed: parse(result.yaml) as Record<string, Record<string, unknown>> };
}

/** The notes without the ones every minimal config gets for options it leaves out. */
function specificNotes(notes: string[]): string[] {
  return notes.filter(
    (note) => !/^(mailLogFile|mailLogRegExp|mailRelayFile|mailRelayPeriod) is not set/.test(note),
  );
}

/**
 * Every leaf key of the document, with the comment above it (which the parser attaches to the
 * map itself when the key is the map's first).
 */
function leafComments(node: YAMLMap, prefix = ""): Map<string, string | undefined> {
  const out = new Map<string, string | undefined>();
  for (const [index, pair] of node.items.entries()) {
    assert.ok(isPair(pair) && isScalar(pair.key));
    const path = `${prefix}${String(pair.key.value)}`;
    if (isMap(pair.value)) {
      for (const [key, comment] of leafComments(pair.value, `${path}.`)) out.set(key, comment);
    } else {
      out.set(
        path,
        pair.key.commentBefore ?? (index === 0 ? node.commentBefore : undefined) ?? undefined,
      );
    }
  }
  return out;
}

const EVERY_OPTION = [
  "# Mail::POPRelay configuration for dovecot + exim",
  "mailLogFile = /var/log/mail.log",
  `mailLogRegExp = ${LEGACY_DOVECOT_REGEX}`,
  "mailProgram = exim4",
  "mailProgramRestart = 1",
  "mailProgramRestartCommand = /usr/sbin/service %m reload",
  "mailRelayIsDatabase = 1",
  "makemapLocation = /usr/local/sbin/makemap",
  "mailRelayDatabaseType = btree",
  "mailRelayDatabaseCommand = /usr/sbin/exim_dbmbuild %r %r.db",
  "mailRelayDirectory = /var/spool/poprelay",
  "mailRelayFile = /etc/exim4/relay-hosts",
  "mailRelayFileFormat = %i: %m",
  "mailRelayPeriod = 1800",
];

describe("importLegacy: a config with every option", () => {
  const result = run(...EVERY_OPTION);

  it("maps every option to the exact YAML", () => {
    assert.deepEqual(result.parsed, {
      input: { source: "file", file: "/var/log/mail.log" },
      agent: "legacy-dovecot",
      relay: { period: 1800 },
      spool: { directory: "/var/spool/poprelay" },
      map: {
        mta: "exim",
        file: "/etc/exim4/relay-hosts",
        format: "%i: exim4",
        command: "/usr/sbin/exim_dbmbuild %r %r.db",
        restart: { enabled: true, command: "/usr/sbin/service exim4 reload" },
      },
    });
    assert.deepEqual(result.settings, result.parsed);
  });

  it("gives exactly these notes, also as the YAML header", () => {
    assert.deepEqual(result.notes, [
      "line 3: mailLogRegExp becomes the site profile agents.d/legacy-dovecot.yaml, assumed to be the program \"dovecot\" (the syslog tag the regex starts with): it runs only on that program's lines, on the text after the tag, so another program's line that quotes a login grants nothing; its journal trust rules are the dovecot profile's. Try it with `poprelay match --agent legacy-dovecot`",
      "line 5: the legacy manual says a restart is not needed when the relay file is a database, and restarting the MTA on every map change drops connections: consider mailProgramRestart = 0 (map.restart.enabled: false)",
      "line 8: makemapLocation is deprecated and ignored: mailRelayDatabaseCommand (line 10) is used",
      "line 9: mailRelayDatabaseType is deprecated and ignored: mailRelayDatabaseCommand (line 10) is used",
    ]);
    const header = parseDocument(result.yaml).commentBefore ?? "";
    assert.match(header, /imported from test\.conf/);
    assert.match(header, /- line 8: makemapLocation is deprecated and ignored/);
    assert.match(header, /- line 9: mailRelayDatabaseType is deprecated/);
  });

  it("comments every key with its legacy option and line", () => {
    const doc = parseDocument(result.yaml);
    assert.ok(isMap(doc.contents));
    const comments = leafComments(doc.contents);
    assert.deepEqual(Object.fromEntries(comments), {
      "input.source":
        " from mailLogFile (line 2): the legacy tool tailed this file (auto would prefer the journal)",
      "input.file": " from mailLogFile (line 2)",
      agent:
        " from mailLogRegExp (line 3): the site profile agents.d/legacy-dovecot.yaml; $1 → (?<user>…), $2 → (?<ip>…)",
      "relay.period": " from mailRelayPeriod (line 14), in seconds",
      "spool.directory": " from mailRelayDirectory (line 11)",
      "map.mta": " from mailProgram (line 4)",
      "map.file": " from mailRelayFile (line 12)",
      "map.format": ' from mailRelayFileFormat (line 13); %m expanded to "exim4"',
      "map.command": " from mailRelayDatabaseCommand (line 10)",
      "map.restart.enabled": " from mailProgramRestart (line 5)",
      "map.restart.command": ' from mailProgramRestartCommand (line 6); %m expanded to "exim4"',
    });
  });

  it("emits a site profile that grants a real Dovecot line, and not a line quoting one", () => {
    const profile = siteProfile(result.profile);
    assert.deepEqual(profile.programs, ["dovecot"]);
    assert.deepEqual(
      profile.journal,
      BUILTINS.find((p) => p.name === "dovecot")?.journal,
      "the dovecot profile's trust rules",
    );
    const match = createMatcher({ profile, ignore: [], allow: [] });
    const now = new Date(2026, 10, 27);
    const real = match({ kind: "line", text: DOVECOT_LINE }, now);
    assert.ok(real.accepted);
    assert.deepEqual([real.login.user, real.login.ip], ["alice", "198.51.100.7"]);
    assert.equal(match({ kind: "line", text: POSTFIX_QUOTING }, now).accepted, false);
    const logger = DOVECOT_LINE.replace("dovecot:", "sshd:");
    assert.equal(match({ kind: "line", text: logger }, now).accepted, false);
  });
});

/** The imported profile, validated as `poprelay check` validates a site profile. */
function siteProfile(made: ReturnType<typeof importLegacy>["profile"]) {
  assert.ok(made, "a profile was made");
  return parseProfile(made.yaml, `/etc/poprelay/${made.file}`, "site");
}

describe("importLegacy: the YAML as poprelay loads it", () => {
  it("passes the config validator (no unknown keys, valid values)", async () => {
    const dir = await mkdtemp(join(tmpdir(), "poprelay-legacy-"));
    try {
      await mkdir(join(dir, "conf.d"));
      await writeFile(join(dir, "conf.d", "50-legacy.yaml"), run(...EVERY_OPTION).yaml);
      const { config } = await loadConfig(dir, "dovecot");
      assert.equal(config.input.source, "file");
      assert.equal(config.relay.period, 1800);
      assert.deepEqual(config.map.restart, {
        enabled: true,
        command: "/usr/sbin/service exim4 reload",
      });
      await writeFile(join(dir, "conf.d", "50-legacy.yaml"), run().yaml);
      const defaults = await loadConfig(dir, "dovecot");
      assert.equal(defaults.config.map.type, "none");
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe("importLegacy: %m", () => {
  it("expands %m to the legacy mailProgram in formats and commands, keeps %r and %i", () => {
    const { parsed } = run(
      "mailProgram = exim4",
      "mailRelayIsDatabase = 1",
      "mailRelayDatabaseCommand = /usr/sbin/%m-build %r < %r",
      "mailRelayFileFormat = %i %m %r",
      "mailProgramRestart = yes",
    );
    assert.deepEqual(parsed.map, {
      mta: "exim",
      format: "%i exim4 %r",
      command: "/usr/sbin/exim4-build %r < %r",
      restart: { enabled: true, command: "/etc/init.d/exim4 restart" },
    });
  });

  it("uses the legacy default sendmail when mailProgram is not set", () => {
    const { parsed, yaml } = run(
      "mailRelayIsDatabase = 1",
      "mailRelayDatabaseCommand = makemap hash %r.%m < %r",
    );
    assert.equal(parsed.map?.mta, "sendmail");
    assert.equal(parsed.map?.command, "makemap hash %r.sendmail < %r");
    assert.match(yaml, /# mailProgram is not set: the legacy default sendmail/);
  });

  it("maps an unknown mail program to plain, with a note, and expands it literally", () => {
    const { parsed, notes } = run("mailProgram = my$&mta", "mailRelayFileFormat = %m:%i");
    assert.equal(parsed.map?.mta, "plain");
    assert.equal(parsed.map?.format, "my$&mta:%i");
    assert.ok(notes.some((n) => n.startsWith('line 1: mailProgram "my$&mta" is not postfix')));
  });

  it("recognises the MTA in service names and paths", () => {
    const mta = (program: string) => run(`mailProgram = ${program}`).parsed.map?.mta;
    assert.equal(mta("postfix"), "postfix");
    assert.equal(mta("Sendmail"), "sendmail");
    assert.equal(mta("/usr/sbin/sendmail"), "sendmail");
    assert.equal(mta("exim"), "exim");
    assert.equal(mta("qmail"), "qmail");
    assert.equal(mta("courier"), "plain");
    const { parsed, notes } = run("mailProgram = qmail-send");
    assert.equal(parsed.map?.mta, "qmail");
    assert.deepEqual(specificNotes(notes), [
      'line 1: mailProgram "qmail-send" is taken as map.mta: qmail',
    ]);
  });
});

describe("importLegacy: mailRelayIsDatabase", () => {
  it("0 (and not set): no database step, format %i", () => {
    for (const lines of [["mailRelayIsDatabase = 0"], []]) {
      const { parsed, notes } = run(...lines);
      assert.deepEqual(parsed.map, { mta: "sendmail", format: "%i", type: "none" });
      assert.deepEqual(specificNotes(notes), []);
    }
  });

  it("1: format %i RELAY and the legacy default makemap command", () => {
    const { parsed, yaml, notes } = run("mailRelayIsDatabase = 1");
    assert.deepEqual(parsed.map, {
      mta: "sendmail",
      format: "%i RELAY",
      command: "/usr/sbin/makemap hash %r < %r",
    });
    assert.deepEqual(specificNotes(notes), []);
    assert.match(yaml, /poprelay's own default differs per MTA/);
  });

  it("0 ignores a database command, with a note", () => {
    const { parsed, notes } = run(
      "mailRelayIsDatabase = 0",
      "mailRelayDatabaseCommand = /usr/sbin/postmap %r",
    );
    assert.equal(parsed.map?.command, undefined);
    assert.equal(parsed.map?.type, "none");
    assert.deepEqual(specificNotes(notes), [
      "line 2: mailRelayDatabaseCommand is ignored because mailRelayIsDatabase is 0, as the legacy tool ignored it",
    ]);
  });

  it("folds the deprecated makemapLocation and mailRelayDatabaseType into map.command", () => {
    const both = run(
      "mailRelayIsDatabase = 1",
      "makemapLocation = /usr/local/sbin/makemap",
      "mailRelayDatabaseType = btree",
    );
    assert.equal(both.parsed.map?.command, "/usr/local/sbin/makemap btree %r < %r");
    assert.deepEqual(specificNotes(both.notes), [
      "line 2: makemapLocation is deprecated; folded into map.command (set that instead, it is mailRelayDatabaseCommand)",
      "line 3: mailRelayDatabaseType is deprecated; folded into map.command (set that instead, it is mailRelayDatabaseCommand)",
    ]);
    assert.match(
      both.yaml,
      /# from the deprecated makemapLocation \(line 2\) and mailRelayDatabaseType \(line 3\)/,
    );
    const typeOnly = run("mailRelayIsDatabase = 1", "mailRelayDatabaseType = btree");
    assert.equal(typeOnly.parsed.map?.command, "/usr/sbin/makemap btree %r < %r");
    const locationOnly = run("mailRelayIsDatabase = true", "makemapLocation = /opt/makemap");
    assert.equal(locationOnly.parsed.map?.command, "/opt/makemap hash %r < %r");
  });

  it("reads yes/no words as meant, noting where Perl disagreed", () => {
    const no = run("mailRelayIsDatabase = no");
    assert.equal(no.parsed.map?.type, "none");
    assert.deepEqual(specificNotes(no.notes), [
      "line 1: mailRelayIsDatabase = no is read as 0; beware that the legacy tool (Perl truth: only 0 and empty are false) took it as 1",
    ]);
    const two = run("mailRelayIsDatabase = 2");
    assert.equal(two.parsed.map?.format, "%i RELAY");
    assert.equal(specificNotes(two.notes).length, 1);
  });
});

describe("importLegacy: restart", () => {
  it("emits the legacy default restart command with a systemctl suggestion", () => {
    const { parsed, notes } = run("mailProgram = postfix", "mailProgramRestart = 1");
    assert.deepEqual(parsed.map?.restart, {
      enabled: true,
      command: "/etc/init.d/postfix restart",
    });
    assert.deepEqual(specificNotes(notes), [
      "line 2: map.restart.command is the legacy default and runs an init script; under systemd prefer `systemctl restart postfix`",
    ]);
  });

  it("maps restart off without inventing a command", () => {
    const { parsed, notes } = run("mailProgramRestart = false");
    assert.deepEqual(parsed.map?.restart, { enabled: false });
    assert.equal(specificNotes(notes).length, 1);
  });
});

describe("importLegacy: lines and values", () => {
  it("is lenient about spacing, = in values, CRLF, a BOM and indented comments", () => {
    const result = importLegacy(
      "\uFEFF  # comment\r\nmailRelayFile=/etc/mail/relay\r\n\r\n  mailRelayFileFormat   =  %i=RELAY  \t\r\n",
      "crlf.conf",
    );
    const parsed = parse(result.yaml);
    assert.equal(parsed.map.file, "/etc/mail/relay");
    assert.equal(parsed.map.format, "%i=RELAY");
    assert.deepEqual(specificNotes(result.notes), []);
  });

  it("notes a malformed line by number", () => {
    const { notes } = run("# ok", "mailRelayFile /etc/mail/relay", "= x", "just words");
    assert.deepEqual(specificNotes(notes), [
      'line 2: not an "option = value" line, ignored: "mailRelayFile /etc/mail/relay" (missing "=" after mailRelayFile?)',
      'line 3: not an "option = value" line, ignored: "= x"',
      'line 4: not an "option = value" line, ignored: "just words"',
    ]);
  });

  it("notes unknown options, suggesting a near miss", () => {
    const { parsed, notes } = run(
      "maillogfile = /var/log/maillog",
      "mailRelayPeriode = 60",
      "colour = blue",
    );
    assert.equal(parsed.input, undefined);
    assert.equal(parsed.relay, undefined);
    assert.deepEqual(specificNotes(notes), [
      'line 1: unknown option "maillogfile", ignored (did you mean mailLogFile? option names are case-sensitive)',
      'line 2: unknown option "mailRelayPeriode", ignored (did you mean mailRelayPeriod? option names are case-sensitive)',
      'line 3: unknown option "colour", ignored',
    ]);
  });

  it("lets the later of two settings win, with a note", () => {
    const { parsed, notes, yaml } = run("mailRelayPeriod = 600", "mailRelayPeriod = 900");
    assert.equal(parsed.relay?.period, 900);
    assert.deepEqual(specificNotes(notes), [
      "line 2: mailRelayPeriod is set again (also on line 1); the later value wins, as in the legacy tool",
    ]);
    assert.match(yaml, /# from mailRelayPeriod \(line 2\), in seconds\n {2}period: 900\n/);
  });

  it("lets a later empty value unset an option, and a later value replace an empty one", () => {
    const emptied = run("mailRelayPeriod = 600", "mailRelayPeriod =");
    assert.equal(emptied.parsed.relay, undefined);
    assert.deepEqual(specificNotes(emptied.notes), [
      "line 2: mailRelayPeriod is set again (also on line 1); the later value wins, as in the legacy tool",
      "line 2: mailRelayPeriod is empty, so it is taken as not set: the legacy tool has no default, so relay.period is left to poprelay's default",
    ]);
    const filled = run("mailRelayPeriod =", "mailRelayPeriod = 60");
    assert.equal(filled.parsed.relay?.period, 60);
    assert.deepEqual(specificNotes(filled.notes), [
      "line 2: mailRelayPeriod is set again (also on line 1); the later value wins, as in the legacy tool",
    ]);
  });

  it("leaves out a bad period, with a note", () => {
    for (const bad of ["0", "-5", "30m", "1.5", "1e3", "99999999999"]) {
      const { parsed, notes } = run(`mailRelayPeriod = ${bad}`);
      assert.equal(parsed.relay, undefined, bad);
      const specific = specificNotes(notes);
      assert.equal(specific.length, 1, bad);
      assert.match(specific[0] ?? "", /^line 1: mailRelayPeriod /, bad);
    }
  });

  it("notes empty values and missing required options", () => {
    const { parsed, notes } = run("mailRelayFile =", "mailProgram =");
    assert.equal(parsed.map?.file, undefined);
    assert.equal(parsed.map?.mta, "sendmail");
    assert.deepEqual(notes, [
      "line 1: mailRelayFile is empty, so it is taken as not set: the legacy tool has no default, so map.file is left to poprelay's default (/var/lib/poprelay/relay)",
      "line 2: mailProgram is empty, so it is taken as not set: the legacy default sendmail applies",
      "mailLogFile is not set: the legacy tool read /var/log/maillog, poprelay reads the journal when it can and /var/log/mail.log otherwise (input.source: auto); set input.source: file and input.file to keep reading a file",
      "mailLogRegExp is not set: the legacy agent supplied its regex; poprelay uses the regex of its agent profile (see `poprelay agents`; the agent is the instance name or `agent:`)",
      "mailRelayPeriod is not set: the legacy tool has no default, so relay.period is left to poprelay's default",
    ]);
  });

  it("keeps a relative path, with a note, so that the validator rejects it", () => {
    const { parsed, notes } = run(
      "mailRelayFile = relay",
      "mailRelayDirectory = /var/spool/poprelay",
    );
    assert.equal(parsed.map?.file, "relay");
    assert.deepEqual(specificNotes(notes), [
      'line 1: mailRelayFile "relay" is not an absolute path, which poprelay requires: it is imported as is, so that `poprelay check` rejects it until you fix it',
    ]);
  });

  it("quotes values so that they read back as the same strings", () => {
    const { parsed } = run(
      "mailLogFile = /var/log/mail log #1",
      "mailRelayFile = yes",
      "mailRelayFileFormat = %i: {RELAY} 'x' \"y\"",
    );
    assert.equal(parsed.input?.file, "/var/log/mail log #1");
    assert.equal(parsed.map?.file, "yes");
    assert.equal(parsed.map?.format, "%i: {RELAY} 'x' \"y\"");
  });
});

describe("importLegacy: mailLogRegExp", () => {
  it("strips surrounding slashes or quotes, with a note", () => {
    for (const value of [
      `/${LEGACY_DOVECOT_REGEX}/`,
      `qr/${LEGACY_DOVECOT_REGEX}/o`,
      `'${LEGACY_DOVECOT_REGEX}'`,
    ]) {
      const { parsed, notes, profile } = run(`mailLogRegExp = ${value}`);
      assert.equal(parsed.agent, "legacy-dovecot");
      const match = createMatcher({ profile: siteProfile(profile), ignore: [], allow: [] });
      const verdict = match({ kind: "line", text: DOVECOT_LINE }, new Date(2026, 10, 27));
      assert.equal(verdict.accepted && verdict.login.ip, "198.51.100.7", value);
      assert.ok(
        notes.some((n) => /^line 1: mailLogRegExp: the surrounding .* was removed/.test(n)),
      );
    }
  });

  it("leaves out what cannot be translated, with a note", () => {
    const cases: [string, RegExp][] = [
      [String.raw`user=<(\S++)>.*rip=(\S+)`, /possessive quantifiers/],
      [String.raw`(?i)user=<(\S+)>.*rip=(\S+)`, /inline flags such as \(\?i\)/],
      [String.raw`\Guser=<(\S+)>.*rip=(\S+)`, /\\G/],
      [String.raw`(?#the user)user=<(\S+)>.*rip=(\S+)`, /\(\?#…\) comments/],
      [String.raw`user=<((?R)|\S+)>.*rip=(\S+)`, /recursion/],
      [String.raw`user=<(\S+)>(?>.*)rip=(\S+)`, /atomic groups/],
      [String.raw`user=<(\S+)>\h*rip=(\S+)`, /\\h/],
      [String.raw`/user=<(\S+)>.*rip=(\S+)/i`, /the \/i flag/],
      [String.raw`user=<\S+>.*rip=(\S+)`, /it has 1 capturing group/],
      [String.raw`user=<(\S+)>.*rip=(\S+`, /does not compile in JavaScript/],
    ];
    for (const [perl, problem] of cases) {
      const { parsed, notes, profile } = run(`mailLogRegExp = ${perl}`);
      assert.equal(parsed.agent, undefined, perl);
      assert.equal(profile, undefined, perl);
      const note = notes.find((n) => n.startsWith("line 1: mailLogRegExp not imported"));
      assert.match(note ?? "", problem, perl);
    }
  });
});

describe("importLegacy: mailLogRegExp is confined to the program it names", () => {
  it("reads the program from the regex's leading syslog tag, in the forms legacy regexes used", () => {
    const cases: [string, string, string][] = [
      [
        String.raw`vpop3d: \((\w+),(\d+\.\d+\.\d+\.\d+)\) Authenticated`,
        "vpop3d",
        String.raw`\((?<user>\w+),`,
      ],
      [
        String.raw`popper\[\d+\]: \((\w+),(\S+)\) Authenticated\.`,
        "popper",
        String.raw`\((?<user>\w+),`,
      ],
      [String.raw`.*cucipop\[\d+\]:\s+(\S+) (\S+) \d+`, "cucipop", String.raw`(?<user>\S+) `],
      [String.raw`^\S+ cyrus\/pop3\[\d+\]: login: \S+ \[(\S+)\] (\S+)`, "cyrus/pop3", "login: "],
    ];
    for (const [perl, program, start] of cases) {
      const { profile, notes } = run(`mailLogRegExp = ${perl}`);
      assert.equal(profile?.program, program, perl);
      assert.ok(
        notes.some((n) => n.includes(`assumed to be the program "${program}"`)),
        perl,
      );
      const pattern = siteProfile(profile).patterns[0]?.source ?? "";
      assert.ok(pattern.startsWith(`^(?:${start}`), `${perl}: ${pattern}`);
    }
  });

  it("a program no built-in profile logs under gets no journal trust rules, and says so", () => {
    const { profile, notes } = run(
      String.raw`mailLogRegExp = mypop3d: \((\w+),(\d+\.\d+\.\d+\.\d+)\) Authenticated`,
    );
    assert.deepEqual(siteProfile(profile).journal, []);
    assert.ok(notes.some((n) => /no built-in profile logs under that tag/.test(n)));
    const match = createMatcher({ profile: siteProfile(profile), ignore: [], allow: [] });
    const now = new Date(2026, 10, 27);
    const ok = match(
      { kind: "line", text: "Nov 24 03:12:01 h mypop3d[7]: (alice,198.51.100.7) Authenticated" },
      now,
    );
    assert.equal(ok.accepted && ok.login.ip, "198.51.100.7");
    // A journal entry under that tag, but from no process the profile trusts.
    const forged = match(
      {
        kind: "journal",
        fields: {
          _UID: "1000",
          SYSLOG_IDENTIFIER: "mypop3d",
          MESSAGE: "(alice,198.51.100.7) Authenticated",
        },
      },
      now,
    );
    assert.equal(!forged.accepted && forged.reason, "spoof");
  });

  it("a regex that names no program is not imported: it could not be confined", () => {
    const { parsed, profile, notes } = run(
      String.raw`mailLogRegExp = user=<(.+?)>.*rip=(\d+\.\d+\.\d+\.\d+)`,
    );
    assert.equal(profile, undefined);
    assert.equal(parsed.agent, undefined);
    assert.ok(
      notes.some((n) =>
        /^line 1: mailLogRegExp not imported: it does not start with the server's syslog tag/.test(
          n,
        ),
      ),
      notes.join("\n"),
    );
  });

  it("splits the tag and finds a literal for the prefilter", () => {
    assert.deepEqual(splitLegacyTag(String.raw`dovecot\[\d+\]:\s+imap-login: (x)`), {
      program: "dovecot",
      rest: "imap-login: (x)",
    });
    assert.equal(typeof splitLegacyTag("(x) (y)"), "string");
    assert.equal(
      literalOf(String.raw`imap-login: Login: user=<(?<user>.+?)>.*rip=(?<ip>\S+)`),
      "imap-login: Login: user=<",
    );
    assert.equal(literalOf("a|b"), "");
    assert.equal(literalOf(String.raw`ab?cd\.e[x]`), "cd.e");
  });
});

describe("translatePerlRegex", () => {
  const js = (perl: string) => {
    const result = translatePerlRegex(perl);
    assert.deepEqual(result.problems, [], perl);
    return result.source;
  };

  it("names the first two capturing groups user and ip", () => {
    assert.equal(
      js(String.raw`(\w+) from (\S+) (\d+)`),
      String.raw`(?<user>\w+) from (?<ip>\S+) (\d+)`,
    );
  });

  it("skips escaped parentheses", () => {
    assert.equal(
      js(String.raw`login \(([^)]+)\) from \[(\d+\.\d+\.\d+\.\d+)\]`),
      String.raw`login \((?<user>[^)]+)\) from \[(?<ip>\d+\.\d+\.\d+\.\d+)\]`,
    );
  });

  it("skips parentheses inside character classes", () => {
    assert.equal(
      js(String.raw`[(]x([^(]+)[)] ([\d.]+)`),
      String.raw`[(]x(?<user>[^(]+)[)] (?<ip>[\d.]+)`,
    );
    assert.equal(
      js(String.raw`[\](](\w+) ([]0-9.]+)`),
      String.raw`[\](](?<user>\w+) (?<ip>[\]0-9.]+)`,
    );
  });

  it("skips non-capturing groups and lookarounds", () => {
    const source = js(
      String.raw`(?:pop3|imap)-login: (?=Login)Login: user=<([^>]+)>(?!x).*?(?<=rip=)((?:\d{1,3}\.){3}\d{1,3})(?<!\.)`,
    );
    assert.equal(
      source,
      String.raw`(?:pop3|imap)-login: (?=Login)Login: user=<(?<user>[^>]+)>(?!x).*?(?<=rip=)(?<ip>(?:\d{1,3}\.){3}\d{1,3})(?<!\.)`,
    );
    assert.deepEqual(
      { ...new RegExp(source as string).exec(DOVECOT_LINE)?.groups },
      { user: "alice", ip: "198.51.100.7" },
    );
  });

  it("translates anchors, POSIX classes, escapes and Perl's named groups", () => {
    assert.equal(js(String.raw`\A(\S+) (\S+)\z`), String.raw`^(?<user>\S+) (?<ip>\S+)$`);
    assert.equal(js(String.raw`(\S+) (\S+)\Z`), String.raw`(?<user>\S+) (?<ip>\S+)$`);
    assert.equal(js("([[:alnum:]_]+) ([[:digit:].]+)"), "(?<user>[A-Za-z0-9_]+) (?<ip>[0-9.]+)");
    assert.equal(
      js(String.raw`(?<u>\S+)\-(?P<a>\S+) \k<a>`),
      String.raw`(?<user>\S+)-(?<ip>\S+) \k<ip>`,
    );
    assert.equal(js(String.raw`(\S+) (\S+) \g{-1}\g1`), String.raw`(?<user>\S+) (?<ip>\S+) \2\1`);
    assert.equal(js(String.raw`\x{41}(\S+)\e(\S+)\:`), String.raw`\x41(?<user>\S+)\x1B(?<ip>\S+):`);
  });

  it("escapes lone braces, so that the source also compiles with the u flag", () => {
    const source = js(String.raw`a{b} (\w{2,}) (x{3})}`);
    assert.equal(source, String.raw`a\{b\} (?<user>\w{2,}) (?<ip>x{3})\}`);
    assert.doesNotThrow(() => new RegExp(source as string, "u"));
  });

  it("reports every construct it cannot translate", () => {
    const result = translatePerlRegex(String.raw`(?i)(\S++) (\p{L}+) \v`);
    assert.equal(result.source, undefined);
    assert.deepEqual(result.problems, [
      "inline flags such as (?i)",
      "possessive quantifiers (*+, ++, ?+, {n}+)",
      "\\p (Unicode property: needs the u flag)",
      "\\v (vertical whitespace; \\v is a vertical tab in JavaScript)",
    ]);
  });
});

describe("poprelay import-legacy: the site profile on disk", () => {
  it("writes agents.d/legacy-PROGRAM.yaml, never over another file, and match grants no quoted login", async () => {
    const dir = await mkdtemp(join(tmpdir(), "poprelay-legacy-cli-"));
    try {
      const legacy = join(dir, "poprelay.conf");
      await writeFile(legacy, `mailLogRegExp = ${LEGACY_DOVECOT_REGEX}\n`);
      const conf = join(dir, "etc");
      await mkdir(join(conf, "conf.d"), { recursive: true });
      const imported = await poprelay(["import-legacy", "--config-dir", conf, legacy]);
      assert.equal(imported.code, 0, imported.stderr);
      assert.match(
        imported.stderr,
        /wrote the site profile .*agents\.d\/legacy-dovecot\.yaml \(program dovecot\)/,
      );
      assert.match(imported.stderr, /assumed to be the program "dovecot"/);
      await writeFile(
        join(conf, "conf.d", "50-legacy.yaml"),
        `${imported.stdout}match:\n  ignore: []\n`,
      );

      const log = join(dir, "mail.log");
      await writeFile(log, `${POSTFIX_QUOTING}\n${DOVECOT_LINE}\n`);
      const matched = await poprelay([
        "match",
        "--agent",
        "legacy-dovecot",
        "--json",
        "--config-dir",
        conf,
        log,
      ]);
      assert.equal(matched.code, 0, matched.stderr);
      assert.deepEqual(
        matched.stdout
          .trim()
          .split("\n")
          .map((line) => JSON.parse(line)),
        [{ user: "alice", ip: "198.51.100.7", agent: "legacy-dovecot", protocol: null }],
      );
      const check = await poprelay(["check", "--config-dir", conf]);
      assert.equal(check.code, 0, check.stderr);

      // Run again: the same file is left alone; a changed one is never overwritten.
      assert.equal((await poprelay(["import-legacy", "--config-dir", conf, legacy])).code, 0);
      await writeFile(join(conf, "agents.d", "legacy-dovecot.yaml"), "# the admin's own\n");
      const refused = await poprelay(["import-legacy", "--config-dir", conf, legacy]);
      assert.equal(refused.code, 1);
      assert.match(
        refused.stderr,
        /legacy-dovecot\.yaml: exists and differs from the imported profile/,
      );
      assert.equal(
        await readFile(join(conf, "agents.d", "legacy-dovecot.yaml"), "utf8"),
        "# the admin's own\n",
      );
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
