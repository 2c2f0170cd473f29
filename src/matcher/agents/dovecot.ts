import type { AgentProfile } from "../profile.js";

/**
 * Dovecot's login processes log one line per successful login: "Login:" up to 2.3, "Logged in:"
 * from 2.4. The fields after it follow login_log_format_elements (default
 * `user=<%u> method=%m rip=%r lip=%l mpid=%e %c session=<%{session}>`), in any order.
 */
export const dovecot: AgentProfile = {
  name: "dovecot",
  summary: "Dovecot POP3/IMAP (pop3-login, imap-login, submission-login)",
  covers: [
    "Dovecot 1.x (syslog)",
    "Dovecot 2.0-2.3 (syslog, journal, log_path)",
    "Dovecot 2.4 (Logged in:)",
  ],
  programs: ["dovecot"],
  ownLogFile: true,
  journal: [
    { _SYSTEMD_UNIT: "dovecot.service" },
    // Dovecot started by hand or by another init: its log process writes the lines.
    { _EXE: "/usr/lib/dovecot/log", _UID: "0" },
  ],
  prefilter: "-login: ",
  patterns: [
    /^(?<protocol>pop3|imap|submission|managesieve)-login: (?:Info: )?(?:Login|Logged in): (?<fields>user=<.*)$/,
  ],
  fields: { user: "user", ip: "rip" },
};
