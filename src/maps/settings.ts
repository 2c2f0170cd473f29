/**
 * What checking map.* needs: the pure validation (resolve.ts) and the checks that ask the
 * installed tools, for `poprelay check` and for start-up.
 */
import { parseCidr } from "../address/cidr.js";
import type { CanonicalIp } from "../address/ip.js";
import type { MapConfig } from "../config/types.js";
import { MTAS } from "./mtas.js";
import { checkPostfixMapType } from "./postconf.js";
import { findProgram } from "./programs.js";
import { resolveMap, validateMapConfig } from "./resolve.js";

export { type ResolvedMap, resolveMap, validateMapConfig } from "./resolve.js";

/** Where the program of each default command comes from on Debian. */
const PACKAGE: Readonly<Record<string, string>> = {
  postmap: "postfix",
  makemap: "sendmail-bin",
  tcprules: "ucspi-tcp or ucspi-tcp-ipv6",
};

export class MapConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(problems.join("\n"));
    this.name = "MapConfigError";
  }
}

/**
 * Problems the installed tools would cause, each as "map.KEY: reason": the default database
 * command's program missing from PATH, or a Postfix table type that `postconf -m` lacks.
 */
export async function mapToolProblems(config: MapConfig): Promise<string[]> {
  const invalid = validateMapConfig(config);
  if (invalid.length > 0 || config.mta === "none") return invalid;
  const resolved = resolveMap(config);
  const problems: string[] = [];
  // A site's own command may be a shell script: only a default one says which program it runs.
  const program = config.command ? undefined : resolved.command?.split(" ")[0];
  if (program !== undefined && (await findProgram(program)) === null) {
    const install = PACKAGE[program] ?? "it";
    problems.push(
      `map.type: ${resolved.type}: its command needs ${program}, which is not on PATH ` +
        `(install ${install})`,
    );
  } else {
    problems.push(...(await checkPostfixMapType(config)));
  }
  return problems;
}

/** Throws a MapConfigError naming every problem from mapToolProblems. */
export async function checkMapTools(config: MapConfig): Promise<void> {
  const problems = await mapToolProblems(config);
  if (problems.length > 0) throw new MapConfigError(problems);
}

/** Why the configured MTA cannot grant this address exactly (`poprelay add` refuses it). */
export function grantProblem(config: MapConfig, ip: CanonicalIp): string | undefined {
  if (config.mta === "none") return undefined;
  return MTAS[config.mta].exactness(ip);
}

/**
 * Warnings for `poprelay check`: for each address family the site grants (every family, unless
 * match.allow lists only the other one), what map.mta cannot grant exactly in it.
 */
export function exactnessWarnings(config: MapConfig, allow: readonly string[]): string[] {
  if (config.mta === "none") return [];
  const { limits } = MTAS[config.mta];
  const granted = new Set<4 | 6>(allow.length === 0 ? [4, 6] : []);
  for (const network of allow) granted.add(parseCidr(network).family);
  const warnings: string[] = [];
  for (const family of [4, 6] as const) {
    const limit = limits[family];
    if (limit !== undefined && granted.has(family))
      warnings.push(`map.mta: ${config.mta}, IPv${family}: ${limit}`);
  }
  return warnings;
}
