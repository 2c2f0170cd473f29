import type { Logger } from "../log.js";

export class UsageError extends Error {}

export interface CommandContext {
  args: string[];
  options: { user?: string; json?: boolean; print?: boolean; [key: string]: unknown };
  configDir: string;
  instance: string;
  log: Logger;
  out: (text: string) => void;
  /** Run when the command is done, whatever happened: connections to let go of. */
  cleanup: (() => Promise<void>)[];
}

/** What a command's module (src/cli/commands/NAME.ts) does once its arguments are checked. */
export type CommandRun = (context: CommandContext) => Promise<number>;
