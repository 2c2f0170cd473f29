/**
 * Sendmail as scripts/test.sh unpacks it into .cache (it conflicts with Postfix as a package):
 * its binaries, a sendmail.cf built by m4 from Debian's sendmail-cf, and a run fed on stdin.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { TestContext } from "node:test";
import { IN_CI, ROOT, run } from "../helpers.js";

export const SENDMAIL_BIN = join(ROOT, ".cache/sendmail/usr/libexec/sendmail");
export const SENDMAIL_CF = join(ROOT, ".cache/sendmail-cf/usr/share/sendmail/cf");

/** A tool scripts/test.sh unpacks into .cache: its path, or a skip (a failure under CI). */
export async function cached(t: TestContext, path: string): Promise<string | undefined> {
  if ((await run("test", ["-e", path])).code === 0) return path;
  const message = `${path} not found (run scripts/test.sh)`;
  if (IN_CI) assert.fail(message);
  t.skip(message);
  return undefined;
}

/**
 * A sendmail.cf built by m4 from Debian's sendmail-cf with the site's own sendmail.mc lines
 * (FEATUREs, LOCAL_CONFIG, LOCAL_RULESETS): the rulesets a site's sendmail.cf runs.
 */
export async function sendmailCf(dir: string, siteLines: readonly string[]): Promise<string> {
  const mc = join(dir, "sendmail.mc");
  await writeFile(
    mc,
    [
      "divert(0)dnl",
      `include(\`${SENDMAIL_CF}/m4/cf.m4')dnl`,
      "OSTYPE(`linux')dnl",
      "define(`confDEF_USER_ID', `0:0')dnl",
      ...siteLines,
      "MAILER(`local')dnl",
      "MAILER(`smtp')dnl",
      "",
    ].join("\n"),
  );
  const built = await run("m4", [`-D_CF_DIR_=${SENDMAIL_CF}/`, mc]);
  assert.equal(built.code, 0, built.stderr);
  const cf = join(dir, "sendmail.cf");
  await writeFile(cf, built.stdout);
  return cf;
}

/** `sendmail -bt` with this cf, fed `input`: its output. */
export const addressTest = (cf: string, input: string) =>
  runWithInput(
    join(SENDMAIL_BIN, "sendmail"),
    // Scratch directories are under /tmp: sendmail would call a map there unsafe.
    ["-C", cf, "-O", "DontBlameSendmail=TrustStickyBit,MapInUnsafeDirPath", "-bt"],
    input,
  );

export function runWithInput(
  file: string,
  args: readonly string[],
  input: string,
): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, [...args], { stdio: ["pipe", "pipe", "pipe"] });
    let output = "";
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
      output += chunk;
    });
    child.stderr.resume();
    child.on("error", reject);
    child.on("close", () => resolve(output));
    child.stdin.end(input);
  });
}
