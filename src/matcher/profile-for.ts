import { ConfigError } from "../config/error.js";
import { taggedRegexProblem } from "../config/legacy-profile.js";
import { DEFAULT_CONFIG_DIR } from "../config/paths.js";
import type { Config } from "../config/types.js";
import { loadAgent } from "./agents.js";
import type { AgentProfile } from "./profile.js";
import { ProfileError } from "./profile-file.js";
import { parseTrustRule } from "./trust-rule.js";

/**
 * The agent's profile (CONFIG_DIR/agents.d/NAME.yaml, else the built-in; or a profile file), with
 * the site's match.programs and match.trusted in place of its own. Apart from the daemon's
 * components so that `poprelay match` loads no reader, spool or map writer.
 */
export function profileFor(config: Config, configDir = DEFAULT_CONFIG_DIR): AgentProfile {
  if (config.agent === "") {
    throw new ConfigError(["agent: not set; run with --instance NAME or set agent: in conf.d"]);
  }
  let profile: AgentProfile;
  try {
    profile = loadAgent(config.agent, configDir);
  } catch (error) {
    if (error instanceof ProfileError) throw new ConfigError(error.problems);
    throw error;
  }
  const { programs, trusted } = config.match;
  const tagged = taggedRegexProblem(
    config.match.regex,
    programs.length > 0 ? programs : profile.programs,
  );
  if (tagged) throw new ConfigError([tagged]);
  return {
    ...profile,
    programs: programs.length > 0 ? programs : profile.programs,
    journal: trusted.length > 0 ? trusted.map(parseTrustRule) : profile.journal,
  };
}
