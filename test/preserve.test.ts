import assert from "node:assert/strict";
import { access, mkdir, readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, it, type TestContext } from "node:test";
import { LEGACY_MARKER, preservedLines } from "../src/config/legacy-preserve.js";
import { defaultConfig } from "../src/config/load.js";
import { firstForeignLine } from "../src/maps/ownership.js";
import { HEADER, resolveMap } from "../src/maps/resolve.js";
import { IN_CI, poprelay, ROOT, run, scratch } from "./helpers.js";

/** The site's own access rules, as a Mail::POPRelay site kept them above the marker. */
const SITE_LINES = [
  "# local access rules",
  "192.0.2.66 REJECT",
  "spammer@example.com REJECT",
  "10.1.2 RELAY",
  "",
];
const LEGACY_ACCESS = `${[...SITE_LINES, LEGACY_MARKER, "198.51.100.20 RELAY", "198.51.100.21 RELAY"].join("\n")}`;

describe("Mail::POPRelay's preserve marker", () => {
  it("keeps the lines above the marker, or the whole file without one, as generateRelayFile did", () => {
    assert.deepEqual(preservedLines(LEGACY_ACCESS), {
      text: `${SITE_LINES.join("\n")}\n`,
      lines: 5,
      marker: 6,
    });
    assert.deepEqual(preservedLines("a OK\nb OK\n"), {
      text: "a OK\nb OK\n",
      lines: 2,
      marker: undefined,
    });
    assert.deepEqual(preservedLines(`${LEGACY_MARKER}\n1.2.3.4 RELAY`), {
      text: "",
      lines: 0,
      marker: 1,
    });
  });
});

describe("a map write never replaces a file with lines of the site's own", () => {
  const resolved = resolveMap({ ...defaultConfig().map, mta: "sendmail", file: "/x/access" });
  it("accounts for the header, address lines in the MTA's spelling, site lines and the marker", () => {
    const ours = [
      HEADER,
      "Connect:192.0.2.1 RELAY",
      "Connect:IPv6:2001:db8::1 RELAY",
      "From:a@example.com REJECT",
      LEGACY_MARKER,
      "",
    ].join("\n");
    assert.equal(firstForeignLine(ours, resolved, "From:a@example.com REJECT\n"), undefined);
    assert.deepEqual(firstForeignLine(ours, resolved, ""), {
      number: 4,
      text: "From:a@example.com REJECT",
    });
    // Almost an address line: never taken for one.
    for (const line of [
      "Connect:192.0.2.1 RELAY RELAY",
      "Connect:192.0.2.001 RELAY",
      "Connect:2001:db8::1 RELAY",
      "Connect:IPv6:2001:DB8::1 RELAY",
      "Connect:192.0.2.0/24 RELAY",
      "192.0.2.1 RELAY",
    ]) {
      assert.deepEqual(
        firstForeignLine(`${line}\n`, resolved, ""),
        { number: 1, text: line },
        line,
      );
    }
  });

  it("takes Postfix's cidr lines, and the plain spelling an earlier release wrote under its header", () => {
    const postfix = resolveMap({ ...defaultConfig().map, mta: "postfix", file: "/x/relay" });
    const lines = ["198.51.100.7/32 OK", "2001:db8::1/128 OK", "198.51.100.8 OK", "2001:db8::2 OK"];
    assert.equal(firstForeignLine([HEADER, ...lines, ""].join("\n"), postfix, ""), undefined);
    // Without poprelay's header the plain spelling is a site line: never dropped.
    assert.deepEqual(firstForeignLine([...lines, ""].join("\n"), postfix, ""), {
      number: 3,
      text: "198.51.100.8 OK",
    });
    assert.deepEqual(firstForeignLine(`${HEADER}\n198.51.100.0/24 OK\n`, postfix, ""), {
      number: 2,
      text: "198.51.100.0/24 OK",
    });
  });

  it("refuses a file poprelay did not write, naming the file and the fix, and leaves it alone", async () => {
    const dir = await scratch();
    const map = join(dir, "access");
    await writeFile(map, "Connect:192.0.2.66 REJECT\n");
    const conf = await configFor(dir, `map:\n  mta: sendmail\n  type: none\n  file: ${map}\n`);
    const added = await poprelay(["add", "198.51.100.7", "--config-dir", conf]);
    assert.equal(added.code, 1, added.stderr);
    assert.match(added.stderr, new RegExp(`refusing to replace ${map}: poprelay did not write it`));
    assert.match(added.stderr, /line 1 "Connect:192\.0\.2\.66 REJECT"/);
    assert.match(added.stderr, /map\.head/);
    assert.equal(await readFile(map, "utf8"), "Connect:192.0.2.66 REJECT\n");

    // poprelay's own file, with a line added by hand below its header: refused too.
    await writeFile(map, `${HEADER}\nConnect:198.51.100.7 RELAY\nConnect:192.0.2.66 REJECT\n`);
    const again = await poprelay(["generate", "--config-dir", conf]);
    assert.equal(again.code, 1);
    assert.match(
      again.stderr,
      /it has poprelay's header, but line 3 "Connect:192\.0\.2\.66 REJECT"/,
    );

    // The same line in map.head: accounted for, and written first.
    const head = join(dir, "head");
    await writeFile(head, "Connect:192.0.2.66 REJECT\n");
    await writeFile(
      join(conf, "conf.d", "60-head.yaml"),
      `map:\n  mta: sendmail\n  type: none\n  file: ${map}\n  head: ${head}\n`,
    );
    const written = await poprelay(["generate", "--config-dir", conf]);
    assert.equal(written.code, 0, written.stderr);
    assert.equal(
      await readFile(map, "utf8"),
      `${HEADER}\nConnect:192.0.2.66 REJECT\nConnect:198.51.100.7 RELAY\n`,
    );
  });
});

