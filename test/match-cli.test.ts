import assert from "node:assert/strict";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, it } from "node:test";
import { configDir, poprelay, run, scratch } from "./helpers.js";
import { dovecotSkipReason, startDovecot, waitFor } from "./support/dovecot.js";
import { ensureJournald } from "./support/journald.js";
import { pop3Login } from "./support/mail-clients.js";

describe("poprelay match", () => {
  it("finds the same logins in a syslog file and in journalctl -o json of the same real Dovecot events", async (t) => {
    const skip = dovecotSkipReason() || (await ensureJournald());
    if (skip) return t.skip(skip);
    const dir = await scratch("poprelay-match-");
    const since = Math.floor(Date.now() / 1000);
    const dovecot = await startDovecot({ dir, users: { alice: "secret", bob: "hunter2" } });
    t.after(() => dovecot.stop());
    const logins = [
      { user: "alice", password: "secret", ip: "127.0.0.31" },
      { user: "bob", password: "hunter2", ip: "127.0.0.32" },
      { user: "alice", password: "wrong", ip: "127.0.0.33" },
    ];
    for (const l of logins) {
      const result = await pop3Login({
        port: dovecot.pop3Port,
        localAddress: l.ip,
        user: l.user,
        password: l.password,
      });
      assert.equal(result.ok, l.password !== "wrong");
    }
    const matches = ["_EXE=/usr/lib/dovecot/log", "SYSLOG_IDENTIFIER=dovecot", `--since=@${since}`];
    const journal = async (format: string) =>
      (await run("journalctl", ["--no-pager", `--output=${format}`, ...matches])).stdout;
    // The failed login is logged when the client leaves, after the auth failure delay.
    await waitFor("Dovecot's lines in the journal", async () =>
      (await journal("short")).includes("rip=127.0.0.33") ? true : undefined,
    );
    const syslogFile = join(dir, "mail.log");
    const jsonFile = join(dir, "journal.json");
    await writeFile(syslogFile, await journal("short"));
    await writeFile(jsonFile, await journal("json"));

    // Loopback clients are granted here; the shipped match.ignore would refuse them.
    const conf = await configDir({ "50-test.yaml": "match:\n  ignore: []\n" });
    const fromSyslog = await poprelay([
      "match",
      "--agent",
      "dovecot",
      "--json",
      "--config-dir",
      conf,
      syslogFile,
    ]);
    const fromJournal = await poprelay([
      "match",
      "--agent",
      "dovecot",
      "--json",
      "--config-dir",
      conf,
      jsonFile,
    ]);
    assert.equal(fromSyslog.code, 0, fromSyslog.stderr);
    assert.equal(fromJournal.code, 0, fromJournal.stderr);
    const expected = [
      { user: "alice", ip: "127.0.0.31", agent: "dovecot", protocol: "pop3" },
      { user: "bob", ip: "127.0.0.32", agent: "dovecot", protocol: "pop3" },
    ];
    const parse = (out: string) =>
      out
        .trim()
        .split("\n")
        .map((l) => JSON.parse(l));
    assert.deepEqual(parse(fromSyslog.stdout), expected);
    assert.deepEqual(parse(fromJournal.stdout), expected);
    assert.match(
      fromSyslog.stderr,
      // The POP3 sessions' ends are counted too (session-end), in the order of their counts.
      /^lines: \d+, matched: 2, rejected: \d+ \((?:no-match \d+|session-end \d+)(?:, (?:no-match|session-end) \d+)?\)\nseconds: [\d.]+, lines\/s: \d+\n$/,
    );
  });

  it("with -v says why a line was refused; without a profile name it is a usage error", async () => {
    const dir = await scratch("poprelay-match-");
    const file = join(dir, "mail.log");
    await writeFile(
      file,
      [
        "Nov 24 03:12:01 mail dovecot: pop3-login: Login: user=<a>, method=PLAIN, rip=198.51.100.7, lip=192.0.2.1",
        "Nov 24 03:12:02 mail mallory: pop3-login: Login: user=<a>, method=PLAIN, rip=6.6.6.6, lip=192.0.2.1",
        "Nov 24 03:12:03 mail dovecot: pop3-login: Login: user=<a>, method=PLAIN, rip=127.0.0.1, lip=192.0.2.1",
        "",
      ].join("\n"),
    );
    const result = await poprelay([
      "match",
      "--agent",
      "dovecot",
      "-v",
      "--config-dir",
      join(dir, "none"),
      file,
    ]);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout, '1: 198.51.100.7 "a" pop3\n');
    assert.match(result.stderr, /^2: spoof \(program "mallory" is not dovecot's\): Nov 24/m);
    assert.match(result.stderr, /^3: ignored \(127\.0\.0\.1\): Nov 24/m);
    assert.match(
      result.stderr,
      /^lines: 3, matched: 1, rejected: 2 \((spoof 1, ignored 1|ignored 1, spoof 1)\)$/m,
    );
    assert.equal((await poprelay(["match", file])).code, 2);
    assert.equal(
      (await poprelay(["match", "--agent", "nosuch", "--config-dir", join(dir, "none"), file]))
        .code,
      1,
    );
  });
});
