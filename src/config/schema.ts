import { parseCidr } from "../address/cidr.js";
import { requireCjs } from "../cjs.js";
import { MYNETWORKS } from "../matcher/mynetworks.js";
import { parseTrustRule } from "../matcher/trust-rule.js";
import { parseListen } from "../policy/listen.js";
import { parseHostPort, parseRedisUrl } from "../spool/redis/address.js";
import { parseDuration } from "./duration.js";

const convict = requireCjs("convict") as typeof import("convict");

export { parseTrustRule };

// Formats throw plain messages; the loader adds the file, line and key.
function stringArray(check: (item: string) => void) {
  return (value: unknown) => {
    if (!Array.isArray(value)) throw new TypeError("must be a list");
    value.forEach((item, index) => {
      if (typeof item !== "string") throw new TypeError(`item ${index} must be a string`);
      try {
        check(item);
      } catch (error) {
        throw new TypeError(`item ${index}: ${(error as Error).message}`);
      }
    });
  };
}

function oneLine(value: unknown) {
  if (typeof value !== "string") throw new TypeError("must be a string");
  if (/[\0\r\n]/.test(value)) throw new TypeError("must not contain NUL or line breaks");
}

function absolutePath(value: unknown) {
  oneLine(value);
  if (!(value as string).startsWith("/")) throw new TypeError("must be an absolute path");
}

function optionalAbsolutePath(value: unknown) {
  if (value !== "") absolutePath(value);
}

const JOURNAL_MATCH = /^[A-Z0-9_]+=.*$|^\+$/;
convict.addFormats({
  duration: {
    // Every spelling through the same parser, so the same bounds hold for each.
    validate: (value: unknown) => {
      parseDuration(value);
    },
    // Convict coerces while loading, before validation: leave bad values for validate to report.
    coerce: (value: unknown) => {
      try {
        return parseDuration(value);
      } catch {
        return value;
      }
    },
  },
  // Convict's Boolean turns any string into a boolean; YAML already has true and false.
  "strict-boolean": {
    validate: (value: unknown) => {
      if (typeof value !== "boolean") throw new TypeError("must be true or false");
    },
  },
  "absolute-path": { validate: absolutePath },
  "optional-absolute-path": { validate: optionalAbsolutePath },
  "one-line": { validate: oneLine },
  "cidr-list": { validate: stringArray((item) => parseCidr(item)) },
  "ignore-list": {
    validate: stringArray((item) => {
      if (item !== MYNETWORKS) parseCidr(item);
    }),
  },
  "journal-matches": {
    validate: stringArray((item) => {
      if (!JOURNAL_MATCH.test(item))
        throw new TypeError(`${JSON.stringify(item)} is not FIELD=value or +`);
    }),
  },
  "trust-rules": { validate: stringArray((item) => parseTrustRule(item)) },
  "program-names": {
    validate: stringArray((item) => {
      if (!/^[^\s:[\]]{1,64}$/.test(item))
        throw new TypeError(`${JSON.stringify(item)} is not a syslog tag`);
    }),
  },
  "positive-integer": {
    validate: (value: unknown) => {
      if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 1)
        throw new TypeError("must be a whole number, 1 or more");
    },
  },
  "redis-url": { validate: (value: unknown) => parseRedisUrl(String(value)) },
  "redis-namespace": {
    validate: (value: unknown) => {
      if (typeof value !== "string" || !/^[A-Za-z0-9._-]{1,64}$/.test(value))
        throw new TypeError("must be 1 to 64 letters, digits, '.', '_' or '-'");
    },
  },
  "host-ports": { validate: stringArray((item) => parseHostPort(item)) },
  "policy-listen": {
    validate: (value: unknown) => {
      oneLine(value);
      if (value !== "") parseListen(value as string);
    },
  },
  agent: {
    validate: (value: unknown) => {
      if (
        value !== "" &&
        (typeof value !== "string" || !/^[a-z0-9][a-z0-9_-]{0,63}$/.test(value))
      ) {
        throw new TypeError("must be a profile name: lowercase letters, digits, - and _");
      }
    },
  },
});

