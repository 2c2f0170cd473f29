/**
 * CommonJS packages (convict, yaml) loaded with require(). An `import` of one makes Node read
 * its source for the names it exports first (cjs-module-lexer), 10 to 20 ms of the start of
 * every command that reads a configuration or a profile; require() does not.
 */
import { createRequire } from "node:module";

export const requireCjs = createRequire(import.meta.url);
