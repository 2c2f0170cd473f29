import { existsSync } from "node:fs";
import { join } from "node:path";
import { defaultConfig, loadConfig } from "../../config/load.js";
import { expandIgnore } from "../../matcher/mynetworks.js";
import { profileFor } from "../../matcher/profile-for.js";
import { type CommandContext, UsageError } from "../command.js";
import { formatSummary, runMatch } from "../match.js";

/** `poprelay match`: one agent profile over log lines, as fail2ban-regex runs a filter. */
export async function run(context: CommandContext): Promise<number> {
  const name = context.options.agent;
  if (typeof name !== "string")
    throw new UsageError(
      "--agent NAME or --agent FILE.yaml is required (poprelay agents lists them)",
    );
  // The site's match.regex, ignore and allow apply when there is a configuration.
  const config = existsSync(join(context.configDir, "conf.d"))
    ? (await loadConfig(context.configDir, context.instance)).config
    : defaultConfig();
  const profile = profileFor({ ...config, agent: name }, context.configDir);
  const regex =
    typeof context.options.regex === "string" ? context.options.regex : config.match.regex;
  const ignore = await expandIgnore(config.match.ignore);
  for (const note of ignore.notes) context.log.warning(note);
  const summary = await runMatch({
    profile,
    regex,
    ignore: ignore.networks,
    allow: config.match.allow,
    input: context.args[0] ?? "-",
    json: context.options.json === true,
    verbose: context.options.verbose === true,
    out: context.out,
    err: (text) => process.stderr.write(text),
  });
  process.stderr.write(`${formatSummary(summary)}\n`);
  return 0;
}