/** Every key poprelay reads; unknown keys are errors. Documentation lives in the `doc` fields. */
export const schema = {
  agent: {
    doc: "Agent profile (the POP/IMAP server's login lines). Empty: the instance name.",
    format: "agent",
    default: "",
  },
  input: {
    source: {
      doc: "Where login lines come from: journal, file, auto (journal if readable), or none (a host that only writes its map from Redis).",
      format: ["auto", "journal", "file", "none"],
      default: "auto",
    },
    file: {
      doc: "Log file to follow (seed: mailLogFile).",
      format: "absolute-path",
      default: "/var/log/mail.log",
    },
    journal: {
      matches: {
        doc: "Extra journalctl matches (FIELD=value, or + for OR); the agent supplies defaults.",
        format: "journal-matches",
        default: [] as string[],
      },
      directory: {
        doc: "journalctl --directory (tests, remote journals). Empty: the system journal.",
        format: "optional-absolute-path",
        default: "",
      },
    },
  },
  match: {
    regex: {
      doc: "Custom login regex with (?<user>...) and (?<ip>...) (seed: mailLogRegExp). Empty: the agent's.",
      format: "one-line",
      default: "",
    },
    programs: {
      doc: "Syslog tags the server logs under, replacing the agent's (Cyrus with a custom prefix).",
      format: "program-names",
      default: [] as string[],
    },
    trusted: {
      doc: 'Journal trust rules replacing the agent\'s: each "_FIELD=value ...", all must hold.',
      format: "trust-rules",
      default: [] as string[],
    },
    ignore: {
      doc: `Networks never granted relay; ${MYNETWORKS} reads Postfix's mynetworks (on start and reload).`,
      format: "ignore-list",
      default: ["127.0.0.0/8", "::1/128"],
    },
    allow: {
      doc: "When not empty, only these networks are granted relay.",
      format: "cidr-list",
      default: [] as string[],
    },
  },
  relay: {
    period: {
      doc: "How long a login may relay: seconds, or 90s, 30m, 1h (seed: mailRelayPeriod).",
      format: "duration",
      default: 1800,
    },
    session_max: {
      doc: "While a login's session is open (agents that log its end), relay lasts until relay.period after the end, but never past this long after the login. Set it no longer than relay.period to turn relay while connected off: relay.period from the login.",
      format: "duration",
      default: 43200,
    },
  },
  spool: {
    backend: {
      doc: "Where entries live: file (spool.directory, this host) or redis (shared by several hosts).",
      format: ["file", "redis"],
      default: "file",
    },
    directory: {
      doc: "One file per address (seed: mailRelayDirectory).",
      format: "absolute-path",
      default: "/var/lib/poprelay/spool",
    },
    redis: {
      url: {
        doc: "redis://[:PASSWORD@]HOST:PORT/DB, or rediss:// for TLS. With sentinels or cluster: the password, TLS and database only.",
        format: "redis-url",
        default: "redis://127.0.0.1:6379/0",
      },
      namespace: {
        doc: "Prefix of every key and of the change channel, so several deployments can share one Redis.",
        format: "redis-namespace",
        default: "poprelay",
      },
      sentinels: {
        doc: "Redis Sentinel addresses (HOST:PORT); with them, Sentinel names the master.",
        format: "host-ports",
        default: [] as string[],
      },
      name: {
        doc: "The master's name in Sentinel.",
        format: "one-line",
        default: "mymaster",
      },
      cluster: {
        doc: "Redis Cluster nodes to start from (HOST:PORT).",
        format: "host-ports",
        default: [] as string[],
      },
      ca: {
        doc: "PEM file of the CA that signed Redis' certificate (rediss:// with a private CA). Empty: the system's CAs.",
        format: "optional-absolute-path",
        default: "",
      },
      timeout: {
        doc: "How long Redis may take to answer before the instance counts it unreachable.",
        format: "duration",
        default: 2,
      },
      backlog: {
        doc: "Logins kept on local disk (in state.directory) while Redis is unreachable, at most.",
        format: "positive-integer",
        default: 10000,
      },
    },
  },
  state: {
    directory: {
      doc: "Journal cursor and file offsets.",
      format: "absolute-path",
      default: "/var/lib/poprelay",
    },
  },
  policy: {
    listen: {
      doc: "Postfix policy service for check_policy_service: inet:HOST:PORT or unix:/PATH. Empty: none.",
      format: "policy-listen",
      default: "",
    },
  },
  map: {
    mta: {
      doc: "Which MTA reads the map (seed: mailProgram, %m); none: no map (the policy service answers instead).",
      format: ["postfix", "sendmail", "exim", "qmail", "plain", "none"],
      default: "postfix",
    },
    file: {
      doc: "The relay map (seed: mailRelayFile, %r).",
      format: "absolute-path",
      default: "/var/lib/poprelay/relay",
    },
    format: {
      doc: "One line per address: %i address, %m mta, %r map file (seed: mailRelayFileFormat). Empty: per MTA.",
      format: "one-line",
      default: "",
    },
    type: {
      doc: "Database type for the default command: hash, btree, lmdb, cdb or none. Empty: per MTA.",
      format: ["", "hash", "btree", "lmdb", "cdb", "none"],
      default: "",
    },
    command: {
      doc: "Database build command, %r and %m (seed: mailRelayDatabaseCommand). Empty: per MTA and type.",
      format: "one-line",
      default: "",
    },
    static: {
      doc: "A file of the site's own lines, written after the generated ones (qmail's static tcprules).",
      format: "optional-absolute-path",
      default: "",
    },
    head: {
      doc: "A file of the site's own lines, written before the generated ones (Mail::POPRelay kept the lines above its preserve marker so).",
      format: "optional-absolute-path",
      default: "",
    },
    restart: {
      enabled: {
        doc: "Run the restart command after the map changed (seed: mailProgramRestart).",
        format: "strict-boolean",
        default: false,
      },
      command: {
        doc: "Restart command, %m and %r (seed: mailProgramRestartCommand). Empty: per MTA.",
        format: "one-line",
        default: "",
      },
    },
  },
};
