/**
 * `poprelay snippet`: the MTA's lines for the configuration, the same as the README and the
 * examples show, and a real Postfix set up from them with `postconf -e` relays for a granted
 * address and refuses the others (554), with each table type.
 */
import assert from "node:assert/strict";
import { copyFile, readFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, it } from "node:test";
import { configDir, poprelay, ROOT, run, sandbox, scratch } from "./helpers.js";
import { waitFor } from "./support/dovecot.js";
import { smtpTryRelay } from "./support/mail-clients.js";
import {
  POSTFIX,
  type PostfixMapType,
  postfixSkipReason,
  startPostfix,
} from "./support/postfix.js";

/** A config dir with the shipped defaults and, as 50-local.yaml, `example` (or nothing). */
async function shipped(example?: string): Promise<string> {
  const dir = await configDir({});
  await copyFile(join(ROOT, "conf.d/00-poprelay.yaml"), join(dir, "conf.d/00-poprelay.yaml"));
  if (example)
    await copyFile(join(ROOT, "conf.d/examples", example), join(dir, "conf.d/50-local.yaml"));
  return dir;
}

async function snippet(dir: string): Promise<{ lines: string[]; where: string }> {
  const result = await poprelay(["snippet", "--config-dir", dir]);
  assert.equal(result.code, 0, result.stderr);
  return { lines: result.stdout.split("\n").filter((l) => l !== ""), where: result.stderr };
}

/** The README's fenced blocks that hold a line starting with `start`. */
async function readmeBlocks(start: string): Promise<string[][]> {
  const readme = await readFile(join(ROOT, "README.md"), "utf8");
  // Blocks may be indented (in a list item).
  return [...readme.matchAll(/^ *```[a-z]*\n([\s\S]*?)^ *```$/gm)]
    .map((m) =>
      (m[1] ?? "")
        .split("\n")
        .map((l) => l.trim())
        .filter((l) => l !== ""),
    )
    .filter((lines) => lines.some((l) => l.startsWith(start)));
}

describe("poprelay snippet", () => {
  it("prints Postfix's line for the shipped defaults: the README's one Postfix snippet", async () => {
    const defaults = await snippet(await shipped());
    assert.deepEqual(defaults.lines, [
      "smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated, check_client_access hash:/var/lib/poprelay/relay, reject_unauth_destination",
    ]);
    assert.match(defaults.where, /^# Postfix: \/etc\/postfix\/main\.cf .*postfix reload\n$/);
    // Every Postfix block in the README is this command's output: for the defaults, or for
    // the SMTP host of several (its policy service).
    const policy = await snippet(await shipped("redis-smtp-host.yaml"));
    const blocks = await readmeBlocks("smtpd_relay_restrictions");
    assert.ok(blocks.length >= 2, "the README shows Postfix's line");
    for (const block of blocks) {
      const line = block.find((l) => l.startsWith("smtpd_relay_restrictions"));
      assert.ok(
        line === defaults.lines[0] || line === policy.lines[0],
        `README: ${line} is not poprelay snippet's output`,
      );
    }
    assert.ok(blocks.some((b) => b.includes(defaults.lines[0] ?? "")));
    assert.ok(blocks.some((b) => b.includes(policy.lines[0] ?? "")));
  });

  it("follows the configuration: each example's comments show its MTA's lines", async () => {
    const expected: Record<string, string[]> = {
      "postfix.yaml": [
        "smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated, check_client_access hash:/var/lib/poprelay/relay, reject_unauth_destination",
      ],
      "sendmail.yaml": ["FEATURE(`access_db', `hash -T<TMPF> -o /var/lib/poprelay/relay')dnl"],
      "exim.yaml": ["accept hosts = net-iplsearch;/var/lib/poprelay/relay"],
      "qmail.yaml": ["-x /var/lib/poprelay/relay.cdb"],
      "redis-smtp-host.yaml": [
        "smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated, check_policy_service inet:127.0.0.1:10040, reject_unauth_destination",
      ],
    };
    for (const [example, lines] of Object.entries(expected)) {
      const { lines: printed } = await snippet(await shipped(example));
      assert.deepEqual(printed, lines, example);
      const text = await readFile(join(ROOT, "conf.d/examples", example), "utf8");
      for (const line of lines)
        assert.ok(text.includes(`#   ${line}`), `${example} does not show: ${line}`);
    }
  });

  it("names the configured table type and file, per instance", async () => {
    const dir = await configDir({
      "50-local.yaml": [
        "map:",
        "  type: lmdb",
        "  file: /srv/relay",
        "instances:",
        "  courier:",
        "    map: {type: cdb}",
        "    policy: {listen: 'unix:/var/spool/postfix/private/poprelay'}",
        "",
      ].join("\n"),
    });
    assert.deepEqual((await snippet(dir)).lines, [
      "smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated, check_client_access lmdb:/srv/relay, reject_unauth_destination",
    ]);
    const courier = await poprelay(["snippet", "--instance", "courier", "--config-dir", dir]);
    assert.equal(
      courier.stdout,
      "smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated, check_client_access cdb:/srv/relay, check_policy_service unix:/var/spool/postfix/private/poprelay, reject_unauth_destination\n",
    );
    const nothing = await configDir({ "50-local.yaml": "map: {mta: none}\n" });
    const refused = await poprelay(["snippet", "--config-dir", nothing]);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /map\.mta is none and policy\.listen is empty/);
  });

  describe("a Postfix set up from its output", { skip: postfixSkipReason() }, () => {
    const tryRelay = (port: number, localAddress: string) =>
      smtpTryRelay({ port, localAddress, from: "alice@client.test", to: "bob@remote.example" });

    for (const type of ["hash", "lmdb", "cdb"] as PostfixMapType[]) {
      it(`relays for a granted address and refuses the others (554), with ${type}`, async (t) => {
        const { dir, map } = await sandbox(`  type: ${type}\n`);
        const add = await poprelay(["add", "127.0.0.9", "--config-dir", dir]);
        assert.equal(add.code, 0, add.stderr);
        // Until main.cf names the map, nobody relays.
        const postfix = await startPostfix({
          dir: await scratch("poprelay-snippet-"),
          relayMap: map,
          mapType: type,
          mainCf: { smtpd_relay_restrictions: "permit_mynetworks, reject_unauth_destination" },
        });
        t.after(() => postfix.stop());
        assert.equal((await tryRelay(postfix.smtpPort, "127.0.0.9")).code, 554);

        // What the README tells an administrator to run.
        const { lines } = await snippet(dir);
        const edit = await run("/usr/sbin/postconf", ["-c", postfix.configDir, "-e", ...lines]);
        assert.equal(edit.code, 0, edit.stderr);
        const reload = await run(POSTFIX, ["-c", postfix.configDir, "reload"]);
        assert.equal(reload.code, 0, reload.stderr);
        // smtpd processes started before the reload finish their connection first.
        const granted = await waitFor("the reloaded smtpd", async () => {
          const reply = await tryRelay(postfix.smtpPort, "127.0.0.9");
          return reply.code === 250 ? reply : undefined;
        });
        assert.equal(granted.accepted, true);
        const refused = await tryRelay(postfix.smtpPort, "127.0.0.10");
        assert.equal(refused.code, 554, refused.transcript.join("\n"));
        assert.match(refused.text, /Relay access denied/);
      });
    }
  });
});
