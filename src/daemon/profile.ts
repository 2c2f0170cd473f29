/**
 * The agent profile a configuration names, for the daemon and `poprelay match`. Apart from the
 * daemon's other modules, so that `match` loads only what matching needs.
 */
import { ConfigError } from "../config/load.js";
import { parseTrustRule } from "../config/schema.js";
import type { Config } from "../config/types.js";
import { AGENTS } from "../matcher/agents/index.js";
import type { AgentProfile } from "../matcher/profile.js";

/** The agent's profile, with the site's match.programs and match.trusted in place of its own. */
export function profileFor(config: Config): AgentProfile {
  if (config.agent === "") {
    throw new ConfigError(["agent: not set; run with --instance NAME or set agent: in conf.d"]);
  }
  const profile = AGENTS.get(config.agent);
  if (!profile) {
    const known = [...AGENTS.keys()].join(", ");
    throw new ConfigError([
      `agent: ${JSON.stringify(config.agent)}: no such profile (built in: ${known})`,
    ]);
  }
  const { programs, trusted } = config.match;
  return {
    ...profile,
    programs: programs.length > 0 ? programs : profile.programs,
    journal: trusted.length > 0 ? trusted.map(parseTrustRule) : profile.journal,
  };
}
