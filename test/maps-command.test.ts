import assert from "node:assert/strict";
import { access, readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, it } from "node:test";
import { CommandError, prepareCommand, runCommand } from "../src/maps/command.js";
import { processRunning, scratch } from "./helpers.js";
import { waitFor } from "./support/dovecot.js";

const exists = (path: string) =>
  access(path).then(
    () => true,
    () => false,
  );

describe("prepareCommand", () => {
  it("runs a simple command without a shell, one argument per value", () => {
    const prepared = prepareCommand("postmap  lmdb:%r", { r: "/var/lib/a b/relay", m: "postfix" });
    assert.deepEqual(prepared, {
      file: "postmap",
      args: ["lmdb:/var/lib/a b/relay"],
      text: "postmap lmdb:/var/lib/a b/relay",
      shell: false,
    });
  });

  it("uses /bin/sh for redirections and single-quotes every value", () => {
    const prepared = prepareCommand("makemap hash %r < %r # %m 100%%", {
      r: "/tmp/it's",
      m: "sendmail",
    });
    assert.deepEqual(prepared.args, [
      "-c",
      "makemap hash '/tmp/it'\\''s' < '/tmp/it'\\''s' # 'sendmail' 100%",
    ]);
    assert.equal(prepared.file, "/bin/sh");
    assert.equal(prepared.shell, true);
  });
});

describe("runCommand", () => {
  it("passes a hostile config path literally when no shell is needed", async () => {
    const dir = await scratch("poprelay-maps-");
    // Were it run by a shell in `dir`, this name would create `pwned` there.
    const name = "a b $(touch pwned) `touch pwned`";
    await runCommand("touch %r", { r: join(dir, name) }, { cwd: dir });
    assert.deepEqual(await readdir(dir), [name]);
  });

  it("quotes a hostile config path inside a shell command", async () => {
    const dir = await scratch("poprelay-maps-");
    const path = join(dir, `it's a $(touch pwned); \`touch pwned\` "x" *`);
    await writeFile(path, "relay ok\n");
    await runCommand("tr a-z A-Z < %r > %r.out", { r: path }, { cwd: dir });
    assert.equal(await readFile(`${path}.out`, "utf8"), "RELAY OK\n");
    assert.equal(await exists(join(dir, "pwned")), false);
  });

  it("returns stdout and stderr, and feeds input", async () => {
    assert.deepEqual(await runCommand("cat", {}, { input: "fed\n" }), {
      stdout: "fed\n",
      stderr: "",
    });
  });

  it("names the command, the exit status and stderr's last lines when it fails", async () => {
    const script = "for n in 1 2 3 4 5 6 7; do echo line $n >&2; done; exit 3";
    await assert.rejects(runCommand(script, {}), (error: unknown) => {
      assert.ok(error instanceof CommandError);
      assert.equal(error.status, 3);
      assert.equal(
        error.message,
        `command failed: ${script}: exit status 3\n  line 3\n  line 4\n  line 5\n  line 6\n  line 7`,
      );
      return true;
    });
    await assert.rejects(runCommand("false", {}), {
      message: "command failed: false: exit status 1",
    });
  });

  it("reports a program that does not exist, and a signal", async () => {
    await assert.rejects(runCommand("/nonexistent/postmap hash:%r", { r: "/x" }), {
      message:
        "command failed: /nonexistent/postmap hash:/x: cannot run /nonexistent/postmap: spawn /nonexistent/postmap ENOENT",
    });
    await assert.rejects(runCommand("kill -TERM $$", {}), {
      message: "command failed: kill -TERM $$: killed by signal SIGTERM",
    });
  });

  it("kills a command and what it started when it takes too long", async () => {
    const dir = await scratch("poprelay-maps-");
    const started = Date.now();
    await assert.rejects(
      runCommand("sleep 5; touch %r", { r: join(dir, "late") }, { timeoutMs: 200 }),
      {
        message: `command failed: sleep 5; touch '${join(dir, "late")}': timed out after 0.2 s, killed`,
      },
    );
    assert.ok(Date.now() - started < 2000);
  });

  it("does not wait for a child the command left holding its output, and kills it", async () => {
    const dir = await scratch("poprelay-maps-");
    const pid = join(dir, "orphan.pid");
    const output = await runCommand(`sleep 1000 & echo $! > %r; echo done`, { r: pid });
    assert.equal(output.stdout, "done\n");
    const orphan = Number(await readFile(pid, "utf8"));
    await waitFor("the orphan to be killed", () => (processRunning(orphan) ? undefined : true));
  });

  it("kills the command's process group when aborted", async () => {
    const abort = new AbortController();
    const running = runCommand("sleep 1000", {}, { signal: abort.signal });
    abort.abort();
    await assert.rejects(running, /killed: superseded by a newer write, or stopping/);
    await assert.rejects(runCommand("true", {}, { signal: abort.signal }), /not started/);
  });

  it("rejects a template with an unknown escape before running anything", async () => {
    await assert.rejects(runCommand("echo %i", { r: "/x" }), {
      message: 'command failed: echo %i: unknown escape %i in "%i"',
    });
  });
});
