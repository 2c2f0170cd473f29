/**
 * conf.d/examples' Sendmail recipes for maps keyed by the bare client address, as
 * pop-before-smtp's popauth.m4 and DRAC use them: each example config, with only its paths
 * moved into a scratch directory, builds its map with `poprelay generate` and the real makemap,
 * and a real `sendmail -bt` runs the site's rulesets over it with ${client_addr} set as Sendmail
 * sets it. A granted IPv4 and IPv6 address relay; their neighbours do not.
 */
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, it } from "node:test";
import { parseIp } from "../src/address/ip.js";
import { sendmailKey } from "../src/maps/keys.js";
import { configDir, poprelay, ROOT, scratch } from "./helpers.js";
import { addressTest, cached, SENDMAIL_BIN, SENDMAIL_CF, sendmailCf } from "./support/sendmail.js";

const GRANTED = ["192.0.2.7", "2001:db8:1:2:3:4:5:6"];
const NEIGHBOURS = ["192.0.2.8", "192.0.2.70", "2001:db8:1:2:3:4:5:7", "2001:db8:1:2:3:4:5:60"];

interface Recipe {
  example: string;
  type: string;
  /** The site's sendmail.mc lines (as the example's comment shows them) for this map file. */
  mc: (map: string) => string[];
  /** The ruleset that decides, and the `sendmail -bt` answer that means relay. */
  ruleset: string;
  relays: RegExp;
}

const RECIPES: Recipe[] = [
  {
    example: "sendmail-popauth.yaml",
    type: "hash",
    mc: (map) => [
      "LOCAL_CONFIG",
      `Kpopauth hash -a<OK> ${map}`,
      "LOCAL_RULESETS",
      "SLocal_check_rcpt",
      "R$*\t\t\t$: $(popauth $&{client_addr} $: <?> $)",
      "R$* <OK>\t\t$# OK",
    ],
    ruleset: "Local_check_rcpt",
    relays: /^\$# OK$/,
  },
  {
    example: "sendmail-drac.yaml",
    type: "btree",
    mc: (map) => [`FEATURE(\`drac', \`btree ${map}')dnl`],
    ruleset: "Relay_ok",
    relays: /^RELAY$/,
  },
];

describe("Sendmail recipes for bare-address maps (popauth, DRAC)", () => {
  for (const recipe of RECIPES) {
    it(`${recipe.example}: granted addresses relay, neighbours do not`, async (t) => {
      const makemap = await cached(t, join(SENDMAIL_BIN, "makemap"));
      const m4 = makemap && (await cached(t, join(SENDMAIL_CF, "m4/cf.m4")));
      if (!makemap || !m4) return;
      const work = await scratch("poprelay-sendmail-recipe-");
      const map = join(work, "map");
      const cf = await sendmailCf(work, recipe.mc(map));
      const example = await readFile(join(ROOT, "conf.d/examples", recipe.example), "utf8");
      assert.match(example, new RegExp(`type: ${recipe.type}\\n`));
      const dir = await configDir({
        "50-example.yaml": example,
        // Only the paths move: the example's mta, format and type stay as they are.
        "60-test.yaml": [
          `spool:\n  directory: ${join(work, "spool")}`,
          `state:\n  directory: ${work}`,
          `map:\n  file: ${map}\n  command: ${makemap} -C ${cf} ${recipe.type} %r < %r`,
          "",
        ].join("\n"),
      });
      for (const ip of GRANTED) {
        const added = await poprelay(["add", ip, "--config-dir", dir]);
        assert.equal(added.code, 0, added.stderr);
      }
      const generated = await poprelay(["generate", "--config-dir", dir]);
      assert.equal(generated.code, 0, generated.stderr);
      assert.match(generated.stdout, /: 2 entries\n$/);

      const asked = [...GRANTED, ...NEIGHBOURS];
      const input = asked
        .map((a) => `.D{client_addr}${sendmailKey(parseIp(a))}\n${recipe.ruleset} x\n`)
        .join("");
      const answer = await addressTest(cf, input);
      const returns = [
        ...answer.matchAll(new RegExp(`^${recipe.ruleset}\\s+returns: (.*)$`, "gm")),
      ];
      assert.equal(returns.length, asked.length, answer);
      const relayed = asked.filter((_, i) => recipe.relays.test(returns[i]?.[1] ?? ""));
      assert.deepEqual(relayed, GRANTED, answer);
    });
  }
});
