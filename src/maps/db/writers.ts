/**
 * Table types poprelay writes itself, in-process, instead of running a command: no process
 * between a login and the table the MTA reads. Each writer takes the text map (its UTF-8 bytes)
 * and writes the database file a new path (in the private build directory) as the MTA's own
 * tool would.
 */
import { type TextOrigin, writeCdb } from "./cdb.js";

/** `made`: where the text's lines came from, so that a writer can copy what it built from them. */
export type DatabaseWriter = (
  text: Uint8Array,
  path: string,
  mode: number,
  made?: TextOrigin,
) => Promise<void>;

export const WRITERS = { cdb: writeCdb } as const satisfies Record<string, DatabaseWriter>;

export type WriterName = keyof typeof WRITERS;
