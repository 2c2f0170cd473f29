/** Whether the program a command runs is installed, for `poprelay check`. */
import { constants } from "node:fs";
import { access } from "node:fs/promises";
import { delimiter, isAbsolute, join } from "node:path";

/** Where a program name resolves on PATH (or the path itself when it has a slash), or null. */
export async function findProgram(
  program: string,
  path = process.env.PATH ?? "",
): Promise<string | null> {
  const candidates = program.includes("/")
    ? [program]
    : path
        .split(delimiter)
        .filter((dir) => isAbsolute(dir))
        .map((dir) => join(dir, program));
  for (const candidate of candidates) {
    try {
      await access(candidate, constants.X_OK);
      return candidate;
    } catch {
      // Next one.
    }
  }
  return null;
}
