import type { AgentProfile } from "../profile.js";
import { dovecot } from "./dovecot.js";

/** The built-in profiles, by name. */
export const AGENTS: ReadonlyMap<string, AgentProfile> = new Map([dovecot].map((p) => [p.name, p]));
