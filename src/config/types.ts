/** The effective configuration of one instance, after merging conf.d and its overrides. */
export interface Config {
  /** Agent profile name (defaults to the instance name). */
  agent: string;
  input: {
    source: "auto" | "journal" | "file";
    file: string;
    journal: { matches: string[]; directory: string };
  };
  match: {
    /** Custom login regex with (?<user>…) and (?<ip>…); empty: the agent's own. */
    regex: string;
    /** Syslog tags replacing the agent's; empty: the agent's. */
    programs: string[];
    /** Journal trust rules ("_FIELD=value ...") replacing the agent's; empty: the agent's. */
    trusted: string[];
    ignore: string[];
    allow: string[];
  };
  relay: { /** Seconds a login may relay. */ period: number };
  spool: { directory: string };
  state: { directory: string };
  map: MapConfig;
}

export type MtaName = "postfix" | "sendmail" | "exim" | "qmail" | "plain";

export interface MapConfig {
  mta: MtaName;
  /** The text map; %r in formats and commands. */
  file: string;
  /** Line template: %i address (in the MTA's key spelling), %m mta, %r map file. Empty: per MTA. */
  format: string;
  /** Database type for the default command: hash, btree, lmdb, cdb or none. Empty: per MTA. */
  type: string;
  /** Database build command (%r, %m). Empty: per MTA and type. */
  command: string;
  /** A file of the site's own lines, copied after the generated ones (qmail's static tcprules). */
  static: string;
  restart: { enabled: boolean; command: string };
}
