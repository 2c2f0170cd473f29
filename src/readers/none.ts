import type { Reader } from "./types.js";

/** input.source: none — a host that only writes its map from the shared state. */
export class NoReader implements Reader {
  async start(): Promise<void> {}

  async stop(): Promise<void> {}

  status(): string {
    return "no input (map from shared state only)";
  }
}
