import { readFileSync } from "node:fs";

// build/src/cli/version.js → the package root, in the work tree and in /usr/lib/poprelay alike.
const packageJson = JSON.parse(
  readFileSync(new URL("../../../package.json", import.meta.url), "utf8"),
);

export const VERSION: string = packageJson.version;
