import type { AgentProfile } from "../profile.js";

/**
 * tpop3d. When a login succeeds the listening (root) process forks the session's child and
 * logs, "in a known format" for POP-before-SMTP:
 * "fork_child: [7]192.0.2.7/mail.example.org: began session for `alice' with pam; child PID
 * is 4242": the connection id ([socket]client-address/domain, the domain being the listener's
 * or the local address) comes before the user name, so the address is the server's text at a
 * fixed place and the user name cannot move it. tpop3d reads client addresses with
 * inet_ntoa: IPv4 only. Earlier releases (before 1.4.2) log only
 * "authcontext_new_user_pass: began session for `alice' with pam; uid 1000, gid 1000", without
 * the client; those lines are not matched (the fork_child line follows them in later
 * releases). Formats from the tpop3d 1.4 and 1.5 source (connection.c, main.c/netloop.c,
 * authswitch.c); not in Debian 12.
 */
export const tpop3d: AgentProfile = {
  name: "tpop3d",
  summary: "tpop3d (fork_child: [n]address/domain: began session for `user')",
  covers: ["tpop3d 1.4.2 to 1.5.5 (source, not captured)"],
  programs: ["tpop3d"],
  ownLogFile: false,
  journal: [
    // Debian's tpop3d package (up to Debian 8) started it from /etc/init.d/tpop3d: a unit
    // generated from the script.
    { _SYSTEMD_UNIT: "tpop3d.service" },
    // Any other start: the line comes from the listening process, which runs as root.
    { _EXE: "/usr/sbin/tpop3d", _UID: "0" },
  ],
  prefilter: "began session for ",
  patterns: [
    /^fork_child: \[\d{1,10}\](?<ip>\d{1,3}(?:\.\d{1,3}){3})(?:\/[^\s:]*)?: began session for `(?<user>.*)' with [\w-]{1,32}; child PID is \d{1,10}$/,
  ],
};
