/**
 * What the MTA's own configuration needs so that it reads poprelay's map (or asks its policy
 * service): `poprelay snippet`. Derived from the resolved map settings, so the lines name the
 * file, table type and database that the writer really produces for this configuration.
 */
import type { Config, MtaName } from "../config/types.js";
import { type ResolvedMap, resolveMap } from "./resolve.js";

/** Lines for one MTA's configuration, and where they go. */
export interface Snippet {
  /** Where the lines go and what to do after, for a person (not part of the lines). */
  where: string;
  /** The configuration lines, exactly as the MTA reads them. */
  lines: string[];
}

/**
 * The tables Postfix's check_client_access must consult for this map: the type it was built
 * with, on the text map's path (postmap's own naming: `hash:/var/lib/poprelay/relay` reads
 * relay.db). Without a database, `texthash:` reads the text itself, but only when smtpd
 * starts.
 */
export function postfixTables(map: ResolvedMap): string[] {
  return [`${map.type === "none" ? "texthash" : map.type}:${map.file}`];
}

/**
 * `smtpd_relay_restrictions` as one line, which `postconf -e` takes as it is: mynetworks and
 * SMTP AUTH first (Debian's default), then the map and the policy service, then the refusal
 * (554) for every other client.
 */
function postfix(map: ResolvedMap | null, policy: string): Snippet {
  const checks = [
    ...(map ? postfixTables(map).map((table) => `check_client_access ${table}`) : []),
    ...(policy ? [`check_policy_service ${policy}`] : []),
  ];
  const restrictions = [
    "permit_mynetworks",
    "permit_sasl_authenticated",
    ...checks,
    "reject_unauth_destination",
  ];
  return {
    where: `Postfix: /etc/postfix/main.cf (postconf -e "$(poprelay snippet)"), then postfix reload${
      map?.type === "none" ? ", and again whenever the map changes (texthash)" : ""
    }`,
    lines: [`smtpd_relay_restrictions = ${restrictions.join(", ")}`],
  };
}

/** The map's lines for each MTA other than Postfix; null: none of poprelay's business. */
const OTHERS: Readonly<Record<Exclude<MtaName, "postfix">, (map: ResolvedMap) => Snippet>> = {
  sendmail: (map) => ({
    where:
      "Sendmail: /etc/mail/sendmail.mc (your own access lines go in map.static), then " +
      "make -C /etc/mail and systemctl reload sendmail",
    lines: [`FEATURE(\`access_db', \`${map.type} -T<TMPF> -o ${map.file}')dnl`],
  }),
  exim: (map) => ({
    where:
      "Exim: the RCPT ACL (acl_check_rcpt), before it refuses relaying; Exim rereads the file " +
      "when it changes",
    lines: [`accept hosts = net-iplsearch;${map.file}`],
  }),
  qmail: (map) => ({
    where:
      "qmail: the option of the tcpserver that runs qmail-smtpd (your own rules go in " +
      "map.static); tcpserver opens the file for every connection",
    lines: [`-x ${map.file}${map.products?.[0] ?? ".cdb"}`],
  }),
  plain: (map) => ({
    where: `plain: ${map.file} has one address per line, for a program of your own to read`,
    lines: [],
  }),
};

/**
 * The snippets for a configuration: the map's MTA, and Postfix's check_policy_service when
 * policy.listen is set (the policy protocol is Postfix's). Throws when there is neither.
 */
export function snippets(config: Pick<Config, "map" | "policy">): Snippet[] {
  const map = config.map.mta === "none" ? null : resolveMap(config.map);
  const policy = config.policy.listen;
  if (map === null && !policy)
    throw new Error(
      "map.mta is none and policy.listen is empty: there is nothing for an MTA to read",
    );
  if (map === null || map.mta === "postfix") return [postfix(map, policy)];
  const own = OTHERS[map.mta](map);
  return policy ? [own, postfix(null, policy)] : [own];
}
