import type { AgentProfile } from "../profile.js";
import { courier } from "./courier.js";
import { cyrus } from "./cyrus.js";
import { dovecot } from "./dovecot.js";
import { ipop3d } from "./ipop3d.js";
import { mailutils } from "./mailutils.js";
import { perdition } from "./perdition.js";
import { popa3d } from "./popa3d.js";
import { qpopper } from "./qpopper.js";
import { solidPop3d } from "./solid-pop3d.js";
import { teapop } from "./teapop.js";
import { tpop3d } from "./tpop3d.js";
import { vpopmail } from "./vpopmail.js";

/** The built-in profiles, by name (the systemd instance name: poprelay@NAME). */
export const AGENTS: ReadonlyMap<string, AgentProfile> = new Map(
  [
    courier,
    cyrus,
    dovecot,
    ipop3d,
    mailutils,
    perdition,
    popa3d,
    qpopper,
    solidPop3d,
    teapop,
    tpop3d,
    vpopmail,
  ].map((p) => [p.name, p]),
);
