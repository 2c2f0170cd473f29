/** Where the configuration lives by default; apart from load.ts so the CLI starts without it. */
export const DEFAULT_CONFIG_DIR = "/etc/poprelay";
