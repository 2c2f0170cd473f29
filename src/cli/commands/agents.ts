import { ConfigError } from "../../config/error.js";
import { loadAllAgents } from "../../matcher/agents.js";
import type { CommandContext } from "../command.js";

const PROVENANCE = {
  captured: "captured from the running server",
  source: "read from source (not captured)",
  both: "captured, and read from source",
} as const;

/** `poprelay agents`: the profiles, built-in and the site's. */
export async function run(context: CommandContext): Promise<number> {
  const { profiles, problems } = loadAllAgents(context.configDir);
  for (const profile of profiles) {
    const samples = profile.samples
      ? `samples ${PROVENANCE[profile.samples.provenance]}`
      : "no samples";
    context.out(`${profile.name.padEnd(12)}${profile.summary}\n`);
    context.out(`${"".padEnd(14)}${profile.source}: ${profile.file}; ${samples}\n`);
    for (const covered of profile.covers) context.out(`${"".padEnd(14)}${covered}\n`);
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return 0;
}
