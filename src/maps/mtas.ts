/**
 * What poprelay knows about each MTA, as data: a new MTA is a new row, not a new branch.
 * Commands use the seed's escapes: %r is the text map being built, %m the MTA name.
 */
import type { MtaName } from "../config/types.js";
import type { WriterName } from "./db/writers.js";
import {
  asIs,
  type Exactness,
  exact,
  eximKey,
  type KeySpelling,
  postfixKey,
  sendmailExactness,
  sendmailKey,
  tcpserverExactness,
  tcpserverKey,
} from "./keys.js";

/** How one database type is built, and the file that build leaves next to the text map. */
export interface DatabaseSpec {
  /** Default build command. */
  command: string;
  /** Suffix of the file the command writes beside %r, e.g. ".db" for relay.db. */
  product: string;
  /**
   * Set when poprelay writes this type itself (src/maps/db/): then `command` is only what a
   * site can put in map.command to have the MTA's tool do it instead.
   */
  writer?: WriterName;
}

export interface MtaSpec {
  key: KeySpelling;
  /** Addresses whose line would let others relay too in this MTA's matching: left out. */
  exactness: Exactness;
  /** For `poprelay check`, per family: which grants this MTA cannot make exactly, and why. */
  limits: { 4?: string; 6?: string };
  /** Default line template (map.format empty). */
  format: string;
  /** Database type used when map.type is empty. */
  defaultType: string;
  /** Every allowed map.type; null: the text map is all there is. */
  types: Readonly<Record<string, DatabaseSpec | null>>;
  /** Used when map.restart.enabled and map.restart.command is empty; null: none known. */
  restart: string | null;
  /** Whether the map reader skips `#` lines, so a header comment is safe. */
  comments: boolean;
  /**
   * Set when IPv6 keys depend on the builder: plain tcprules rejects them (and plain tcpserver
   * never sees IPv6 clients), the IPv6-patched one takes them. Checked at write time.
   */
  ipv6Check: "tcprules" | null;
}

const NONE = { none: null } as const;

export const MTAS: Readonly<Record<MtaName, MtaSpec>> = {
  postfix: {
    // Read as cidr:%r (exact); the database only makes smtpd notice a new map (keys.ts).
    key: postfixKey,
    exactness: exact,
    limits: {},
    format: "%i OK",
    defaultType: "hash",
    types: {
      hash: { command: "postmap hash:%r", product: ".db" },
      btree: { command: "postmap btree:%r", product: ".db" },
      lmdb: { command: "postmap lmdb:%r", product: ".lmdb" },
      // Written in-process, byte for byte what postmap writes: no postmap run per login.
      cdb: { command: "postmap cdb:%r", product: ".cdb", writer: "cdb" },
      ...NONE,
    },
    // `postfix reload` works with or without systemd and whatever the unit is called; smtpd
    // notices a rebuilt table by itself, so this is only for sites that insist.
    restart: "postfix reload",
    comments: true,
    ipv6Check: null,
  },
  sendmail: {
    key: sendmailKey,
    exactness: sendmailExactness,
    limits: {
      6:
        "Sendmail looks up Connect:IPv6: keys with parent networks too, so an IPv6 address " +
        "written with :: before its last group (2001:db8::1: also a parent of 2001:db8::1:5) " +
        "is left out of the map and cannot relay",
    },
    format: "Connect:%i RELAY",
    defaultType: "hash",
    types: {
      // The seed's default form; makemap reads the source on stdin.
      hash: { command: "makemap hash %r < %r", product: ".db" },
      btree: { command: "makemap btree %r < %r", product: ".db" },
      ...NONE,
    },
    restart: "systemctl reload sendmail",
    comments: true,
    ipv6Check: null,
  },
  exim: {
    key: eximKey,
    exactness: exact,
    limits: {},
    format: "%i",
    defaultType: "none",
    // Exim rereads an iplsearch file when it changes: no database, no reload needed.
    types: NONE,
    // Debian names the service exim4.
    restart: "systemctl reload exim4",
    comments: true,
    ipv6Check: null,
  },
  qmail: {
    key: tcpserverKey,
    exactness: tcpserverExactness,
    limits: {
      6:
        "tcprules reads a rule ending in : as a prefix, so an IPv6 address whose last group is 0 " +
        "(2001:db8:1:2::) is left out of the map and cannot relay; plain ucspi-tcp cannot " +
        "compile IPv6 rules at all (install ucspi-tcp-ipv6)",
    },
    format: '%i:allow,RELAYCLIENT=""',
    defaultType: "cdb",
    types: {
      // tcprules writes %r.tmp, then renames it onto %r.cdb.
      cdb: { command: "tcprules %r.cdb %r.tmp < %r", product: ".cdb" },
      ...NONE,
    },
    // tcpserver opens the cdb for every connection, so this is rarely wanted.
    restart: "systemctl reload qmail",
    comments: true,
    ipv6Check: "tcprules",
  },
  plain: {
    key: asIs,
    // Whoever reads a plain list decides how it matches.
    exactness: exact,
    limits: {
      4: "poprelay cannot know how the program that reads a plain list matches its lines",
      6: "poprelay cannot know how the program that reads a plain list matches its lines",
    },
    format: "%i",
    defaultType: "none",
    types: NONE,
    // Nothing to guess: whoever reads a plain list says how to tell it.
    restart: null,
    // Unknown reader: a comment line could be read as an address.
    comments: false,
    ipv6Check: null,
  },
};

export const MTA_NAMES = Object.keys(MTAS) as MtaName[];

export function isMtaName(name: string): name is MtaName {
  return Object.hasOwn(MTAS, name);
}
