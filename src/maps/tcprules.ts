/** Whether the tcprules in use reads IPv6 rules (Debian's ucspi-tcp-ipv6 does, ucspi-tcp not). */
import { basename, join } from "node:path";
import { runCommand } from "./command.js";

/**
 * The program a qmail map command runs: its first word when that is a tcprules, otherwise the
 * tcprules on PATH (a site's own script most likely calls that one).
 */
export function tcprulesProgram(command: string | null): string {
  const first = command?.trim().split(/\s+/)[0] ?? "";
  return basename(first) === "tcprules" ? first : "tcprules";
}

/**
 * Compiles one IPv6 rule into `scratch` (a directory the caller owns and removes). Plain
 * tcprules exits 100 ("unable to parse this line"); a missing program counts as no.
 */
export async function tcprulesReadsIpv6(program: string, scratch: string): Promise<boolean> {
  const values = { p: program, r: join(scratch, "ipv6-probe") };
  try {
    await runCommand("%p %r.cdb %r.tmp", values, { input: "::1:allow\n", timeoutMs: 10_000 });
    return true;
  } catch {
    return false;
  }
}
