import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { canonicalIp, compareIps } from "../src/address/ip.js";
import { defaultConfig } from "../src/config/load.js";
import type { MapConfig } from "../src/config/types.js";
import { tcpserverKey } from "../src/maps/keys.js";
import { mapAddresses, renderMap } from "../src/maps/render.js";
import { resolveMap, validateMapConfig } from "../src/maps/resolve.js";
import type { SpoolEntry } from "../src/spool/types.js";

const HEADER = "# Written by poprelay; changes here are overwritten.";

// The schema's defaults (map.file: /var/lib/poprelay/relay), as a site without conf.d has them.
function mapConfig(overrides: Partial<MapConfig> = {}): MapConfig {
  return { ...defaultConfig().map, ...overrides };
}

function entry(ip: string): SpoolEntry {
  // A hostile user name: it must never reach the map.
  return { ip, user: "mallory\n0.0.0.0/0 OK", agent: "dovecot", login: 0, expires: 1 };
}

// Out of order, with a duplicate; 2001:db8:0:1:1:1:1:1 is spelled differently by tcpserver.
const ENTRIES = [
  "2001:db8::1",
  "10.0.0.10",
  "198.51.100.7",
  "10.0.0.2",
  "2001:db8:0:1:1:1:1:1",
  "10.0.0.2",
].map(entry);

const render = (overrides: Partial<MapConfig>, staticText = "") =>
  renderMap(ENTRIES, resolveMap(mapConfig(overrides)), staticText);

describe("renderMap", () => {
  it("postfix: one-address cidr networks, numeric order, IPv4 first, no duplicates", () => {
    assert.equal(
      render({ mta: "postfix" }),
      `${HEADER}\n10.0.0.2/32 OK\n10.0.0.10/32 OK\n198.51.100.7/32 OK\n` +
        "2001:db8::1/128 OK\n2001:db8:0:1:1:1:1:1/128 OK\n",
    );
  });

  it("sendmail: Connect: keys with IPv6: tags; an IPv6 key that is a parent of others is left out", () => {
    assert.equal(
      render({ mta: "sendmail" }),
      `${HEADER}\nConnect:10.0.0.2 RELAY\nConnect:10.0.0.10 RELAY\nConnect:198.51.100.7 RELAY\n` +
        "Connect:IPv6:2001:db8:0:1:1:1:1:1 RELAY\n",
    );
  });

  it("exim: IPv6 keys in double quotes", () => {
    assert.equal(
      render({ mta: "exim" }),
      `${HEADER}\n10.0.0.2\n10.0.0.10\n198.51.100.7\n"2001:db8::1"\n"2001:db8:0:1:1:1:1:1"\n`,
    );
  });

  it("qmail: tcpserver's IPv6 spelling, the static rules after the generated ones", () => {
    const staticRules = '127.:allow,RELAYCLIENT=""\n:allow';
    assert.equal(
      render({ mta: "qmail" }, staticRules),
      `${HEADER}\n10.0.0.2:allow,RELAYCLIENT=""\n10.0.0.10:allow,RELAYCLIENT=""\n` +
        '198.51.100.7:allow,RELAYCLIENT=""\n2001:db8::1:allow,RELAYCLIENT=""\n' +
        '2001:db8::1:1:1:1:1:allow,RELAYCLIENT=""\n127.:allow,RELAYCLIENT=""\n:allow\n',
    );
  });

  it("qmail without IPv6 (plain tcprules): IPv6 entries are left out", () => {
    const resolved = { ...resolveMap(mapConfig({ mta: "qmail" })), ipv6: false };
    assert.equal(
      renderMap(ENTRIES, resolved, ":allow\n"),
      `${HEADER}\n10.0.0.2:allow,RELAYCLIENT=""\n10.0.0.10:allow,RELAYCLIENT=""\n` +
        '198.51.100.7:allow,RELAYCLIENT=""\n:allow\n',
    );
  });

  it("plain: bare addresses and no comment line", () => {
    assert.equal(
      render({ mta: "plain" }),
      "10.0.0.2\n10.0.0.10\n198.51.100.7\n2001:db8::1\n2001:db8:0:1:1:1:1:1\n",
    );
    assert.equal(renderMap([], resolveMap(mapConfig({ mta: "plain" })), ""), "");
  });

  it("substitutes %m, %r and %% in a site's format", () => {
    const text = render({ mta: "plain", format: "%i %m:%r 100%% %%i" });
    assert.equal(text.split("\n")[0], "10.0.0.2 plain:/var/lib/poprelay/relay 100% %i");
    assert.equal(text.split("\n")[3], "2001:db8::1 plain:/var/lib/poprelay/relay 100% %i");
  });

  it("refuses anything that is not a canonical address, whatever else the entries hold", () => {
    const resolved = resolveMap(mapConfig());
    for (const bad of [
      "1.2.3.4 OK\n0.0.0.0/0",
      "../etc",
      "1.2.3.4\r",
      "0.0.0.0/0",
      "",
      "fe80::1%eth0",
    ]) {
      assert.throws(
        () => renderMap([entry("10.0.0.1"), entry(bad)], resolved, ""),
        /not an IP address/,
        bad,
      );
    }
    const respelled: [string, string][] = [
      ["2001:DB8::1", "2001:db8::1"],
      ["::ffff:192.0.2.1", "192.0.2.1"],
      ["2001:db8:0:0::1", "2001:db8::1"],
    ];
    for (const [spelling, canonical] of respelled) {
      assert.throws(() => renderMap([entry(spelling)], resolved, ""), {
        name: "MapEntryError",
        message: `spool entry "${spelling}" is not in canonical form (${canonical})`,
      });
    }
  });
});

