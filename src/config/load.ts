import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import type { Document } from "yaml";
import { requireCjs } from "../cjs.js";
import { validateMapConfig } from "../maps/resolve.js";
import { validateSpoolPaths } from "../spool/paths.js";
import { redactRedisUrl } from "../spool/redis/address.js";
import { editDistance } from "./edit-distance.js";
import { ConfigError } from "./error.js";
import { schema } from "./schema.js";
import type { Config } from "./types.js";

const convict = requireCjs("convict") as typeof import("convict");

export { ConfigError } from "./error.js";
export { DEFAULT_CONFIG_DIR } from "./paths.js";

export interface LoadedConfig {
  config: Config;
  /** The instance whose overrides were applied; "" for none. */
  instance: string;
  /** The files merged, in order. */
  files: string[];
  /** Every instance name that has an `instances:` section in some file, sorted. */
  instances: string[];
}

type Plain = Record<string, unknown>;

interface ParsedFile {
  path: string;
  body: Plain;
  instances: Record<string, Plain>;
  /** `path:line` where the file sets a dotted key, or undefined when it does not. */
  locate(key: string): string | undefined;
}

const INSTANCE_NAME = /^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$/;

/**
 * Reads DIR/conf.d/*.yaml in lexical order, later files winning; then each file's
 * `instances.NAME` section for the chosen instance, in the same order. Every problem in every
 * file is collected before failing, so one run of `poprelay check` shows them all.
 */
export async function loadConfig(configDir: string, instance = ""): Promise<LoadedConfig> {
  if (instance !== "" && !INSTANCE_NAME.test(instance)) {
    throw new ConfigError([`--instance ${JSON.stringify(instance)}: not a valid instance name`]);
  }
  const files = await listConfigFiles(configDir);
  const perFile = files.map(() => [] as string[]);
  const parsed = await Promise.all(files.map((path, i) => readConfigFile(path, perFile[i] ?? [])));
  // In file order, and by line within a file, as an editor would walk them.
  const lineOf = (problem: string, file: string) =>
    Number(/^:(\d+)/.exec(problem.slice(file.length))?.[1] ?? 0);
  const problems = perFile.flatMap((list, i) => {
    const file = files[i] ?? "";
    return list.sort((a, b) => lineOf(a, file) - lineOf(b, file));
  });
  if (problems.length > 0) throw new ConfigError(problems);

  const merged = convict(schema);
  for (const file of parsed) merged.load(file.body);
  for (const file of parsed) {
    const override = file.instances[instance];
    if (override) merged.load(override);
  }
  const config = merged.getProperties() as Config;
  if (config.agent === "") config.agent = instance;
  const crossProblems = [
    ...validateMapConfig(config.map),
    ...validateRegex(config.match.regex),
    ...validateSpoolPaths(config),
  ];
  if (crossProblems.length > 0) {
    throw new ConfigError(crossProblems.map((p) => `${whoSets(parsed, instance, p)}: ${p}`));
  }
  const instances = [...new Set(parsed.flatMap((f) => Object.keys(f.instances)))].sort();
  return { config, instance, files, instances };
}

/** The file and line that last set the key a merged-config problem (`key: reason`) names. */
function whoSets(files: ParsedFile[], instance: string, problem: string): string {
  const key = problem.slice(0, problem.indexOf(":"));
  const candidates = [
    ...files.map((f) => f.locate(`instances.${instance}.${key}`)),
    ...files.map((f) => f.locate(key)),
  ];
  return candidates.reverse().find((c) => c !== undefined) ?? "(defaults)";
}

async function listConfigFiles(configDir: string): Promise<string[]> {
  const dir = join(configDir, "conf.d");
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new ConfigError([
      `${dir}: cannot read the configuration directory (${code}); set --config-dir`,
    ]);
  }
  // Packaging leaves *.dpkg-dist and editors leave *~ beside the real files: only *.yaml counts.
  const yaml = names.filter((n) => n.endsWith(".yaml") && !n.startsWith(".")).sort();
  if (yaml.length === 0) {
    throw new ConfigError([
      `${dir}: no *.yaml files; poprelay needs at least one (see conf.d/ in the package)`,
    ]);
  }
  return yaml.map((n) => join(dir, n));
}

