import { constants } from "node:fs";
import { access } from "node:fs/promises";
import { join } from "node:path";
import type { LoadedConfig } from "../config/load.js";
import type { Config } from "../config/types.js";
import type { Logger } from "../log.js";
import { chooseMapType } from "../maps/choose-type.js";
import { createMatcher } from "../matcher/matcher.js";
import { expandIgnore } from "../matcher/mynetworks.js";
import type { AgentProfile } from "../matcher/profile.js";
import { profileFor } from "../matcher/profile-for.js";
import { FileReader } from "../readers/file.js";
import { JournalReader } from "../readers/journal.js";
import { NoReader } from "../readers/none.js";
import type { Reader } from "../readers/types.js";
import { RelayState } from "../relay-state.js";
import { openSpoolStore } from "../spool/open.js";
import type { SpoolStore } from "../spool/types.js";

export { profileFor };

/** What one configuration builds: the stages the daemon wires together. */
export interface Components {
  config: Config;
  /** Names the state files: the instance, or the agent when there is none. */
  name: string;
  /** The agent's profile and matcher; undefined with input.source: none. */
  profile: AgentProfile | undefined;
  match: ReturnType<typeof createMatcher> | undefined;
  relay: RelayState;
  store: SpoolStore;
  reader: Reader;
  source: "journal" | "file" | "none";
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
async function chooseSource(config: Config): Promise<"journal" | "file" | "none"> {
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

/**
 * Relay while the session is open is opt-in: only with relay.session_max longer than
 * relay.period. Otherwise the profile's session rules are left out, and its end lines are
 * neither read nor matched (the readers keep the profile's prefilter).
 */
function withSessions(profile: AgentProfile, config: Config): AgentProfile {
  if (config.relay.session_max > config.relay.period || !profile.session) return profile;
  const { session: _ignored, ...rest } = profile;
  return rest;
}

export async function buildComponents(
  loaded: LoadedConfig,
  log: Logger,
  configDir: string,
): Promise<Components> {
  const choice = await chooseMapType(loaded.config.map);
  if (choice.reason) log.info(choice.reason);
  const config = { ...loaded.config, map: choice.map };
  const source = await chooseSource(config);
  // A map-only host reads no log: it needs no agent.
  const profile =
    source === "none" ? undefined : withSessions(profileFor(config, configDir), config);
  // postfix:mynetworks is read from Postfix here, so a reload reads it again.
  const ignore = profile ? await expandIgnore(config.match.ignore) : undefined;
  for (const note of ignore?.notes ?? []) log.warning(note);
  const match =
    profile &&
    ignore &&
    createMatcher({
      profile,
      regex: config.match.regex || undefined,
      ignore: ignore.networks,
      allow: config.match.allow,
    });
  const name = loaded.instance || config.agent || "poprelay";
  const store = await openSpoolStore(config, log, name);
  // The database (postmap) is rebuilt after the grant, so a login never waits for the one before.
  const relay = new RelayState(store, config.map, log, Date.now, { deferDatabase: true });
  const stateFile = (suffix: string) => join(config.state.directory, `${name}.${suffix}`);
  const reader: Reader = !profile
    ? new NoReader()
    : source === "journal"
      ? new JournalReader({
          matches: journalMatches(profile, config.input.journal.matches),
          directory: config.input.journal.directory || undefined,
          stateFile: stateFile("cursor"),
          firstStartSince: config.relay.period,
          log,
          // A site's match.regex sees every entry; a profile only lines with its literal.
          // Session end lines do not hold the login literal: a profile with session rules reads all.
          prefilter: config.match.regex || profile.session ? undefined : profile.prefilter,
        })
      : new FileReader({
          path: config.input.file,
          stateFile: stateFile("position"),
          log,
        });
  return { config, name, profile, match, relay, store, reader, source };
}
