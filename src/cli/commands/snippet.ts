import { loadConfig } from "../../config/load.js";
import { chooseMapType } from "../../maps/choose-type.js";
import { snippets } from "../../maps/snippet.js";
import type { CommandContext } from "../command.js";

/** `poprelay snippet`: the MTA's configuration lines on stdout, where they go on stderr. */
export async function run(context: CommandContext): Promise<number> {
  const { config } = await loadConfig(context.configDir, context.instance);
  // The table type the daemon will write (map.type empty: chosen as it chooses).
  const { map } = await chooseMapType(config.map);
  for (const snippet of snippets({ ...config, map })) {
    process.stderr.write(`# ${snippet.where}\n`);
    for (const line of snippet.lines) context.out(`${line}\n`);
  }
  return 0;
}
