import assert from "node:assert/strict";
import { chmod, readFile, rename, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { defaultConfig } from "../src/config/load.js";
import { memoryLogger } from "../src/log.js";
import { chooseMapType } from "../src/maps/choose-type.js";
import { CdbSourceError, cdbBytes, cdbFromText, postmapRecords } from "../src/maps/db/cdb.js";
import { writeMap } from "../src/maps/write.js";
import type { SpoolEntry } from "../src/spool/types.js";
import { run, scratch } from "./helpers.js";
import { smtpTryRelay } from "./support/mail-clients.js";
import { type Postfix, postfixSkipReason, startPostfix } from "./support/postfix.js";

const POSTMAP = "/usr/sbin/postmap";

const entries = (ips: readonly string[]): SpoolEntry[] =>
  ips.map((ip) => ({ ip, user: "alice", agent: "dovecot", login: 0, expires: 1 }));

/** What postmap cdb:FILE writes for `text`. */
async function postmapCdb(text: string): Promise<Buffer> {
  const file = join(await scratch("poprelay-cdb-"), "map");
  await writeFile(file, text);
  const built = await run(POSTMAP, [`cdb:${file}`]);
  assert.equal(built.code, 0, built.stderr);
  return readFile(`${file}.cdb`);
}

/** n addresses, IPv4 and IPv6 mixed, as poprelay's default Postfix format writes them. */
function addressLines(n: number): string[] {
  return Array.from({ length: n }, (_, i) =>
    i % 5 === 0
      ? `2001:db8::${i.toString(16)} OK`
      : `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255} OK`,
  );
}

describe("cdb: the bytes postmap cdb: writes", () => {
  const texts: [string, string][] = [
    ["an empty map", ""],
    ["a header only", "# Written by poprelay\n"],
    ["one address", "# header\n192.0.2.1 OK\n"],
    // 3,000 records put many keys in each of the 256 tables, so slots collide and wrap.
    ["3,000 addresses", `${addressLines(3000).join("\n")}\n`],
    [
      "a site's static lines: case, blanks, a repeated key, comments, no final newline",
      "10.0.0.1 OK\n  # indented comment\n\nStatic.EXAMPLE\t REJECT  go away  \n10.0.0.1 DUNNO\n" +
        "2001:DB8::2 OK",
    ],
    ["UTF-8 in a value", "192.0.2.7 550 Grüße\n"],
  ];
  for (const [what, text] of texts) {
    it(what, async () => {
      const expected = await postmapCdb(text);
      assert.deepEqual(cdbBytes(postmapRecords(text)), expected);
      // What the map writer builds, from the text's bytes.
      assert.deepEqual(cdbFromText(Buffer.from(text)), expected);
    });
  }

  it("reads lines as postmap does: keys folded, values trimmed, the first of a key kept", () => {
    const text = "# c\nA.b  x y \na.B z\n\n  # d\n";
    assert.deepEqual(postmapRecords(text), [
      ["a.b", "x y"],
      ["a.b", "z"],
    ]);
    assert.deepEqual(cdbBytes(postmapRecords(text)), cdbBytes([["a.b", "x y"]]));
  });

  it("refuses what postmap would read otherwise, naming the line", () => {
    assert.throws(
      () => postmapRecords("10.0.0.1 OK\n  continued\n"),
      new CdbSourceError("line 2: starts with a blank (a continuation line)"),
    );
    assert.throws(
      () => postmapRecords("10.0.0.1\n"),
      new CdbSourceError("line 1: a key without a value"),
    );
    assert.throws(
      () => cdbFromText(Buffer.from("10.0.0.1 OK\n\n  continued\n")),
      new CdbSourceError("line 3: starts with a blank (a continuation line)"),
    );
  });
});

describe("cdb written by poprelay, read by a real Postfix smtpd", () => {
  let postfix: Postfix | undefined;
  after(() => postfix?.stop());

  it("grants what the map lists, and a replaced map is noticed without a reload", async (t) => {
    const skip = await postfixSkipReason();
    if (skip) return t.skip(skip);
    const dir = await scratch("poprelay-cdb-smtpd-");
    const file = join(dir, "relay");
    const config = { ...defaultConfig().map, file, type: "cdb" };
    const log = memoryLogger();
    const written = await writeMap(entries(["127.0.0.9"]), config, { log });
    assert.deepEqual(written.products, [`${file}.cdb`]);
    // The key as the map spells it (a cidr: line, which smtpd reads beside this table).
    const key = (await readFile(file, "utf8")).split("\n")[1]?.split(" ")[0] ?? "";
    assert.match(key, /^127\.0\.0\.9(\/32)?$/);
    assert.deepEqual(await run(POSTMAP, ["-q", key, `cdb:${file}`]), {
      code: 0,
      stdout: "OK\n",
      stderr: "",
    });
    postfix = await startPostfix({ dir, relayMap: file, mapType: "cdb" });
    const port = postfix.smtpPort;
    const relay = (from: string) =>
      smtpTryRelay({ port, localAddress: from, from: "a@client.test", to: "b@remote.example" });

    assert.equal((await relay("127.0.0.9")).code, 250);
    assert.equal((await relay("127.0.0.10")).code, 554);

    // The next grant replaces relay and relay.cdb by rename; smtpd sees its open cdb table
    // unlinked, exits, and a new smtpd reads both tables afresh.
    await writeMap(entries(["127.0.0.10"]), config, { log });
    assert.equal((await relay("127.0.0.10")).code, 250);
    assert.equal((await relay("127.0.0.9")).code, 554, "the dropped address is refused");
    const maillog = await readFile(postfix.logFile, "utf8");
    assert.match(maillog, /table cdb:\S+relay\(\S*\) has changed -- restarting/);
  });

  it("a table written by hand with postmap, renamed into place, is read the same way", async (t) => {
    // The floor the bench compares poprelay with: Postfix's own tool, no poprelay at all.
    const skip = await postfixSkipReason();
    if (skip) return t.skip(skip);
    const dir = await scratch("poprelay-cdb-hand-");
    const file = join(dir, "relay");
    const own = await startPostfix({ dir, relayMap: file, mapType: "cdb" });
    try {
      const relay = (from: string) =>
        smtpTryRelay({
          port: own.smtpPort,
          localAddress: from,
          from: "a@client.test",
          to: "b@remote.example",
        });
      assert.equal((await relay("127.0.0.11")).code, 554);
      // The text (which smtpd reads as cidr:) first, then its database (the change smtpd sees).
      const next = join(dir, "next");
      await writeFile(next, "127.0.0.11/32 OK\n");
      assert.equal((await run(POSTMAP, [`cdb:${next}`])).code, 0);
      await rename(next, file);
      await rename(`${next}.cdb`, `${file}.cdb`);
      assert.equal((await relay("127.0.0.11")).code, 250);
    } finally {
      await own.stop();
    }
  });
});

describe("map.type empty: the type chosen for Postfix", () => {
  /** A postconf that prints `named` for -n and `listed` for -m. */
  async function fakePostconf(dir: string, named: string, listed: string): Promise<string> {
    const path = join(dir, "postconf");
    const script = `#!/bin/sh\ncase "$1" in -n) printf '%s' '${named}';; -m) printf '%s' '${listed}';; esac\n`;
    await writeFile(path, script);
    await chmod(path, 0o755);
    return path;
  }
  const choose = async (named: string, listed: string, before: string[] = []) => {
    const dir = await scratch("poprelay-choose-");
    const file = join(dir, "relay");
    for (const suffix of before) await writeFile(file + suffix, "");
    const postconf = await fakePostconf(dir, named.replaceAll("FILE", file), listed);
    const choice = await chooseMapType({ ...defaultConfig().map, file }, postconf);
    return [choice.map.type, choice.reason?.replaceAll(file, "FILE")];
  };

  it("the type main.cf names the map with, whatever else is there", async () => {
    const named =
      "smtpd_relay_restrictions = permit_mynetworks, check_client_access lmdb:FILE, reject\n";
    assert.deepEqual(await choose(named, "cdb\nhash\nlmdb\n", [".db"]), [
      "lmdb",
      "map.type: lmdb (the type main.cf names the map with); main.cf reads it as lmdb:FILE",
    ]);
  });

  it("else the type of a database beside the map (an upgrade keeps relay.db)", async () => {
    assert.deepEqual(await choose("other = hash:FILE.other\n", "cdb\nhash\n", [".db"]), [
      "hash",
      "map.type: hash (FILE.db is there already); main.cf reads it as hash:FILE",
    ]);
  });

  it("else the fastest type postconf -m lists", async () => {
    assert.deepEqual((await choose("", "btree\ncdb\nhash\nlmdb\n"))[0], "cdb");
    assert.deepEqual((await choose("", "btree\nhash\nlmdb\n"))[0], "lmdb");
    assert.deepEqual((await choose("", "btree\nhash\n"))[0], "hash");
    assert.deepEqual((await choose("", ""))[0], "hash");
  });

  it("leaves a set type, a site's own command and other MTAs alone", async () => {
    const map = { ...defaultConfig().map, file: "/nonexistent/relay" };
    for (const config of [
      { ...map, type: "hash" },
      { ...map, command: "postmap cdb:%r" },
      { ...map, mta: "sendmail" as const },
    ]) {
      assert.deepEqual(await chooseMapType(config, "/nonexistent/postconf"), { map: config });
    }
  });
});
