import assert from "node:assert/strict";
import { readFile, rename, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, it } from "node:test";
import { defaultConfig } from "../src/config/load.js";
import type { MapConfig } from "../src/config/types.js";
import { memoryLogger } from "../src/log.js";
import { cdbFromText, writeCdb } from "../src/maps/db/cdb.js";
import { checkedAddressList, renderAddressBytes } from "../src/maps/render.js";
import { MapTextMaker } from "../src/maps/rerender.js";
import { resolveMap } from "../src/maps/resolve.js";
import { writeMap } from "../src/maps/write.js";
import type { SpoolEntry } from "../src/spool/types.js";
import { scratch } from "./helpers.js";

const entries = (ips: readonly string[]): SpoolEntry[] =>
  ips.map((ip) => ({ ip, user: "alice", agent: "dovecot", login: 0, expires: 1 }));

/** A fixed pseudo-random sequence of address lists, each a few changes from the one before. */
function* spoolStates(seed: number, steps: number): Generator<string[]> {
  let state = seed;
  const next = (n: number) => {
    state = (state * 1103515245 + 12345) & 0x7fffffff;
    return state % n;
  };
  const address = () =>
    next(5) === 0
      ? `2001:db8::${(next(4000) + 1).toString(16)}`
      : `10.${next(3)}.${next(256)}.${next(254) + 1}`;
  const ips = new Set(Array.from({ length: 200 }, address));
  for (let step = 0; step < steps; step++) {
    const listed = [...ips];
    switch (next(4)) {
      case 0:
        for (let k = next(4); k >= 0; k--) ips.add(address());
        break;
      case 1:
        for (let k = next(10); k >= 0; k--) ips.delete(listed[next(listed.length)] as string);
        break;
      case 2:
        ips.delete(listed[next(listed.length)] as string);
        ips.add(address());
        break;
      default:
      // Nothing changes: a login again from an address already granted.
    }
    yield checkedAddressList(entries([...ips]));
  }
}

function mapConfig(overrides: Partial<MapConfig>): MapConfig {
  return { ...defaultConfig().map, ...overrides };
}

describe("MapTextMaker: each text from the one before, the bytes of a whole render", () => {
  const cases: [string, Partial<MapConfig>, string, string][] = [
    ["postfix", { mta: "postfix" }, "", ""],
    // Sendmail leaves out IPv6 keys that are parents of others: lines some addresses lack.
    ["sendmail", { mta: "sendmail" }, "", ""],
    [
      "a site's head and static lines, one taking an address's key",
      { mta: "postfix" },
      "Static.EXAMPLE REJECT\n10.0.0.5/32 DUNNO\n",
      "# head\n10.1.1.1/32 REJECT\n",
    ],
  ];
  for (const [what, overrides, staticText, headText] of cases) {
    it(what, () => {
      const resolved = resolveMap(mapConfig(overrides));
      const maker = new MapTextMaker();
      let last: { bytes: string; serial: number } | undefined;
      let reused = 0;
      for (const addresses of spoolStates(7, 80)) {
        const made = maker.make(addresses, resolved, staticText, headText);
        const whole = renderAddressBytes(addresses, resolved, staticText, headText);
        assert.deepEqual(made.bytes, whole);
        if (made.reused) reused++;
        // The same bytes keep their serial number; other bytes get a new one.
        const bytes = made.bytes.toString("latin1");
        if (last) assert.equal(made.serial === last.serial, bytes === last.bytes);
        last = { bytes, serial: made.serial };
      }
      assert.equal(reused, 79);
    });
  }

  it("makes the text whole when the settings or the site's lines change", () => {
    const maker = new MapTextMaker();
    const addresses = checkedAddressList(entries(["10.0.0.1", "10.0.0.2"]));
    const postfix = resolveMap(mapConfig({ mta: "postfix" }));
    maker.make(addresses, postfix, "", "");
    const head = maker.make(addresses, postfix, "", "10.0.0.1/32 REJECT\n");
    assert.equal(head.reused, undefined);
    assert.deepEqual(
      head.bytes,
      renderAddressBytes(addresses, postfix, "", "10.0.0.1/32 REJECT\n"),
    );
    const exim = resolveMap(mapConfig({ mta: "exim" }));
    const other = maker.make(addresses, exim, "", "10.0.0.1/32 REJECT\n");
    assert.equal(other.reused, undefined);
    assert.deepEqual(other.bytes, renderAddressBytes(addresses, exim, "", "10.0.0.1/32 REJECT\n"));
  });
});

