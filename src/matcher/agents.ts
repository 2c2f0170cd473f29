/**
 * Where agent profiles are found: the built-ins (/usr/share/poprelay/agents.d, or the source
 * tree's agents.d when poprelay runs from it) and the site's (CONFIG_DIR/agents.d), which wins
 * by name. Loading a profile by name reads its one file only.
 */
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { basename, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { AgentProfile } from "./profile.js";
import { PROFILE_NAME, ProfileError, parseProfile } from "./profile-file.js";

/** Where the package installs the built-in profiles. */
export const INSTALLED_AGENTS_DIR = "/usr/share/poprelay/agents.d";
// build/src/matcher/agents.js -> the source tree's agents.d; absent in the installed package.
const SOURCE_AGENTS_DIR = fileURLToPath(new URL("../../../agents.d", import.meta.url));

export function builtinAgentsDir(): string {
  return existsSync(SOURCE_AGENTS_DIR) ? SOURCE_AGENTS_DIR : INSTALLED_AGENTS_DIR;
}

export function siteAgentsDir(configDir: string): string {
  return join(configDir, "agents.d");
}

/** `--agent FILE` names a file (a path, or NAME.yaml); anything else is a profile name. */
export function isProfileFile(spec: string): boolean {
  return spec.includes("/") || /\.ya?ml$/.test(spec);
}

/** Reads and validates one profile file; a file outside the built-in directory is the site's. */
export function readProfile(file: string, source?: "built-in" | "site"): AgentProfile {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (error) {
    throw new ProfileError([`${file}: cannot read: ${(error as Error).message}`]);
  }
  return parseProfile(text, file, source ?? "site");
}

/** The profile NAME (the site's, else the built-in) or the profile in FILE. */
export function loadAgent(spec: string, configDir: string): AgentProfile {
  if (isProfileFile(spec)) return readProfile(spec);
  if (!PROFILE_NAME.test(spec))
    throw new ProfileError([`agent: ${JSON.stringify(spec)}: not a profile name or file`]);
  const site = join(siteAgentsDir(configDir), `${spec}.yaml`);
  if (existsSync(site)) return readProfile(site, "site");
  const builtin = join(builtinAgentsDir(), `${spec}.yaml`);
  if (existsSync(builtin)) return readProfile(builtin, "built-in");
  const named = (dir: string) => profileNames(dir).join(", ") || "none";
  throw new ProfileError([
    `agent: ${JSON.stringify(spec)}: no such profile (built in: ${named(builtinAgentsDir())}; site: ${named(siteAgentsDir(configDir))}); looked for ${site} and ${builtin}`,
  ]);
}

/** The names of the profile files in a directory, sorted; none when it does not exist. */
function profileNames(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((entry) => entry.endsWith(".yaml"))
    .map((entry) => basename(entry, ".yaml"))
    .sort();
}

/** Every profile file by name, sorted: the site's in place of a built-in of the same name. */
export function agentFiles(
  configDir: string,
): Map<string, { file: string; source: "built-in" | "site" }> {
  const found = new Map<string, { file: string; source: "built-in" | "site" }>();
  for (const [dir, source] of [
    [builtinAgentsDir(), "built-in"],
    [siteAgentsDir(configDir), "site"],
  ] as const) {
    for (const name of profileNames(dir))
      found.set(name, { file: join(dir, `${name}.yaml`), source });
  }
  return new Map([...found].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

/** Every profile, read and validated; the problems of those that fail, each naming its file. */
export function loadAllAgents(configDir: string): {
  profiles: AgentProfile[];
  problems: string[];
} {
  const profiles: AgentProfile[] = [];
  const problems: string[] = [];
  for (const { file, source } of agentFiles(configDir).values()) {
    try {
      profiles.push(readProfile(file, source));
    } catch (error) {
      if (!(error instanceof ProfileError)) throw error;
      problems.push(...error.problems);
    }
  }
  return { profiles, problems };
}

/** A built-in profile by name, whatever the site has (tests, the bench). */
export function builtinAgent(name: string): AgentProfile {
  return readProfile(join(builtinAgentsDir(), `${name}.yaml`), "built-in");
}

/** Every built-in profile, sorted by name. */
export function builtinAgents(): AgentProfile[] {
  const dir = builtinAgentsDir();
  return profileNames(dir).map((name) => readProfile(join(dir, `${name}.yaml`), "built-in"));
}
