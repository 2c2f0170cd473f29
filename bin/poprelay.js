#!/usr/bin/env node
import { main } from "../build/src/cli/main.js";

const argv = process.argv.slice(2);
process.exitCode = await main(argv);
// The daemon has stopped (position saved, servers closed): a handle left open (stderr on a
// socket whose reader is gone) must not keep a stopped daemon from exiting.
if (argv[0] === "run") process.exit();
