/**
 * Everything wrong with the configuration, each problem as `file:line: key: reason`. Apart from
 * load.ts (convict, the schema, every validator) so that a command that only reports a
 * configuration problem, or never reads a configuration, does not load them.
 */
export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(problems.join("\n"));
    this.name = "ConfigError";
  }
}