async function readConfigFile(path: string, problems: string[]): Promise<ParsedFile> {
  const empty: ParsedFile = { path, body: {}, instances: {}, locate: () => undefined };
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (error) {
    problems.push(`${path}: cannot read: ${(error as Error).message}`);
    return empty;
  }
  // yaml is loaded when there is a file to read: `poprelay match` without conf.d needs none.
  const yaml = requireCjs("yaml") as typeof import("yaml");
  const lineCounter = new yaml.LineCounter();
  const doc = yaml.parseDocument(text, { lineCounter, prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length > 0) {
    for (const e of doc.errors) {
      const pos = e.linePos?.[0];
      problems.push(
        `${path}:${pos ? `${pos.line}:${pos.col}` : "?"}: YAML: ${e.message.split("\n")[0]}`,
      );
    }
    return empty;
  }
  const locate = (key: string) => {
    const node = doc.getIn(key.split("."), true) as { range?: [number, number] } | undefined;
    return node?.range ? `${path}:${lineCounter.linePos(node.range[0]).line}` : undefined;
  };
  const where = (key: string) => locate(key) ?? path;
  for (const n of oddNumbers(doc, yaml)) {
    problems.push(
      `${path}:${lineCounter.linePos(n.offset).line}: ${n.key}: ${n.source} is read as ${n.value}: write numbers in decimal digits (durations also as 90s, 30m, 1h)`,
    );
  }
  const value = doc.toJS() ?? {};
  if (!isPlain(value)) {
    problems.push(`${path}: the file must be a mapping of keys (agent:, input:, map: ...)`);
    return empty;
  }
  const { instances = {}, ...body } = value;
  for (const p of validateSection(body, ""))
    problems.push(`${where(p.key)}: ${p.key}: ${p.reason}`);
  if (!isPlain(instances)) {
    problems.push(
      `${where("instances")}: instances: must be a mapping of instance names to settings`,
    );
    return { path, body, instances: {}, locate };
  }
  for (const [name, settings] of Object.entries(instances)) {
    const prefix = `instances.${name}`;
    if (!INSTANCE_NAME.test(name)) {
      problems.push(`${where(prefix)}: ${prefix}: not a valid instance name`);
    } else if (!isPlain(settings)) {
      problems.push(`${where(prefix)}: ${prefix}: must be a mapping of settings`);
    } else {
      for (const p of validateSection(settings, `${prefix}.`)) {
        problems.push(`${where(p.key)}: ${p.key}: ${p.reason}`);
      }
    }
  }
  return { path, body, instances: instances as Record<string, Plain>, locate };
}

interface Problem {
  key: string;
  reason: string;
}

/**
 * Numbers YAML reads from spellings other than decimal digits (3e3, 0x10, 0o17, .inf, 1.5):
 * the value they become is rarely what was meant, and no key of ours takes them.
 */
function oddNumbers(
  doc: Document,
  { visit, isPair, isScalar }: Pick<typeof import("yaml"), "visit" | "isPair" | "isScalar">,
): { key: string; source: string; value: number; offset: number }[] {
  const found: { key: string; source: string; value: number; offset: number }[] = [];
  visit(doc, {
    Scalar(_key, node, path) {
      if (typeof node.value !== "number" || node.source === undefined) return;
      if (/^-?[0-9]+$/.test(node.source)) return;
      const key = path
        .filter(isPair)
        .map((pair) => (isScalar(pair.key) ? String(pair.key.value) : "?"))
        .join(".");
      found.push({ key, source: node.source, value: node.value, offset: node.range?.[0] ?? 0 });
    },
  });
  return found;
}

/** Validates one file's settings on top of the defaults; keys are reported with `prefix`. */
function validateSection(settings: Plain, prefix: string): Problem[] {
  const config = convict(schema);
  try {
    config.load(settings);
    config.validate({ allowed: "strict" });
    return [];
  } catch (error) {
    return parseConvictMessage((error as Error).message).map((p) => ({
      ...p,
      key: prefix + p.key,
    }));
  }
}

const UNDECLARED = /^configuration param '(.+)' not declared in the schema$/;
const PARENT_OVERRIDDEN = /missing from config, did you override its parent\?$/;
const KEYED = /^([\w.]+): (.*)$/s;

/** Turns convict's message lines into key and reason, with a hint for misplaced keys. */
export function parseConvictMessage(message: string): Problem[] {
  const problems: Problem[] = [];
  for (const line of message.split("\n")) {
    if (line === "" || PARENT_OVERRIDDEN.test(line)) continue;
    const undeclared = UNDECLARED.exec(line);
    if (undeclared?.[1]) {
      const key = undeclared[1];
      problems.push({ key, reason: describeUnknownKey(key) });
      continue;
    }
    const keyed = KEYED.exec(line);
    if (keyed?.[1] && keyed[2]) problems.push({ key: keyed[1], reason: keyed[2] });
    else problems.push({ key: "(file)", reason: line });
  }
  return problems;
}

function schemaKeys(node: Plain = schema, prefix = ""): string[] {
  return Object.entries(node).flatMap(([name, value]) =>
    isPlain(value) && !("doc" in value)
      ? schemaKeys(value, `${prefix}${name}.`)
      : [`${prefix}${name}`],
  );
}

const SECTIONS = new Set(
  schemaKeys().flatMap((k) =>
    k
      .split(".")
      .slice(0, -1)
      .map((_, i, a) => a.slice(0, i + 1).join(".")),
  ),
);

function describeUnknownKey(key: string): string {
  if (SECTIONS.has(key)) return "must be a mapping of its keys, not a single value";
  const last = key.split(".").pop() ?? key;
  const keys = schemaKeys();
  const guess =
    keys.find((k) => k.split(".").pop() === last) ?? keys.find((k) => editDistance(k, key) <= 2);
  return guess ? `unknown key (did you mean ${guess}?)` : "unknown key";
}

function validateRegex(source: string): string[] {
  if (source === "") return [];
  let regex: RegExp;
  try {
    regex = new RegExp(source);
  } catch (error) {
    return [`match.regex: not a valid regular expression: ${(error as Error).message}`];
  }
  const groups = new RegExp(`${regex.source}|`).exec("")?.groups ?? {};
  if (!("ip" in groups))
    return ["match.regex: needs a named group (?<ip>...) for the client address"];
  const ip = groupSource(source, "ip");
  if (ip !== undefined && matchesEmpty(ip)) {
    return [
      `match.regex: the group (?<ip>${ip}) can match an empty string; make it require an address`,
    ];
  }
  return [];
}

/** The source inside `(?<name>...)`, found by counting unescaped parentheses outside classes. */
function groupSource(source: string, name: string): string | undefined {
  const start = source.indexOf(`(?<${name}>`);
  if (start === -1) return undefined;
  let depth = 0;
  let inClass = false;
  for (let i = start; i < source.length; i++) {
    const c = source[i];
    if (c === "\\") i++;
    else if (inClass) inClass = c !== "]";
    else if (c === "[") inClass = true;
    else if (c === "(") depth++;
    else if (c === ")" && --depth === 0) return source.slice(start + name.length + 4, i);
  }
  return undefined;
}

function matchesEmpty(pattern: string): boolean {
  try {
    return new RegExp(`^(?:${pattern})$`).test("");
  } catch {
    // Backreferences to other groups and the like: not decidable here, and not this check's job.
    return false;
  }
}

function isPlain(value: unknown): value is Plain {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** The schema's defaults alone, for commands that work without a configuration. */
export function defaultConfig(): Config {
  return convict(schema).getProperties() as Config;
}

/** The merged configuration as YAML, for `poprelay check --print`. */
export async function describeConfig(loaded: LoadedConfig): Promise<string> {
  const { stringify } = requireCjs("yaml") as typeof import("yaml");
  const header = [
    `# instance: ${loaded.instance || "(none)"}`,
    ...loaded.files.map((f) => `# merged: ${f}`),
  ];
  // The Redis password stays in conf.d (mode 0640), not in a terminal or a ticket.
  const { spool } = loaded.config;
  const config = {
    ...loaded.config,
    spool: { ...spool, redis: { ...spool.redis, url: redactRedisUrl(spool.redis.url) } },
  };
  return `${header.join("\n")}\n${stringify(config)}`;
}
