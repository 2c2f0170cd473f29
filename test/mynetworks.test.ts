import assert from "node:assert/strict";
import { appendFile, mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, it, type TestContext } from "node:test";
import { expandIgnore, parseMynetworks } from "../src/matcher/mynetworks.js";
import { configDir, mapKeys, poprelay, scratch } from "./helpers.js";
import { startDaemon } from "./support/daemon.js";
import { skipReason, waitFor } from "./support/dovecot.js";

const POSTCONF = "/usr/sbin/postconf";

function skipUnlessPostconf(t: TestContext): boolean {
  const reason = skipReason("Postfix", [POSTCONF]);
  if (reason) t.skip(reason);
  return Boolean(reason);
}

/** A private Postfix config_directory: only main.cf, which is all postconf -h reads. */
async function postfixConfig(main: string): Promise<string> {
  const dir = await scratch("poprelay-postfix-conf-");
  await writeFile(join(dir, "main.cf"), main);
  // postconf warns about a missing master.cf on stderr, harmlessly; give it one.
  await writeFile(join(dir, "master.cf"), "");
  return dir;
}

describe("match.ignore: postfix:mynetworks", () => {
  it("expands $name references and /file patterns, and reports what it cannot expand", async (t) => {
    if (skipUnlessPostconf(t)) return;
    const dir = await scratch();
    const nets = join(dir, "nets");
    const nested = join(dir, "nested");
    await writeFile(nets, `# the office\n198.51.100.0/24, ${nested}\n  [2001:db8::]/32\n`);
    await writeFile(nested, "203.0.113.8\n");
    const postfix = await postfixConfig(
      [
        `mynetworks = 127.0.0.0/8 [::1]/128 $office_nets, ${nets} hash:/etc/postfix/network_table !192.0.2.9 host.example`,
        "office_nets = 192.0.2.0/24",
        "",
      ].join("\n"),
    );
    const result = await expandIgnore(["10.0.0.0/8", "postfix:mynetworks"], {
      postconf: POSTCONF,
      configDirectory: postfix,
    });
    assert.deepEqual(result.networks, [
      "10.0.0.0/8",
      "127.0.0.0/8",
      "::1/128",
      "192.0.2.0/24",
      "198.51.100.0/24",
      "203.0.113.8",
      "2001:db8::/32",
    ]);
    assert.equal(result.notes.length, 3, result.notes.join("\n"));
    assert.match(
      result.notes[0] ?? "",
      /"hash:\/etc\/postfix\/network_table": a hash table is not expandable/,
    );
    assert.match(result.notes[1] ?? "", /"!192\.0\.2\.9": an exclusion/);
    assert.match(result.notes[2] ?? "", /"host\.example": not an address/);
  });

  it("leaves the list alone without postfix:mynetworks, and never runs postconf then", async () => {
    const result = await expandIgnore(["127.0.0.0/8"], { postconf: "/nonexistent/postconf" });
    assert.deepEqual(result, { networks: ["127.0.0.0/8"], notes: [] });
  });

  it("fails with the key and the reason when postconf cannot run or a file cannot be read", async () => {
    await assert.rejects(
      expandIgnore(["postfix:mynetworks"], { postconf: "/nonexistent/postconf" }),
      /match\.ignore: postfix:mynetworks: cannot ask postconf -xh mynetworks/,
    );
    await assert.rejects(
      parseMynetworks("/nonexistent/nets", (path) => readFile(path, "utf8")),
      /match\.ignore: postfix:mynetworks: \/nonexistent\/nets: cannot read/,
    );
  });

  it("stops at a /file loop", async () => {
    const result = await parseMynetworks("/a", async (path) =>
      path === "/a" ? "/b 10.0.0.1" : "/a",
    );
    assert.deepEqual(result.networks, ["10.0.0.1"]);
    assert.match(result.notes[0] ?? "", /\/b: \/a: files nest too deep or in a loop/);
  });

  it("is the only non-network item the configuration takes", async () => {
    const good = await configDir({
      "50.yaml": "match:\n  ignore: [postfix:mynetworks, 10.0.0.0/8]\n",
    });
    const bad = await configDir({ "50.yaml": "match:\n  ignore: [postfix:relay_domains]\n" });
    const env = { MAIL_CONFIG: await postfixConfig("mynetworks = 10.1.0.0/16\n") };
    const ok = await poprelay(["check", "--config-dir", good], env);
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /match\.ignore: postfix:mynetworks is 10\.1\.0\.0\/16/);
    const refused = await poprelay(["check", "--config-dir", bad], env);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /match\.ignore/);
  });

  it("is read again on reload (SIGHUP)", async (t) => {
    if (skipUnlessPostconf(t)) return;
    const dir = await scratch();
    const log = join(dir, "dovecot.log");
    const map = join(dir, "relay");
    await writeFile(log, "");
    await mkdir(join(dir, "conf.d"));
    await writeFile(
      join(dir, "conf.d", "50-test.yaml"),
      [
        "agent: dovecot",
        `input:\n  source: file\n  file: ${log}`,
        "match:\n  ignore: [postfix:mynetworks]",
        `spool:\n  directory: ${join(dir, "spool")}`,
        `state:\n  directory: ${join(dir, "state")}`,
        `map:\n  mta: postfix\n  type: none\n  file: ${map}`,
        "",
      ].join("\n"),
    );
    const postfix = await postfixConfig("mynetworks = 192.0.2.0/24\n");
    const daemon = startDaemon(dir, { MAIL_CONFIG: postfix });
    await daemon.waitForLog(/running/);
    const line = (ip: string) => {
      const t = new Date();
      const month = t.toLocaleString("en-US", { month: "short" });
      const stamp = `${month} ${String(t.getDate()).padStart(2, " ")} ${t.toTimeString().slice(0, 8)}`;
      return `${stamp} pop3-login: Info: Login: user=<u>, method=PLAIN, rip=${ip}, lip=127.0.0.1, mpid=1, session=<s${ip}>\n`;
    };
    await appendFile(log, line("192.0.2.7"));
    await appendFile(log, line("198.51.100.7"));
    await daemon.waitForLog(/relay for 198\.51\.100\.7/);
    await waitFor("the map", async () => ((await mapKeys(map)).length > 0 ? true : undefined));
    assert.deepEqual(await mapKeys(map), ["198.51.100.7"]);

    await writeFile(join(postfix, "main.cf"), "mynetworks = 198.51.100.0/24\n");
    const mark = daemon.log().length;
    daemon.child.kill("SIGHUP");
    await daemon.waitForLog(/reloaded the configuration/, mark);
    await appendFile(log, line("192.0.2.7"));
    await daemon.waitForLog(/relay for 192\.0\.2\.7/, mark);
    await waitFor("the map", async () => ((await mapKeys(map)).length > 1 ? true : undefined));
    assert.deepEqual(await mapKeys(map), ["192.0.2.7", "198.51.100.7"]);
    assert.equal(await daemon.stop(), 0);
  });
});