describe("import-legacy on a Mail::POPRelay redhat-style config keeps the admin's lines", () => {
  it("moves them into map.head, and the written map (and its makemap database) holds them", async (t) => {
    const makemap = await tool(t, ".cache/sendmail/usr/libexec/sendmail/makemap");
    if (!makemap) return;
    const dir = await scratch();
    const access = join(dir, "access");
    await writeFile(access, LEGACY_ACCESS);
    // No /etc/mail/sendmail.cf here: makemap needs some -C file.
    const cf = join(dir, "empty.cf");
    await writeFile(cf, "");
    // The shape of the shipped redhat config: sendmail's access file, as a database.
    const legacy = join(dir, "redhat.conf");
    await writeFile(
      legacy,
      [
        "mailLogFile = /var/log/maillog",
        "mailProgram = sendmail",
        "mailProgramRestart = 0",
        "mailRelayIsDatabase = 1",
        `mailRelayDatabaseCommand = ${makemap} -C ${cf} hash %r < %r`,
        `mailRelayDirectory = ${join(dir, "spool")}`,
        `mailRelayFile = ${access}`,
        "mailRelayFileFormat = %i RELAY",
        "mailRelayPeriod = 1800",
        "",
      ].join("\n"),
    );
    const conf = await configFor(dir, "");
    const imported = await poprelay(["import-legacy", legacy, "--config-dir", conf]);
    assert.equal(imported.code, 0, imported.stderr);
    const head = join(conf, "preserved", "access");
    assert.match(imported.stdout, new RegExp(`head: ${head}`));
    assert.match(
      imported.stderr,
      new RegExp(
        `the 5 lines above the preserve marker \\(line 6\\) of ${access} were written to ${head}`,
      ),
    );
    assert.equal(await readFile(head, "utf8"), `${SITE_LINES.join("\n")}\n`);
    assert.equal((await stat(head)).mode & 0o777, 0o644);
    await writeFile(join(conf, "conf.d", "50-legacy.yaml"), imported.stdout);

    // The first write replaces the legacy file: every line in it is accounted for.
    const added = await poprelay(["add", "198.51.100.7", "--config-dir", conf]);
    assert.equal(added.code, 0, added.stderr);
    // An address the site rejects logs in: the site's line decides, and makemap sees no duplicate.
    const rejected = await poprelay(["add", "192.0.2.66", "--config-dir", conf]);
    assert.equal(rejected.code, 0, rejected.stderr);
    assert.equal(
      await readFile(access, "utf8"),
      `${HEADER}\n${SITE_LINES.join("\n")}\n198.51.100.7 RELAY\n`,
    );
    const dump = await run(makemap, ["-C", cf, "-u", "hash", access]);
    assert.equal(dump.code, 0, dump.stderr);
    assert.deepEqual(dump.stdout.split("\n").filter(Boolean).sort(), [
      "10.1.2\tRELAY",
      "192.0.2.66\tREJECT",
      "198.51.100.7\tRELAY",
      "spammer@example.com\tREJECT",
    ]);

    // Importing again finds the same lines already there; other lines there are the admin's.
    const twice = await poprelay(["import-legacy", legacy, "--config-dir", conf]);
    assert.equal(twice.code, 0, twice.stderr);
    await writeFile(head, "edited\n");
    await writeFile(access, LEGACY_ACCESS);
    const clash = await poprelay(["import-legacy", legacy, "--config-dir", conf]);
    assert.equal(clash.code, 1);
    assert.match(clash.stderr, new RegExp(`${head} exists already with other lines`));
  });
});

/** A conf.d with spool and state in `dir`, plus `extra` YAML. */
async function configFor(dir: string, extra: string): Promise<string> {
  const conf = join(dir, "etc");
  await mkdir(join(conf, "conf.d"), { recursive: true });
  await writeFile(
    join(conf, "conf.d", "40-test.yaml"),
    `spool:\n  directory: ${join(dir, "spool")}\nstate:\n  directory: ${dir}\n${extra}`,
  );
  return conf;
}

/** A tool scripts/test.sh unpacks into .cache; missing: skipped, except under CI. */
async function tool(t: TestContext, relative: string): Promise<string | undefined> {
  const path = join(ROOT, relative);
  try {
    await access(path);
    return path;
  } catch {
    if (IN_CI) throw new Error(`${path} not found (scripts/test.sh unpacks it)`);
    t.skip(`${path} not found (run scripts/test.sh)`);
    return undefined;
  }
}
