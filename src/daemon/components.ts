import { constants } from "node:fs";
import { access } from "node:fs/promises";
import { join } from "node:path";
import { ConfigError, type LoadedConfig } from "../config/load.js";
import { parseTrustRule } from "../config/schema.js";
import type { Config } from "../config/types.js";
import type { Logger } from "../log.js";
import { AGENTS } from "../matcher/agents/index.js";
import { createMatcher } from "../matcher/matcher.js";
import type { AgentProfile } from "../matcher/profile.js";
import { FileReader } from "../readers/file.js";
import { JournalReader } from "../readers/journal.js";
import type { Reader } from "../readers/types.js";
import { RelayState } from "../relay-state.js";
import { FileSpoolStore } from "../spool/file-store.js";

/** What one configuration builds: the stages the daemon wires together. */
export interface Components {
  config: Config;
  /** Names the state files: the instance, or the agent when there is none. */
  name: string;
  profile: AgentProfile;
  match: ReturnType<typeof createMatcher>;
  relay: RelayState;
  reader: Reader;
  source: "journal" | "file";
}

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

/**
 * journalctl arguments for the profile's trusted-field rules, each rule ANDed with the
 * configured extra matches (journalctl ORs the groups that `+` separates).
 */
export function journalMatches(profile: AgentProfile, extra: readonly string[]): string[] {
  return profile.journal.flatMap((rule, i) => [
    ...(i > 0 ? ["+"] : []),
    ...Object.entries(rule).map(([field, value]) => `${field}=${value}`),
    ...extra,
  ]);
}

/** auto: the journal when journald runs here and its files (or the given directory) can be read. */
async function chooseSource(config: Config): Promise<"journal" | "file"> {
  if (config.input.source !== "auto") return config.input.source;
  const directories = config.input.journal.directory
    ? [config.input.journal.directory]
    : ["/var/log/journal", "/run/log/journal"];
  for (const directory of directories) {
    try {
      await access(directory, constants.R_OK | constants.X_OK);
      return "journal";
    } catch {
      // Try the next one.
    }
  }
  return "file";
}

export async function buildComponents(loaded: LoadedConfig, log: Logger): Promise<Components> {
  const { config } = loaded;
  const profile = profileFor(config);
  const match = createMatcher({
    profile,
    regex: config.match.regex || undefined,
    ignore: config.match.ignore,
    allow: config.match.allow,
  });
  const store = new FileSpoolStore({
    directory: config.spool.directory,
    legacyPeriod: config.relay.period,
    log,
  });
  // The database (postmap) is rebuilt after the grant, so a login never waits for the one before.
  const relay = new RelayState(store, config.map, log, Date.now, { deferDatabase: true });
  const name = loaded.instance || config.agent;
  const source = await chooseSource(config);
  const reader: Reader =
    source === "journal"
      ? new JournalReader({
          matches: journalMatches(profile, config.input.journal.matches),
          directory: config.input.journal.directory || undefined,
          stateFile: join(config.state.directory, `${name}.cursor`),
          firstStartSince: config.relay.period,
          log,
          // A site's match.regex sees every entry; a profile only lines with its literal.
          prefilter: config.match.regex ? undefined : profile.prefilter,
        })
      : new FileReader({
          path: config.input.file,
          stateFile: join(config.state.directory, `${name}.position`),
          log,
        });
  return { config, name, profile, match, relay, reader, source };
}
