import { ConfigError } from "../../config/error.js";
import { describeConfig, loadConfig } from "../../config/load.js";
import { chooseMapType } from "../../maps/choose-type.js";
import { checkMapTools, exactnessWarnings } from "../../maps/settings.js";
import { loadAllAgents } from "../../matcher/agents.js";
import { expandIgnore, MYNETWORKS } from "../../matcher/mynetworks.js";
import { profileFor } from "../../matcher/profile-for.js";
import { readSamples, runSamples } from "../../matcher/samples.js";
import type { CommandContext } from "../command.js";

/**
 * Validates every agent profile (built-in and the site's) and runs each one's samples; throws
 * ConfigError naming each file, key or sample line that fails. Returns a one-line summary.
 */
function checkAgents(configDir: string): string {
  const { profiles, problems } = loadAllAgents(configDir);
  // Classic stamps carry no year: samples are read as of now, the year they fall in.
  const now = new Date();
  let run = 0;
  for (const profile of profiles) {
    if (!profile.samples) continue;
    let samples: ReturnType<typeof readSamples>;
    try {
      samples = readSamples(profile.samples.file);
    } catch (error) {
      problems.push((error as Error).message);
      continue;
    }
    for (const result of runSamples(profile, samples, now)) {
      run++;
      if (result.failure)
        problems.push(`${profile.samples.file}:${result.sample.line}: ${result.failure}`);
    }
  }
  if (problems.length > 0) throw new ConfigError(problems);
  const site = profiles.filter((p) => p.source === "site").length;
  return `agents ok: ${profiles.length} profile(s) (${profiles.length - site} built-in, ${site} in ${configDir}/agents.d), ${run} sample line(s) as annotated`;
}

/** `poprelay check [--print]`: the configuration, the map's tools and every agent profile. */
export async function run(context: CommandContext): Promise<number> {
  const loaded = await loadConfig(context.configDir, context.instance);
  const choice = await chooseMapType(loaded.config.map);
  await checkMapTools(choice.map);
  if (loaded.config.match.ignore.includes(MYNETWORKS)) {
    const ignore = await expandIgnore([MYNETWORKS]);
    for (const note of ignore.notes) context.log.warning(note);
    context.out(`match.ignore: ${MYNETWORKS} is ${ignore.networks.join(" ") || "(nothing)"}\n`);
  }
  const agents = checkAgents(context.configDir);
  // The configured agent, as the daemon will load it (match.regex checked against it).
  if (loaded.config.agent !== "") profileFor(loaded.config, context.configDir);
  for (const warning of exactnessWarnings(choice.map, loaded.config.match.allow))
    context.log.warning(warning);
  if (choice.reason) context.out(`${choice.reason}\n`);
  if (context.options.print) context.out(await describeConfig(loaded));
  else
    context.out(
      `configuration ok: ${loaded.files.length} file(s) in ${context.configDir}/conf.d\n${agents}\n`,
    );
  return 0;
}