describe("writeCdb from the table built before: postmap's bytes all the same", () => {
  const cases: [string, Partial<MapConfig>, string][] = [
    ["postfix", { mta: "postfix" }, ""],
    // Every line has the key "ok": only the first counts, so nothing can be copied.
    ["a format whose key repeats", { mta: "postfix", format: "OK %i" }, ""],
    ["a site's line that repeats its own key", { mta: "postfix" }, "a.example X\nA.example Y\n"],
  ];
  for (const [what, overrides, staticText] of cases) {
    it(what, async () => {
      const dir = await scratch("poprelay-cdb-reuse-");
      const resolved = resolveMap(mapConfig(overrides));
      const maker = new MapTextMaker();
      let n = 0;
      for (const addresses of spoolStates(11, 60)) {
        const made = maker.make(addresses, resolved, staticText, "");
        const path = join(dir, `relay.${n++}.cdb`);
        await writeCdb(made.bytes, path, 0o644, made);
        assert.deepEqual(await readFile(path), cdbFromText(made.bytes));
      }
    });
  }
});

describe("checkedAddressList with the previous list", () => {
  it("gives what it gives without it", () => {
    let previous: string[] = [];
    for (const addresses of spoolStates(3, 40)) {
      const shuffled = [...addresses].reverse();
      for (const list of [addresses, shuffled]) {
        const checked = checkedAddressList(entries(list), [], previous);
        assert.deepEqual(checked, checkedAddressList(entries(list)));
      }
      previous = addresses;
    }
  });

  it("checks every address the previous list lacks, between known ones too", () => {
    const previous = checkedAddressList(entries(["10.0.0.1", "10.0.0.3"]));
    for (const bad of ["10.0.0.02", "::ffff:10.0.0.2", "0.0.0.0", "10.0.0.2/32"]) {
      // MapEntryError for another spelling of an address, InvalidIpError for no address.
      assert.throws(() => checkedAddressList(entries(["10.0.0.1", bad, "10.0.0.3"]), [], previous));
    }
  });
});

describe("writeMap and the map it put in place", () => {
  it("reads the live map again once another program replaced it, and refuses a foreign one", async () => {
    const dir = await scratch("poprelay-maps-reuse-");
    const file = join(dir, "relay");
    const config = mapConfig({ mta: "postfix", file, type: "cdb" });
    const log = memoryLogger();
    await writeMap(entries(["10.0.0.1"]), config, { log });
    await writeMap(entries(["10.0.0.1", "10.0.0.2"]), config, { log });
    // The same size and the same name: only the inode and ctime tell.
    const text = await readFile(file, "utf8");
    const foreign = text.replace("10.0.0.2/32 OK", "10.0.0.9/32 NO");
    assert.equal(foreign.length, text.length);
    await writeFile(join(dir, "site"), foreign);
    await rename(join(dir, "site"), file);
    await assert.rejects(
      writeMap(entries(["10.0.0.1", "10.0.0.2", "10.0.0.3"]), config, { log }),
      /refusing to replace/,
    );
    assert.equal(await readFile(file, "utf8"), foreign);
  });

  it("writes again a map another program removed, and its database", async () => {
    const dir = await scratch("poprelay-maps-reuse-");
    const file = join(dir, "relay");
    const config = mapConfig({ mta: "postfix", file, type: "cdb" });
    const log = memoryLogger();
    const ips = ["10.0.0.1", "10.0.0.2"];
    await writeMap(entries(ips), config, { log });
    await rm(file);
    const again = await writeMap(entries(ips), config, { log });
    assert.equal(again.changed, true);
    assert.equal(
      await readFile(file, "utf8"),
      renderAddressBytes(ips, resolveMap(config), "").toString(),
    );
    assert.deepEqual(await readFile(`${file}.cdb`), cdbFromText(await readFile(file)));
  });
});
