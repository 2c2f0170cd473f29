/**
 * Fault tests count what became of the logins they wrote: granted, lost (written, not granted)
 * and wrongly granted (granted, never a successful login). Lost and wrong must be 0.
 */

/** Dovecot's own log line (log_path form) for a POP3 login, stamped now. */
export function dovecotLogin(user: string, ip: string): string {
  return `${stamp()} pop3-login: Info: Login: user=<${user}>, method=PLAIN, rip=${ip}, lip=127.0.0.1, mpid=1, session=<t>\n`;
}

/** A failed login from `ip`: it must never be granted. */
export function dovecotFailedLogin(user: string, ip: string): string {
  return `${stamp()} pop3-login: Info: Disconnected (auth failed, 1 attempts in 2 secs): user=<${user}>, method=PLAIN, rip=${ip}, lip=127.0.0.1, session=<t>\n`;
}

function stamp(): string {
  const t = new Date();
  const month = t.toLocaleString("en-US", { month: "short" });
  return `${month} ${String(t.getDate()).padStart(2, " ")} ${t.toTimeString().slice(0, 8)}`;
}

export interface LoginCounts {
  scenario: string;
  written: number;
  granted: number;
  lost: number;
  wrong: number;
  lostAddresses: string[];
  wrongAddresses: string[];
}

/** What a map (or policy service) grants, against the logins written. */
export function countLogins(
  scenario: string,
  written: readonly string[],
  granted: readonly string[],
): LoginCounts {
  const want = new Set(written);
  const have = new Set(granted);
  const lostAddresses = written.filter((ip) => !have.has(ip));
  const wrongAddresses = [...have].filter((ip) => !want.has(ip));
  return {
    scenario,
    written: written.length,
    granted: written.length - lostAddresses.length,
    lost: lostAddresses.length,
    wrong: wrongAddresses.length,
    lostAddresses,
    wrongAddresses,
  };
}

export function formatCounts(c: LoginCounts): string {
  return `${c.scenario}: ${c.written} logins written, ${c.granted} granted, ${c.lost} lost, ${c.wrong} wrongly granted`;
}
