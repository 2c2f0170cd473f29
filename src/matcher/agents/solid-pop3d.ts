import type { AgentProfile } from "../profile.js";

/**
 * Solid POP3 (Debian's solid-pop3d), built with its extended logging: after a good password
 * "user alice authenticated - 192.0.2.7", or "- host.example (192.0.2.7)" when the client's
 * address resolves. The address is the server's own text at the very end of the line; the
 * user name (at most 40 characters, lowercased) comes before it and cannot move it. A host
 * name from reverse DNS holds no spaces and no parentheses, so a client cannot end the line
 * with an address of its choosing. IPv4-mapped clients are logged as plain IPv4.
 */
export const solidPop3d: AgentProfile = {
  name: "solid-pop3d",
  summary: "Solid POP3 (solid-pop3d)",
  covers: ["solid-pop3d 0.15 (Debian 12 solid-pop3d 0.15-31, inetd and standalone)"],
  programs: ["solid-pop3d"],
  ownLogFile: false,
  journal: [
    // RUN_MODE="daemon": Debian's /etc/init.d/solid-pop3d, a unit from systemd-sysv-generator.
    { _SYSTEMD_UNIT: "solid-pop3d.service" },
    // From inetd (the package default), or any other way: the line is written by the root
    // parent, before it hands the session to a child running as the user.
    { _EXE: "/usr/sbin/solid-pop3d", _UID: "0" },
  ],
  prefilter: " authenticated",
  patterns: [
    // Resolved: "host.example (192.0.2.7)". Unresolved: the bare address. Anything else where
    // the address belongs (a cut line) is captured and refused as no-ip.
    /^(?:mapped )?user (?<user>.+) authenticated(?: through APOP)? - [^\s()]+ \((?<ip>[^\s()]+)\)$/,
    /^(?:mapped )?user (?<user>.+) authenticated(?: through APOP)? - (?<ip>[^\s()]+)$/,
  ],
};
