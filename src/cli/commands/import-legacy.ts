import { readFileSync } from "node:fs";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { ConfigError } from "../../config/error.js";
import { importLegacy } from "../../config/legacy.js";
import type { Logger } from "../../log.js";
import { builtinAgents, siteAgentsDir } from "../../matcher/agents.js";
import type { CommandContext } from "../command.js";

/**
 * Writes an imported site profile into CONFIG_DIR/agents.d, never over a different file of the
 * same name (the admin's own, or an earlier import they edited).
 */
async function writeSiteProfile(
  configDir: string,
  profile: NonNullable<ReturnType<typeof importLegacy>["profile"]>,
  log: Logger,
): Promise<void> {
  const path = join(siteAgentsDir(configDir), basename(profile.file));
  const existing = await readFile(path, "utf8").catch(() => undefined);
  if (existing !== undefined && existing !== profile.yaml)
    throw new ConfigError([
      `${path}: exists and differs from the imported profile; move it away, or compare it with the import and keep yours`,
    ]);
  if (existing === undefined) {
    await mkdir(siteAgentsDir(configDir), { recursive: true });
    await writeFile(path, profile.yaml, { flag: "wx" });
  }
  log.notice(`wrote the site profile ${path} (program ${profile.program})`);
}

/** Writes a file the import made; one with other content already there is the admin's. */
async function writeOnce(path: string, text: string): Promise<void> {
  const existing = await readFile(path, "utf8").catch(() => undefined);
  if (existing === text) return;
  if (existing !== undefined) {
    throw new Error(
      `${path} exists already with other lines: compare it with the lines it would get, then remove it and import again`,
    );
  }
  await mkdir(dirname(path), { recursive: true, mode: 0o755 });
  // The daemon's user reads it; the lines are access rules, not secrets.
  await writeFile(path, text, { mode: 0o644, flag: "wx" });
}

/** `poprelay import-legacy FILE`: a Mail::POPRelay configuration as YAML for conf.d. */
export async function run(context: CommandContext): Promise<number> {
  const file = context.args[0] ?? "";
  const text = await readFile(file, "utf8").catch((error: Error) => {
    throw new Error(`${file}: cannot read: ${error.message}`);
  });
  const result = importLegacy(text, file, builtinAgents(), {
    read: (path) => {
      try {
        return readFileSync(path, "utf8");
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
        throw error;
      }
    },
    headFile: (relayFile) => join(context.configDir, "preserved", basename(relayFile)),
  });
  for (const { path, text } of result.files) await writeOnce(path, text);
  if (result.profile) await writeSiteProfile(context.configDir, result.profile, context.log);
  context.out(result.yaml);
  for (const note of result.notes) context.log.warning(note);
  return 0;
}