describe("mapAddresses", () => {
  it("orders exactly as compareIps does", () => {
    const ips = [
      "1.0.0.0",
      "1.0.0.1",
      "1.0.1.0",
      "9.255.255.255",
      "10.0.0.2",
      "10.0.0.10",
      "10.0.0.100",
      "10.0.1.0",
      "127.0.0.1",
      "192.0.2.1",
      "223.255.255.255",
      "::1",
      "::2",
      "::ff",
      "::100",
      "::1:0",
      "::102:304",
      "1::",
      "1::1",
      "2001:db8::1",
      "2001:db8::1:0:0:1",
      "2001:db8:0:1::",
      "2001:db8:0:1:1:1:1:1",
      "2001:db8:1::",
      "fec0::1",
      "feff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
    ];
    // A fixed shuffle, so that a failure can be reproduced.
    const shuffled = ips
      .map((ip, n) => ({ ip, n: (n * 17) % ips.length }))
      .sort((a, b) => a.n - b.n);
    const expected = [...ips].sort(compareIps);
    assert.deepEqual(expected, ips, "the list above is in compareIps order");
    assert.deepEqual(
      mapAddresses(shuffled.map(({ ip }) => entry(ip))).map((ip) => ip.address),
      expected,
    );
  });
});

describe("tcpserverKey", () => {
  // Measured with Debian's ucspi-tcp-ipv6 tcpserver: $TCPREMOTEIP for connections from these.
  const measured: [string, string][] = [
    ["2001:db8:0:1::1", "2001:db8:0:1::1"],
    ["2001:db8::1:0:0:1", "2001:db8::1:0:0:1"],
    ["2001:db8:0:0:1::", "2001:db8:0:0:1::"],
    ["2001:db8:0:1:1:1:1:1", "2001:db8::1:1:1:1:1"],
    ["2001:1:0:1:0:1:1:1", "2001:1::1:0:1:1:1"],
    ["2001:1:1:1:1:1:1:0", "2001:1:1:1:1:1:1::"],
    ["0:1:1:1:1:1:1:1", "::1:1:1:1:1:1:1"],
    ["2001:db8:aa::1:0:0", "2001:db8:aa::1:0:0"],
    ["2001:db8::", "2001:db8::"],
    ["::1", "::1"],
    ["::102:304", "::102:304"],
    ["192.0.2.1", "192.0.2.1"],
  ];
  for (const [address, expected] of measured) {
    it(`${address} -> ${expected}`, () => {
      const ip = canonicalIp(address);
      assert.equal(ip.address, address, "the table must list canonical addresses");
      assert.equal(tcpserverKey(ip), expected);
    });
  }
});

