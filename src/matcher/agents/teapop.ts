import type { AgentProfile } from "../profile.js";

/**
 * Teapop. After a good password it logs both ends of the connection:
 * "Successful login for alice [192.0.2.1] from client.example [198.51.100.7]" (with virtual
 * domains "alice@example.org [...]"): first the LOCAL address the client connected to, then
 * the client's host name ("unknown" when it does not resolve) and the REMOTE address, which
 * is the one captured. The user name (the rest of the USER line: it may hold spaces and
 * brackets) comes first, so the address is read from the end, after " from "; a reverse-DNS
 * name has no spaces or brackets to forge it with. Formats from the Teapop 0.3 source
 * (teapop/pop_auth.c, pop_socket.c); not in Debian 12.
 */
export const teapop: AgentProfile = {
  name: "teapop",
  summary: "Teapop (Successful login for user [local] from host [remote])",
  covers: ["Teapop 0.3.x, IPv4 and INET6 builds (source, not captured)"],
  // openlog("teapop") or, with -S (SSL), "teapop_ssl".
  programs: ["teapop", "teapop_ssl"],
  ownLogFile: false,
  // From inetd (Debian's teapop package, up to Debian 5, installed /usr/sbin/teapop); whether
  // the process still runs as root at this point depends on the password backend, so the
  // inetd unit is the proof. Standalone (-s) under another manager: add a rule with
  // match.trusted.
  journal: ["inetd.service", "xinetd.service", "inetutils-inetd.service"].map((unit) => ({
    _SYSTEMD_UNIT: unit,
    _EXE: "/usr/sbin/teapop",
  })),
  prefilter: "Successful login for ",
  patterns: [
    /^Successful login for (?<user>.*) \[[^\s[\]]+\] from [^\s[\]]+ \[(?<ip>[^\s[\]]+)\]$/,
  ],
};
