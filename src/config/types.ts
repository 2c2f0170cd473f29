/** The effective configuration of one instance, after merging conf.d and its overrides. */
export interface Config {
  /** Agent profile name (defaults to the instance name). */
  agent: string;
  input: {
    source: "auto" | "journal" | "file" | "none";
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
  relay: {
    /** Seconds a login may relay. */
    period: number;
    /** Seconds an open session may keep its address relaying, at most, from its login. */
    session_max: number;
  };
  spool: { backend: "file" | "redis"; directory: string; redis: RedisConfig };
  policy: { /** "" (none), inet:HOST:PORT or unix:/PATH. */ listen: string };
  state: { directory: string };
  map: MapConfig;
}

export type MtaName = "postfix" | "sendmail" | "exim" | "qmail" | "plain";

export interface MapConfig {
  /** none: no map at all (a host that answers Postfix through the policy service only). */
  mta: MtaName | "none";
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
  /** A file of the site's own lines, copied before the generated ones (Mail::POPRelay's). */
  head: string;
  restart: { enabled: boolean; command: string };
}

export interface RedisConfig {
  url: string;
  namespace: string;
  sentinels: string[];
  name: string;
  cluster: string[];
  ca: string;
  /** Seconds. */
  timeout: number;
  backlog: number;
}