describe("resolveMap", () => {
  it("fills in each MTA's defaults", () => {
    const summary = (overrides: Partial<MapConfig>) => {
      const r = resolveMap(mapConfig(overrides));
      return [r.format, r.type, r.command, r.products, r.restart, r.header !== null];
    };
    const on = { enabled: true, command: "" };
    assert.deepEqual(summary({ mta: "postfix", restart: on }), [
      "%i OK",
      "hash",
      "postmap hash:%r",
      [".db"],
      "postfix reload",
      true,
    ]);
    assert.deepEqual(summary({ mta: "postfix", type: "lmdb" }), [
      "%i OK",
      "lmdb",
      "postmap lmdb:%r",
      [".lmdb"],
      null,
      true,
    ]);
    // poprelay writes cdb itself; a site's map.command still runs instead.
    assert.deepEqual(summary({ mta: "postfix", type: "cdb" }), [
      "%i OK",
      "cdb",
      null,
      [".cdb"],
      null,
      true,
    ]);
    assert.equal(resolveMap(mapConfig({ mta: "postfix", type: "cdb" })).writer, "cdb");
    const own = resolveMap(mapConfig({ mta: "postfix", type: "cdb", command: "postmap cdb:%r" }));
    assert.deepEqual([own.writer, own.command], [null, "postmap cdb:%r"]);
    assert.deepEqual(summary({ mta: "postfix", type: "btree" }), [
      "%i OK",
      "btree",
      "postmap btree:%r",
      [".db"],
      null,
      true,
    ]);
    assert.deepEqual(summary({ mta: "postfix", type: "none" }), [
      "%i OK",
      "none",
      null,
      [],
      null,
      true,
    ]);
    assert.deepEqual(summary({ mta: "sendmail", restart: on }), [
      "Connect:%i RELAY",
      "hash",
      "makemap hash %r < %r",
      [".db"],
      "systemctl reload sendmail",
      true,
    ]);
    assert.deepEqual(summary({ mta: "sendmail", type: "btree" }), [
      "Connect:%i RELAY",
      "btree",
      "makemap btree %r < %r",
      [".db"],
      null,
      true,
    ]);
    assert.deepEqual(summary({ mta: "exim", restart: on }), [
      "%i",
      "none",
      null,
      [],
      "systemctl reload exim4",
      true,
    ]);
    assert.deepEqual(summary({ mta: "qmail" }), [
      '%i:allow,RELAYCLIENT=""',
      "cdb",
      "tcprules %r.cdb %r.tmp < %r",
      [".cdb"],
      null,
      true,
    ]);
    assert.deepEqual(summary({ mta: "plain" }), ["%i", "none", null, [], null, false]);
  });

  it("lets a site's settings win", () => {
    const r = resolveMap(
      mapConfig({
        mta: "plain",
        format: "%i RELAY",
        command: "/usr/local/bin/publish %r",
        restart: { enabled: true, command: "/usr/local/bin/kick %m" },
      }),
    );
    assert.deepEqual(
      [r.format, r.command, r.products, r.restart],
      ["%i RELAY", "/usr/local/bin/publish %r", null, "/usr/local/bin/kick %m"],
    );
  });
});

describe("validateMapConfig", () => {
  it("accepts every MTA's defaults", () => {
    for (const mta of ["postfix", "sendmail", "exim", "qmail", "plain"] as const) {
      assert.deepEqual(validateMapConfig(mapConfig({ mta })), [], mta);
    }
  });

  it("names the key and the reason for each problem", () => {
    const cases: [Partial<MapConfig>, string[]][] = [
      [
        { mta: "courier" as MapConfig["mta"] },
        ['map.mta: "courier": unknown (use postfix, sendmail, exim, qmail or plain)'],
      ],
      [
        { type: "dbm" },
        ['map.type: "dbm": not a database type for postfix (use hash, btree, lmdb, cdb or none)'],
      ],
      [
        { mta: "sendmail", type: "lmdb" },
        ['map.type: "lmdb": not a database type for sendmail (use hash, btree or none)'],
      ],
      [
        { mta: "exim", type: "hash" },
        ['map.type: "hash": not a database type for exim (use none)'],
      ],
      [
        { mta: "qmail", type: "hash" },
        ['map.type: "hash": not a database type for qmail (use cdb or none)'],
      ],
      [{ format: "OK" }, ["map.format: has no %i (the address)"]],
      [{ format: "%%i OK" }, ["map.format: has no %i (the address)"]],
      [
        { format: "%i OK\n0.0.0.0/0 OK" },
        ["map.format: contains a newline or NUL (one line per address)"],
      ],
      [{ format: "# %i" }, ["map.format: starts with #, so every line would be a comment"]],
      [{ format: "%i %u" }, ["map.format: unknown escape %u (use %i, %m, %r or %%)"]],
      [
        { command: "postmap hash:%r\nrm -rf /" },
        ["map.command: contains a newline or NUL (one command line)"],
      ],
      [
        { command: "postmap\0 hash:%r" },
        ["map.command: contains a newline or NUL (one command line)"],
      ],
      [{ command: "postmap %i" }, ["map.command: unknown escape %i (use %r, %m or %%)"]],
      [{ command: "postmap hash:%" }, ["map.command: a lone % at the end (use %r, %m or %%)"]],
      [
        { command: 'makemap hash "%r" < %r' },
        ["map.command: remove the quotes around %r/%m: poprelay quotes them itself"],
      ],
      [
        { mta: "plain", restart: { enabled: true, command: "" } },
        ["map.restart.command: restart is enabled but empty, and plain has no default"],
      ],
      [
        { restart: { enabled: true, command: "reload\npostfix" } },
        ["map.restart.command: contains a newline or NUL (one command line)"],
      ],
      [{ file: "" }, ["map.file: empty"]],
      [{ file: "relay" }, ['map.file: "relay": must be an absolute path']],
      [{ file: "/var/lib/poprelay/" }, ["map.file: names a directory, not a file"]],
      [{ static: "tcp.smtp" }, ['map.static: "tcp.smtp": must be an absolute path']],
    ];
    for (const [overrides, expected] of cases) {
      assert.deepEqual(
        validateMapConfig(mapConfig(overrides)),
        expected,
        JSON.stringify(overrides),
      );
    }
  });
});
