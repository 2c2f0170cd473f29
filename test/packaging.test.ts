/**
 * The systemd units and the Debian package, for real (issue 5):
 * - the units' sandbox scores 1.5 or lower with `systemd-analyze security --offline=true`;
 * - `npm run package` builds dist/poprelay_<version>_<arch>.deb, and lintian finds no error in it;
 * - the .deb installs with apt-get on this machine, `poprelay --version` and `poprelay check`
 *   work with the shipped configuration, `systemd-analyze verify` passes on every installed
 *   unit, and `dpkg --purge` leaves nothing behind;
 * - the installed package under each Debian release's own systemd, as PID 1 in a container, is
 *   test/field.test.ts's part.
 * Outside CI a missing tool (or not being root) skips; under CI=true it fails.
 */
import assert from "node:assert/strict";
import { copyFile, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { after, before, describe, it } from "node:test";
import { loadConfig } from "../src/config/load.js";
import { ROOT } from "./helpers.js";
import {
  buildPackage,
  describeRun,
  expectedPackage,
  packagingSkipReason,
  sh,
} from "./support/packaging.js";

const skip = packagingSkipReason();
const TARGET = 1.5;
const UNITS = ["poprelay@dovecot.service", "poprelay-cleanup.service", "poprelay-cleanup.timer"];

/** "→ Overall exposure level for X: 0.5 SAFE" → 0.5 */
function exposure(output: string): number {
  const match = /Overall exposure level for \S+: (\d+(?:\.\d+)?)/.exec(output);
  assert.ok(match, `no overall exposure level in:\n${output}`);
  return Number(match[1]);
}

const tmp = () => mkdtemp(join(tmpdir(), "poprelay-pkg-"));
/** dpkg-query's -f for one field: -f=${Field}. */
const showField = (name: string) => `-f=\${${name}}`;

describe("systemd units", { skip }, () => {
  it(`score ${TARGET} or lower with systemd-analyze security --offline=true`, async (t) => {
    const dir = await tmp();
    try {
      for (const unit of ["poprelay@.service", "poprelay-cleanup.service"])
        await copyFile(join(ROOT, "systemd", unit), join(dir, unit));
      for (const unit of ["poprelay@dovecot.service", "poprelay-cleanup.service"]) {
        // --threshold is the exposure times ten: it fails the command above the target.
        const run = await sh("systemd-analyze", [
          "security",
          "--offline=true",
          `--threshold=${TARGET * 10}`,
          join(dir, unit),
        ]);
        const score = exposure(run.stdout);
        t.diagnostic(`${unit}: ${score}`);
        assert.equal(run.code, 0, describeRun(run));
        assert.ok(score <= TARGET, `${unit}: ${score} > ${TARGET}\n${run.stdout}`);
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("poprelay-generator: Type=notify-reload from systemd 253 on; on 252 in a container, its boot ID", async () => {
    const generator = join(ROOT, "packaging/generator.sh");
    const dir = await tmp();
    try {
      const own = await sh("systemctl", ["--version"]);
      const version = Number(/^systemd (\d+)/.exec(own.stdout)?.[1]);
      const dropIns = (out: string) => join(out, "poprelay@.service.d");
      const listing = async (out: string) => {
        try {
          return (await readdir(dropIns(out))).sort();
        } catch {
          return [];
        }
      };

      const here = join(dir, "here");
      await mkdir(here);
      const ran = await sh(generator, [here, here, here]);
      assert.equal(ran.code, 0, describeRun(ran));
      assert.equal(
        (await listing(here)).includes("50-notify-reload.conf"),
        version >= 253,
        `systemd ${version}: ${(await listing(here)).join(", ")}`,
      );

      // Another systemd, in a container or not: its systemctl and systemd-detect-virt, bound
      // over this machine's in a mount namespace of our own.
      const bootId = (await readFile("/proc/sys/kernel/random/boot_id", "utf8")).trim();
      const cases: [string, boolean, string[]][] = [
        ["systemd 256 (256.7-1)", false, ["50-notify-reload.conf"]],
        ["systemd 252 (252.39-1~deb12u2)", false, []],
        ["systemd 252 (252.39-1~deb12u2)", true, ["50-container-boot-id.conf", "boot_id"]],
        ["systemd 262 (262-1)", true, ["50-notify-reload.conf"]],
      ];
      for (const [fake, container, expected] of cases) {
        const out = join(dir, `${fake.split(" ")[1]}-${container}`);
        await mkdir(out);
        const systemctl = join(dir, "systemctl");
        const detectVirt = join(dir, "systemd-detect-virt");
        await writeFile(systemctl, `#!/bin/sh\necho '${fake}'\necho '+PAM'\n`, { mode: 0o755 });
        await writeFile(detectVirt, `#!/bin/sh\nexit ${container ? 0 : 1}\n`, { mode: 0o755 });
        const run = await sh("unshare", [
          "--mount",
          "--propagation",
          "private",
          "sh",
          "-c",
          `mount --bind "$1" "$(readlink -f /usr/bin/systemctl)" &&
           mount --bind "$2" "$(readlink -f /usr/bin/systemd-detect-virt)" && exec "$3" "$4"`,
          "sh",
          systemctl,
          detectVirt,
          generator,
          out,
        ]);
        assert.equal(run.code, 0, describeRun(run));
        assert.deepEqual(await listing(out), expected, `${fake}, container: ${container}`);
        if (expected.includes("50-notify-reload.conf")) {
          const text = await readFile(join(dropIns(out), "50-notify-reload.conf"), "utf8");
          assert.match(text, /^\[Service\]$/m);
          assert.match(text, /^Type=notify-reload$/m);
          // The 252 ExecReload= (which sends SIGHUP itself) is reset: one SIGHUP per reload.
          assert.match(text, /^ExecReload=\nExecReload=\/usr\/bin\/poprelay check --instance %i$/m);
        }
        if (expected.includes("boot_id")) {
          assert.equal((await readFile(join(dropIns(out), "boot_id"), "utf8")).trim(), bootId);
          const text = await readFile(join(dropIns(out), "50-container-boot-id.conf"), "utf8");
          assert.match(
            text,
            new RegExp(
              `^BindReadOnlyPaths=${dropIns(out)}/boot_id:/proc/sys/kernel/random/boot_id$`,
              "m",
            ),
          );
        }
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("the per-MTA examples are valid configurations, and conf.d/examples is not read", async () => {
    const shipped = await loadConfig(ROOT);
    assert.deepEqual(
      shipped.files.map((f) => basename(f)),
      ["00-poprelay.yaml"],
    );
    const examples = (await readdir(join(ROOT, "conf.d/examples"))).sort();
    assert.deepEqual(examples, [
      "exim.yaml",
      "postfix.yaml",
      "qmail.yaml",
      "redis-pop-host.yaml",
      "redis-smtp-host.yaml",
      "sendmail-drac.yaml",
      "sendmail-popauth.yaml",
      "sendmail.yaml",
    ]);
    // The several-hosts examples write no map: Postfix asks the policy service. The
    // popauth and DRAC recipes are Sendmail maps keyed by the bare address.
    const mta: Record<string, string> = {
      "redis-pop-host.yaml": "none",
      "redis-smtp-host.yaml": "none",
      "sendmail-drac.yaml": "sendmail",
      "sendmail-popauth.yaml": "sendmail",
    };
    for (const example of examples) {
      const dir = await tmp();
      try {
        await mkdir(join(dir, "conf.d"));
        await copyFile(join(ROOT, "conf.d/00-poprelay.yaml"), join(dir, "conf.d/00-poprelay.yaml"));
        await copyFile(join(ROOT, "conf.d/examples", example), join(dir, "conf.d/50-local.yaml"));
        const loaded = await loadConfig(dir, "dovecot");
        assert.equal(loaded.config.map.mta, mta[example] ?? example.replace(".yaml", ""), example);
        // The MTA's side of it is in the comments.
        const text = await readFile(join(ROOT, "conf.d/examples", example), "utf8");
        const snippet = {
          "postfix.yaml": "check_client_access cidr:/var/lib/poprelay/relay",
          "sendmail.yaml": "FEATURE(`access_db'",
          "sendmail-drac.yaml": "FEATURE(`drac', `btree /etc/mail/dracd')",
          "sendmail-popauth.yaml": "Kpopauth hash -a<OK> /etc/mail/popauth",
          "exim.yaml": "net-iplsearch;/var/lib/poprelay/relay",
          "qmail.yaml": "tcpserver -x /var/lib/poprelay/relay.cdb",
          "redis-pop-host.yaml": "PrivateNetwork=no",
          "redis-smtp-host.yaml": "check_policy_service inet:127.0.0.1:10040",
        }[example];
        assert.ok(snippet && text.includes(snippet), `${example}: ${snippet}`);
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    }
  });
});

describe("the Debian package", { skip }, () => {
  let deb = "";
  before(async () => {
    deb = await buildPackage();
  });

  const field = async (name: string) => (await sh("dpkg-deb", ["-f", deb, name])).stdout.trim();

  it("is dist/poprelay_<version>_<arch>.deb with the program, its modules, units and config", async () => {
    const { version, arch } = await expectedPackage();
    assert.equal(deb, join(ROOT, "dist", `poprelay_${version}_${arch}.deb`));
    assert.equal(await field("Version"), version);
    assert.equal(await field("Architecture"), arch);
    // One range for npm and dpkg: package.json's engines, bounded below only (Node-API).
    const { engines } = JSON.parse(await readFile(join(ROOT, "package.json"), "utf8")) as {
      engines: { node: string };
    };
    const depends = await field("Depends");
    assert.equal(engines.node, ">=18.19");
    assert.match(depends, /^nodejs \(>= 18\.19\), libc6 \(>= [\d.]+\), systemd$/);

    const listing = await sh("dpkg-deb", ["--contents", deb]);
    const files = listing.stdout
      .split("\n")
      .map((line) => line.split(/\s+/).slice(5).join(" ").replace(/^\./, ""))
      .filter((path) => path !== "");
    for (const path of [
      "/usr/bin/poprelay",
      "/usr/lib/poprelay/package.json",
      "/usr/lib/poprelay/bin/poprelay.js",
      "/usr/lib/poprelay/build/src/cli/main.js",
      "/usr/lib/poprelay/reload",
      "/usr/lib/poprelay/native/build/Release/poprelay.node",
      "/usr/lib/poprelay/node_modules/yaml/package.json",
      "/usr/lib/systemd/system/poprelay@.service",
      "/usr/lib/systemd/system/poprelay-cleanup.service",
      "/usr/lib/systemd/system/poprelay-cleanup.timer",
      "/lib/systemd/system-generators/poprelay-generator",
      "/usr/lib/sysusers.d/poprelay.conf",
      "/usr/lib/tmpfiles.d/poprelay.conf",
      "/etc/poprelay/conf.d/00-poprelay.yaml",
      "/usr/share/man/man8/poprelay.8.gz",
      "/usr/share/doc/poprelay/copyright",
      "/usr/share/doc/poprelay/changelog.gz",
      "/usr/share/doc/poprelay/examples/postfix.yaml",
    ])
      assert.ok(files.includes(path), `${path} is not in the package`);
    // Production only: no tests, TypeScript, source maps, dev tools, addon source or build tree.
    const stray = files.filter((path) =>
      /\/build\/test\/|\.ts$|\.map$|node_modules\/(typescript|@biomejs|@types)\/|obj\.target|\.(c|gyp|mk)$|Makefile$/.test(
        path,
      ),
    );
    assert.deepEqual(stray, []);

    const control = await mkdtemp(join(tmpdir(), "poprelay-control-"));
    try {
      await sh("dpkg-deb", ["--control", deb, control]);
      assert.equal(
        (await readFile(join(control, "conffiles"), "utf8")).trim(),
        "/etc/poprelay/conf.d/00-poprelay.yaml",
      );
    } finally {
      await rm(control, { recursive: true, force: true });
    }
  });

  it("has no lintian errors", async (t) => {
    const run = await sh("lintian", ["--display-info", deb], { timeoutMs: 300_000 });
    const lines = run.stdout.split("\n").filter((line) => /^[EWIPX]: /.test(line));
    t.diagnostic(`lintian: ${lines.length === 0 ? "nothing to say" : `\n${lines.join("\n")}`}`);
    assert.deepEqual(
      lines.filter((line) => line.startsWith("E: ")),
      [],
    );
    assert.equal(run.code, 0, describeRun(run));
  });

  it("installs with apt-get, runs with the shipped configuration, and purges cleanly", async (t) => {
    // Node.js must come from a package for Depends: nodejs to hold (NodeSource's here).
    const owner = await sh("dpkg", ["-S", "/usr/bin/node"]);
    assert.equal(owner.code, 0, `/usr/bin/node belongs to no package: ${describeRun(owner)}`);
    const nodePackage = owner.stdout.split(":")[0] ?? "";
    const nodeVersion = await sh("dpkg-query", ["-W", showField("Version"), nodePackage]);
    t.diagnostic(`/usr/bin/node: ${nodePackage} ${nodeVersion.stdout}`);

    const apt = { env: { DEBIAN_FRONTEND: "noninteractive" }, timeoutMs: 300_000 };
    await sh("dpkg", ["--purge", "poprelay"], apt);
    after(() => sh("dpkg", ["--purge", "poprelay"], apt));
    const install = await sh("apt-get", ["install", "-y", "--no-install-recommends", deb], apt);
    assert.equal(install.code, 0, describeRun(install));

    const { version } = await expectedPackage();
    const ver = await sh("poprelay", ["--version"]);
    assert.equal(ver.stdout.trim(), `poprelay ${version}`, describeRun(ver));
    const check = await sh("poprelay", ["check"]);
    assert.equal(check.code, 0, describeRun(check));
    assert.match(check.stdout, /^configuration ok: 1 file\(s\) in \/etc\/poprelay\/conf.d$/m);

    // sysusers.d and tmpfiles.d did their part.
    const id = await sh("id", ["-un", "poprelay"]);
    assert.equal(id.stdout.trim(), "poprelay", describeRun(id));
    for (const [path, mode] of [
      ["/var/lib/poprelay", 0o711],
      ["/var/lib/poprelay/spool", 0o750],
    ] as const) {
      const st = await stat(path);
      assert.equal(st.mode & 0o7777, mode, path);
      assert.equal((await sh("stat", ["-c", "%U:%G", path])).stdout.trim(), "poprelay:poprelay");
    }
    // The cleanup timer is enabled on installation.
    const wants = "/etc/systemd/system/timers.target.wants/poprelay-cleanup.timer";
    assert.ok((await stat(wants)).isFile(), wants);

    // root's `poprelay add` runs as poprelay: the daemon can rewrite what it leaves.
    const add = await sh("poprelay", ["add", "192.0.2.77", "--user", "admin"]);
    assert.equal(add.code, 0, describeRun(add));
    for (const file of ["/var/lib/poprelay/spool/192.0.2.77", "/var/lib/poprelay/spool/.lock"])
      assert.equal((await sh("stat", ["-c", "%U", file])).stdout.trim(), "poprelay", file);
    const map = await readFile("/var/lib/poprelay/relay", "utf8");
    assert.match(map, /^192\.0\.2\.77\/32 OK$/m);

    // Every installed unit verifies (binaries, man page, dependencies), and the score holds.
    const verify = await sh("systemd-analyze", ["verify", ...UNITS]);
    assert.equal(verify.code, 0, describeRun(verify));
    assert.equal(verify.stderr.trim(), "", verify.stderr);
    const security = await sh("systemd-analyze", [
      "security",
      "--offline=true",
      `--threshold=${TARGET * 10}`,
      "poprelay@dovecot.service",
    ]);
    const score = exposure(security.stdout);
    assert.equal(security.code, 0, describeRun(security));
    assert.ok(score <= TARGET, `${score}`);
    const size = await sh("dpkg-query", ["-W", showField("Installed-Size"), "poprelay"]);
    t.diagnostic(
      `installed poprelay@dovecot.service: ${score}; Installed-Size: ${size.stdout} KiB`,
    );

    const purge = await sh("dpkg", ["--purge", "poprelay"], apt);
    assert.equal(purge.code, 0, describeRun(purge));
    assert.doesNotMatch(purge.stderr, /warning/i, purge.stderr);
    for (const path of [
      "/usr/bin/poprelay",
      "/usr/lib/poprelay",
      "/usr/lib/systemd/system/poprelay@.service",
      "/lib/systemd/system-generators/poprelay-generator",
      "/var/lib/poprelay",
      "/etc/poprelay",
      wants,
      "/var/lib/systemd/deb-systemd-helper-enabled/poprelay-cleanup.timer.dsh-also",
    ])
      await assert.rejects(stat(path), { code: "ENOENT" }, `${path} is still there`);
    const status = await sh("dpkg-query", ["-W", showField("db:Status-Status"), "poprelay"]);
    assert.ok(status.code !== 0 || status.stdout === "not-installed", describeRun(status));
  });
});
