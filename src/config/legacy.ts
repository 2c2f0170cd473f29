/**
 * `poprelay import-legacy`: turns a Mail::POPRelay configuration (one `optionName = value` per
 * line, `#` comments) into YAML for /etc/poprelay/conf.d, plus notes on whatever could not be
 * mapped exactly. Pure: no I/O.
 *
 * The aim is unchanged behaviour. Where poprelay's own default differs from the legacy one in
 * what ends up in the map (the mta, the line format, whether there is a database step), the
 * legacy default is written out explicitly; `%m`, which was the legacy mailProgram value and is
 * poprelay's mta name, is expanded in every emitted format and command.
 */

import { Document, isMap, isPair, isScalar, type YAMLMap } from "yaml";
import { HEADER } from "../maps/resolve.js";
import type { AgentProfile } from "../matcher/profile.js";
import { editDistance } from "./edit-distance.js";
import { preservedLines } from "./legacy-preserve.js";
import { legacyProfile } from "./legacy-profile.js";
import { translatePerlRegex, unwrapPerlRegex } from "./legacy-regex.js";
import type { Config, MapConfig } from "./types.js";

/** The keys an import can set; named after Config so that a renamed key fails to compile. */
export interface LegacySettings {
  input?: Partial<Pick<Config["input"], "source" | "file">>;
  /** The site profile made from mailLogRegExp (see LegacyImport.profile). */
  agent?: Config["agent"];
  relay?: Partial<Config["relay"]>;
  spool?: Partial<Config["spool"]>;
  map?: Partial<Omit<MapConfig, "restart" | "static">> & {
    restart?: Partial<MapConfig["restart"]>;
  };
}

export interface LegacyImport {
  /** The conf.d YAML: the notes as a header comment, each key commented with its origin. */
  yaml: string;
  /** What could not be mapped exactly, one sentence each, starting `line N: ` when tied to one. */
  notes: string[];
  /** What `yaml` parses to (only the mapped keys). */
  settings: LegacySettings;
  /**
   * mailLogRegExp as a site agent profile, confined to the program its regex names: the file
   * to write into CONFIG_DIR/agents.d, which `agent:` in `yaml` names.
   */
  profile?: { name: string; file: string; yaml: string; program: string };
  /** Files the YAML names that the caller must write: map.head's preserved lines. */
  files: { path: string; text: string }[];
}

/** How the import reaches mailRelayFile, to keep the lines above its preserve marker. */
export interface PreserveOptions {
  /** mailRelayFile's text, or undefined when there is no such file; throws when unreadable. */
  read: (path: string) => string | undefined;
  /** The file map.head is to name, for a given mailRelayFile. */
  headFile: (relayFile: string) => string;
}

/** Every option the Mail::POPRelay manual documents (mailLogRegExp is usually the agent's). */
export const LEGACY_OPTIONS = [
  "mailLogFile",
  "mailLogRegExp",
  "mailProgram",
  "mailProgramRestart",
  "mailProgramRestartCommand",
  "mailRelayIsDatabase",
  "makemapLocation",
  "mailRelayDatabaseType",
  "mailRelayDatabaseCommand",
  "mailRelayDirectory",
  "mailRelayFile",
  "mailRelayFileFormat",
  "mailRelayPeriod",
] as const;
export type LegacyOption = (typeof LEGACY_OPTIONS)[number];

const LEGACY_DEFAULT_PROGRAM = "sendmail";
const LEGACY_DEFAULT_RESTART_COMMAND = "/etc/init.d/%m restart";
const LEGACY_DEFAULT_MAKEMAP = "/usr/sbin/makemap";
const LEGACY_DEFAULT_DATABASE_TYPE = "hash";
const LEGACY_DEFAULT_DATABASE_COMMAND = "/usr/sbin/makemap hash %r < %r";
/** Same upper bound as parseDuration (duration.ts): the validator rejects longer periods. */
const MAX_PERIOD_SECONDS = 366 * 86400;

/** What happens when an option is not set (or set to an empty value). */
const UNSET_EFFECT: Record<LegacyOption, string> = {
  mailLogFile:
    "the legacy tool read /var/log/maillog, poprelay reads the journal when it can and /var/log/mail.log otherwise (input.source: auto); set input.source: file and input.file to keep reading a file",
  mailLogRegExp:
    "the legacy agent supplied its regex; poprelay uses the regex of its agent profile (see `poprelay agents`; the agent is the instance name or `agent:`)",
  mailProgram: `the legacy default ${LEGACY_DEFAULT_PROGRAM} applies`,
  mailProgramRestart: "the legacy default 0 applies",
  mailProgramRestartCommand: `the legacy default ${LEGACY_DEFAULT_RESTART_COMMAND} applies`,
  mailRelayIsDatabase: "the legacy default 0 applies",
  makemapLocation: `${LEGACY_DEFAULT_MAKEMAP} applies`,
  mailRelayDatabaseType: `${LEGACY_DEFAULT_DATABASE_TYPE} applies`,
  mailRelayDatabaseCommand: `the legacy default ${LEGACY_DEFAULT_DATABASE_COMMAND} applies`,
  mailRelayDirectory: "poprelay's default spool.directory applies",
  mailRelayFile:
    "the legacy tool has no default, so map.file is left to poprelay's default (/var/lib/poprelay/relay)",
  mailRelayFileFormat: "the legacy default applies",
  mailRelayPeriod: "the legacy tool has no default, so relay.period is left to poprelay's default",
};

/** Options whose absence changes behaviour or which the legacy tool required: noted. */
const NOTE_WHEN_ABSENT: readonly LegacyOption[] = [
  "mailLogFile",
  "mailLogRegExp",
  "mailRelayFile",
  "mailRelayPeriod",
];

/** Options whose value is a name or a path, where a trailing `# …` was never a comment. */
const PLAIN_VALUE_OPTIONS: readonly LegacyOption[] = [
  "mailLogFile",
  "mailProgram",
  "makemapLocation",
  "mailRelayDatabaseType",
  "mailRelayDirectory",
  "mailRelayFile",
];

/** Options that become poprelay keys validated as absolute paths. */
const PATH_OPTIONS: readonly LegacyOption[] = [
  "mailLogFile",
  "mailRelayDirectory",
  "mailRelayFile",
];

interface Setting {
  value: string;
  line: number;
}

interface Note {
  line: number | undefined;
  text: string;
}

const MTAS = ["postfix", "sendmail", "exim", "qmail"] as const;

function isLegacyOption(name: string): name is LegacyOption {
  return (LEGACY_OPTIONS as readonly string[]).includes(name);
}

/** The documented option an unknown name was probably meant to be. */
function suggestOption(name: string): LegacyOption | undefined {
  const lower = name.toLowerCase();
  const sameCase = LEGACY_OPTIONS.find((option) => option.toLowerCase() === lower);
  if (sameCase) return sameCase;
  let best: LegacyOption | undefined;
  let bestDistance = 3;
  for (const option of LEGACY_OPTIONS) {
    const distance = editDistance(lower, option.toLowerCase());
    if (distance < bestDistance) {
      best = option;
      bestDistance = distance;
    }
  }
  return best;
}

/** A value quoted for a note or comment: JSON escapes keep control characters visible. */
function quote(value: string, max = 80): string {
  const cut = value.length > max ? `${value.slice(0, max)}…` : value;
  return JSON.stringify(cut);
}

/** Collects the settings, their origins (YAML comments) and the notes. */
class Importer {
  readonly settings: LegacySettings = {};
  readonly comments = new Map<string, string>();
  readonly files: { path: string; text: string }[] = [];
  profile: LegacyImport["profile"];

  constructor(
    readonly source: string,
    /** The built-in profiles: a legacy regex's profile takes the journal rules of its program's. */
    readonly builtins: readonly AgentProfile[],
  ) {}
  private readonly notes: Note[] = [];
  private readonly options = new Map<LegacyOption, Setting>();
  /** Options given with an empty value: treated as not set. */
  private readonly empty = new Set<LegacyOption>();

  note(line: number | undefined, text: string): void {
    this.notes.push({ line, text });
  }

  sortedNotes(): string[] {
    // Stable: notes on lines first, in line order, then the general ones.
    const order = (note: Note) => note.line ?? Number.POSITIVE_INFINITY;
    return [...this.notes]
      .sort((a, b) => order(a) - order(b))
      .map((note) => (note.line === undefined ? note.text : `line ${note.line}: ${note.text}`));
  }

  parse(text: string): void {
    const lines = text.replace(/^\uFEFF/, "").split(/\r\n|\n|\r/);
    // A final newline does not make a line.
    if (lines.length > 0 && lines[lines.length - 1] === "") lines.pop();
    lines.forEach((raw, index) => {
      const line = index + 1;
      const trimmed = raw.trim();
      if (trimmed === "" || trimmed.startsWith("#")) return;
      const match = /^([^\s=]+)\s*=\s*(.*)$/.exec(trimmed);
      if (!match) {
        const first = /^\S+/.exec(trimmed)?.[0] ?? "";
        const hint = isLegacyOption(first) ? ` (missing "=" after ${first}?)` : "";
        this.note(line, `not an "option = value" line, ignored: ${quote(trimmed)}${hint}`);
        return;
      }
      const name = match[1] ?? "";
      const value = match[2] ?? "";
      if (!isLegacyOption(name)) {
        const suggestion = suggestOption(name);
        const hint = suggestion
          ? ` (did you mean ${suggestion}? option names are case-sensitive)`
          : "";
        this.note(line, `unknown option ${quote(name)}, ignored${hint}`);
        return;
      }
      const earlier = this.options.get(name);
      if (earlier) {
        this.note(
          line,
          `${name} is set again (also on line ${earlier.line}); the later value wins, as in the legacy tool`,
        );
      }
      this.options.set(name, { value, line });
      if (value === "") this.empty.add(name);
      else this.empty.delete(name);
    });
    for (const name of this.empty) {
      const setting = this.options.get(name);
      this.note(
        setting?.line,
        `${name} is empty, so it is taken as not set: ${UNSET_EFFECT[name]}`,
      );
    }
    for (const name of NOTE_WHEN_ABSENT) {
      if (!this.options.has(name))
        this.note(undefined, `${name} is not set: ${UNSET_EFFECT[name]}`);
    }
    for (const name of PATH_OPTIONS) {
      const setting = this.get(name);
      if (setting && !setting.value.startsWith("/")) {
        this.note(
          setting.line,
          `${name} ${quote(setting.value)} is not an absolute path, which poprelay requires: it is imported as is, so that \`poprelay check\` rejects it until you fix it`,
        );
      }
    }
    for (const name of PLAIN_VALUE_OPTIONS) {
      const setting = this.get(name);
      if (setting && /\s#/.test(setting.value)) {
        this.note(
          setting.line,
          `the value of ${name} contains " #": the legacy tool had no trailing comments and took it literally, and so does this import`,
        );
      }
    }
  }

  /** A set, non-empty option. */
  get(name: LegacyOption): Setting | undefined {
    return this.empty.has(name) ? undefined : this.options.get(name);
  }

  from(name: LegacyOption, setting: Setting): string {
    return `from ${name} (line ${setting.line})`;
  }

  /** Reads 0/1 (also yes/no, true/false, on/off) as the user meant it. */
  flag(name: LegacyOption, setting: Setting): boolean {
    const value = setting.value.toLowerCase();
    if (["1", "yes", "true", "on"].includes(value)) return true;
    if (value === "0") return false;
    if (["no", "false", "off"].includes(value)) {
      this.note(
        setting.line,
        `${name} = ${setting.value} is read as 0; beware that the legacy tool (Perl truth: only 0 and empty are false) took it as 1`,
      );
      return false;
    }
    this.note(
      setting.line,
      `${name} = ${quote(setting.value)} is not 0 or 1; read as 1, as the legacy tool did (Perl truth: only 0 and empty are false)`,
    );
    return true;
  }
}

/** The map.mta for a legacy mailProgram value, and whether that is a guess worth a note. */
function mtaFor(program: string): { mta: MapConfig["mta"]; guessed: boolean } | undefined {
  const base = (program.split("/").pop() ?? "").toLowerCase();
  const match = /^([a-z]+)(\d*)([-_.@].*)?$/.exec(base);
  const name = MTAS.find((mta) => mta === match?.[1]);
  if (!name) return undefined;
  return { mta: name, guessed: match?.[3] !== undefined };
}

function section<K extends Exclude<keyof LegacySettings, "agent">>(
  settings: LegacySettings,
  key: K,
): NonNullable<LegacySettings[K]> {
  settings[key] ??= {};
  return settings[key] as NonNullable<LegacySettings[K]>;
}

/**
 * Moves the lines Mail::POPRelay kept in mailRelayFile (above its preserve marker) into a file of
 * their own that map.head names: written first, before poprelay's lines, as the legacy tool
 * wrote them, and a map write never replaces a file with lines it cannot account for.
 */
function preserve(im: Importer, relayFile: Setting, options: PreserveOptions): void {
  const path = relayFile.value;
  let text: string | undefined;
  try {
    text = options.read(path);
  } catch (error) {
    im.note(
      relayFile.line,
      `mailRelayFile ${quote(path)} cannot be read (${(error as Error).message}), so the lines above its preserve marker are not imported; poprelay refuses to replace the file while it holds lines of the site's own`,
    );
    return;
  }
  if (text === undefined) return;
  const head = options.headFile(path);
  if (text.startsWith(`${HEADER}\n`)) {
    // Imported before, and written by poprelay since: the site's lines are in map.head already.
    let earlier: string | undefined;
    try {
      earlier = options.read(head);
    } catch {
      earlier = undefined;
    }
    if (earlier !== undefined) {
      section(im.settings, "map").head = head;
      im.comments.set("map.head", `kept from an earlier import: ${path} is poprelay's own now`);
    }
    im.note(
      relayFile.line,
      `mailRelayFile ${quote(path)} is written by poprelay already, so there is no preserve marker to read${earlier === undefined ? "" : `; map.head names ${head} again, from an earlier import`}`,
    );
    return;
  }
  const kept = preservedLines(text);
  if (kept.lines === 0) return;
  section(im.settings, "map").head = head;
  im.files.push({ path: head, text: kept.text });
  const where =
    kept.marker === undefined
      ? `all ${kept.lines} lines of ${path} (it has no preserve marker, so the legacy tool kept them all)`
      : `the ${kept.lines} lines above the preserve marker (line ${kept.marker}) of ${path}`;
  im.comments.set(
    "map.head",
    `${where},\nmoved here by this import: written first, before poprelay's lines, as the legacy tool did`,
  );
  im.note(
    relayFile.line,
    `${where} were written to ${head} (map.head); edit them there from now on, as poprelay rewrites ${path} whole`,
  );
}

/** Maps the parsed options into settings, comments and notes. */
function mapOptions(im: Importer, preserveOptions: PreserveOptions | undefined): void {
  const { settings, comments } = im;

  // %m was the mailProgram value; poprelay's %m is the mta name, so expand the legacy one.
  const programSetting = im.get("mailProgram");
  const program = programSetting?.value ?? LEGACY_DEFAULT_PROGRAM;
  const expand = (text: string): { value: string; expanded: string } => {
    const value = text.replace(/%m/g, () => program);
    return { value, expanded: value === text ? "" : `; %m expanded to ${quote(program)}` };
  };

  // input
  const logFile = im.get("mailLogFile");
  if (logFile) {
    const input = section(settings, "input");
    input.source = "file";
    comments.set(
      "input.source",
      `${im.from("mailLogFile", logFile)}: the legacy tool tailed this file (auto would prefer the journal)`,
    );
    input.file = logFile.value;
    comments.set("input.file", im.from("mailLogFile", logFile));
  }

  // match
  const regex = im.get("mailLogRegExp");
  if (regex) {
    const unwrapped = unwrapPerlRegex(regex.value);
    const translation = translatePerlRegex(unwrapped.body);
    const problems = [...unwrapped.problems, ...translation.problems];
    const made =
      translation.source === undefined || problems.length > 0
        ? undefined
        : legacyProfile(translation.source, im.builtins);
    if (translation.source === undefined || problems.length > 0) {
      im.note(
        regex.line,
        `mailLogRegExp not imported, JavaScript cannot express it exactly: ${problems.join("; ")}; no site profile is made, so the agent profile's patterns are used`,
      );
    } else if (typeof made === "string") {
      im.note(
        regex.line,
        `mailLogRegExp not imported: ${made}; no site profile is made, so the agent profile's patterns are used (see \`poprelay agents\`)`,
      );
    } else if (made) {
      if (unwrapped.removed !== undefined) {
        im.note(
          regex.line,
          `mailLogRegExp: the surrounding ${unwrapped.removed} was removed (the legacy tool would have taken it literally); check that the rest is the regex you meant`,
        );
      }
      const changes = translation.changes.length > 0 ? `; ${translation.changes.join(", ")}` : "";
      const file = `agents.d/${made.name}.yaml`;
      im.settings.agent = made.name;
      comments.set(
        "agent",
        `${im.from("mailLogRegExp", regex)}: the site profile ${file}${changes}`,
      );
      im.profile = {
        name: made.name,
        file,
        program: made.program,
        yaml: profileYaml(made, regex.line, regex.value, im.source, changes),
      };
      im.note(
        regex.line,
        `mailLogRegExp becomes the site profile ${file}, assumed to be the program ${quote(made.program)} (the syslog tag the regex starts with): it runs only on that program's lines, on the text after the tag, so another program's line that quotes a login grants nothing${made.from ? `; its journal trust rules are the ${made.from} profile's` : "; no built-in profile logs under that tag, so it has no journal trust rules: add journal: rules to it for journal input, or read the log file (input.source: file)"}. Try it with \`poprelay match --agent ${made.name}\``,
      );
    }
  }

  // relay
  const period = im.get("mailRelayPeriod");
  if (period) {
    const seconds = /^\d+$/.test(period.value) ? Number(period.value) : Number.NaN;
    if (!Number.isSafeInteger(seconds) || seconds <= 0) {
      im.note(
        period.line,
        `mailRelayPeriod must be a positive whole number of seconds, not ${quote(period.value)}; relay.period is left out`,
      );
    } else if (seconds > MAX_PERIOD_SECONDS) {
      im.note(
        period.line,
        `mailRelayPeriod ${seconds} is longer than poprelay allows (366 days); relay.period is left out`,
      );
    } else {
      section(settings, "relay").period = seconds;
      comments.set("relay.period", `${im.from("mailRelayPeriod", period)}, in seconds`);
    }
  }

  // spool
  const directory = im.get("mailRelayDirectory");
  if (directory) {
    section(settings, "spool").directory = directory.value;
    comments.set("spool.directory", im.from("mailRelayDirectory", directory));
  }

  // map
  const map = section(settings, "map");
  if (programSetting) {
    const known = mtaFor(program);
    map.mta = known?.mta ?? "plain";
    comments.set("map.mta", im.from("mailProgram", programSetting));
    if (!known) {
      im.note(
        programSetting.line,
        `mailProgram ${quote(program)} is not postfix, sendmail, exim or qmail: map.mta is plain (the lines are written as mailRelayFileFormat says, with no MTA-specific key spelling)`,
      );
    } else if (known.guessed) {
      im.note(
        programSetting.line,
        `mailProgram ${quote(program)} is taken as map.mta: ${known.mta}`,
      );
    }
  } else {
    map.mta = "sendmail";
    comments.set(
      "map.mta",
      `mailProgram is not set: the legacy default ${LEGACY_DEFAULT_PROGRAM} (poprelay's default differs)`,
    );
  }

  const relayFile = im.get("mailRelayFile");
  if (relayFile) {
    map.file = relayFile.value;
    comments.set("map.file", im.from("mailRelayFile", relayFile));
    if (preserveOptions) preserve(im, relayFile, preserveOptions);
  }

  const isDatabaseSetting = im.get("mailRelayIsDatabase");
  const isDatabase = isDatabaseSetting ? im.flag("mailRelayIsDatabase", isDatabaseSetting) : false;
  const isDatabaseOrigin = isDatabaseSetting
    ? `mailRelayIsDatabase = ${isDatabase ? 1 : 0} (line ${isDatabaseSetting.line})`
    : "mailRelayIsDatabase = 0 (not set, the legacy default)";

  const format = im.get("mailRelayFileFormat");
  if (format) {
    const { value, expanded } = expand(format.value);
    map.format = value;
    comments.set("map.format", `${im.from("mailRelayFileFormat", format)}${expanded}`);
    if (!format.value.includes("%i")) {
      im.note(format.line, "mailRelayFileFormat has no %i, so every line of the map is the same");
    }
  } else {
    map.format = isDatabase ? "%i RELAY" : "%i";
    comments.set(
      "map.format",
      `mailRelayFileFormat not set: the legacy default for ${isDatabaseOrigin},\nkept so that the map lines stay the same (poprelay's own default differs per MTA)`,
    );
  }

  const databaseCommand = im.get("mailRelayDatabaseCommand");
  const makemap = im.get("makemapLocation");
  const databaseType = im.get("mailRelayDatabaseType");
  const databaseOptions = [
    ["mailRelayDatabaseCommand", databaseCommand],
    ["makemapLocation", makemap],
    ["mailRelayDatabaseType", databaseType],
  ] as const;
  if (!isDatabase) {
    map.type = "none";
    comments.set("map.type", `${isDatabaseOrigin}: no database step`);
    for (const [name, setting] of databaseOptions) {
      if (setting) {
        im.note(
          setting.line,
          `${name} is ignored because mailRelayIsDatabase is 0, as the legacy tool ignored it`,
        );
      }
    }
  } else if (databaseCommand) {
    const { value, expanded } = expand(databaseCommand.value);
    map.command = value;
    comments.set(
      "map.command",
      `${im.from("mailRelayDatabaseCommand", databaseCommand)}${expanded}`,
    );
    for (const [name, setting] of databaseOptions.slice(1)) {
      if (setting) {
        im.note(
          setting.line,
          `${name} is deprecated and ignored: mailRelayDatabaseCommand (line ${databaseCommand.line}) is used`,
        );
      }
    }
  } else if (makemap || databaseType) {
    const command = `${makemap?.value ?? LEGACY_DEFAULT_MAKEMAP} ${databaseType?.value ?? LEGACY_DEFAULT_DATABASE_TYPE} %r < %r`;
    const { value, expanded } = expand(command);
    map.command = value;
    const origins = databaseOptions
      .slice(1)
      .flatMap(([name, setting]) => (setting ? [`${name} (line ${setting.line})`] : []));
    comments.set(
      "map.command",
      `from the deprecated ${origins.join(" and ")}${expanded}, for ${isDatabaseOrigin}`,
    );
    for (const [name, setting] of databaseOptions.slice(1)) {
      if (setting) {
        im.note(
          setting.line,
          `${name} is deprecated; folded into map.command (set that instead, it is mailRelayDatabaseCommand)`,
        );
      }
    }
  } else {
    const { value, expanded } = expand(LEGACY_DEFAULT_DATABASE_COMMAND);
    map.command = value;
    comments.set(
      "map.command",
      `mailRelayDatabaseCommand not set: the legacy default, for ${isDatabaseOrigin}${expanded}`,
    );
  }

  const restartSetting = im.get("mailProgramRestart");
  const restart = restartSetting ? im.flag("mailProgramRestart", restartSetting) : false;
  const restartCommand = im.get("mailProgramRestartCommand");
  if (restartSetting) {
    map.restart = { enabled: restart };
    comments.set("map.restart.enabled", im.from("mailProgramRestart", restartSetting));
  }
  let command: string | undefined;
  if (restartCommand) {
    const { value, expanded } = expand(restartCommand.value);
    command = value;
    comments.set(
      "map.restart.command",
      `${im.from("mailProgramRestartCommand", restartCommand)}${expanded}`,
    );
  } else if (restart) {
    const { value, expanded } = expand(LEGACY_DEFAULT_RESTART_COMMAND);
    command = value;
    comments.set(
      "map.restart.command",
      `mailProgramRestartCommand not set: the legacy default${expanded}`,
    );
  }
  if (command !== undefined) {
    map.restart = { ...map.restart, command };
  }
  if (restart && restartSetting) {
    const initScript = /^\/etc\/init\.d\/(\S+)\s+(\S+)\s*$/.exec(command ?? "");
    if (initScript) {
      const what = restartCommand
        ? "map.restart.command"
        : "map.restart.command is the legacy default and";
      im.note(
        restartCommand?.line ?? restartSetting.line,
        `${what} runs an init script; under systemd prefer \`systemctl ${initScript[2]} ${initScript[1]}\``,
      );
    }
    if (isDatabase) {
      im.note(
        restartSetting.line,
        "the legacy manual says a restart is not needed when the relay file is a database, and restarting the MTA on every map change drops connections: consider mailProgramRestart = 0 (map.restart.enabled: false)",
      );
    }
  }
}

/** Attaches `# comment` lines above the keys whose dotted path has one. */
function attachComments(node: YAMLMap, prefix: string, comments: Map<string, string>): void {
  for (const pair of node.items) {
    if (!isPair(pair) || !isScalar(pair.key)) continue;
    const path = `${prefix}${String(pair.key.value)}`;
    const comment = comments.get(path);
    if (comment !== undefined) pair.key.commentBefore = indentComment(comment);
    if (isMap(pair.value)) attachComments(pair.value, `${path}.`, comments);
  }
}

/** The yaml package writes `#` + each line; a leading space gives `# text`. */
function indentComment(text: string): string {
  return text
    .split("\n")
    .map((line) => ` ${line}`)
    .join("\n");
}

/** Wraps a note for the header comment at about 96 columns, continuation lines indented. */
function wrapNote(note: string, width = 94): string[] {
  const lines: string[] = [];
  let current = "-";
  for (const word of note.split(" ")) {
    if (current.length + 1 + word.length > width && current.trim() !== "-") {
      lines.push(current);
      current = " ";
    }
    current += ` ${word}`;
  }
  lines.push(current);
  return lines;
}

/** A file name is the user's, but a control character in it must not reach a comment. */
function cleanName(source: string): string {
  return [...source].map((char) => (char < " " || char === "\x7f" ? "?" : char)).join("");
}

function header(source: string, notes: string[]): string {
  const name = cleanName(source);
  const lines = [
    `poprelay configuration imported from ${name} by \`poprelay import-legacy\`.`,
    "Each key names the Mail::POPRelay option and line it comes from.",
    "",
  ];
  if (notes.length === 0) {
    lines.push("Every option was mapped exactly.");
  } else {
    lines.push("Notes (what could not be mapped exactly):");
    for (const note of notes) lines.push(...wrapNote(note));
  }
  return indentComment(lines.join("\n"));
}

/**
 * Turns the text of a Mail::POPRelay configuration file into conf.d YAML and notes.
 * `source` names the file in the YAML header. With `preserve`, the lines mailRelayFile keeps
 * above Mail::POPRelay's preserve marker go to a map.head file.
 */
export function importLegacy(
  text: string,
  source: string,
  builtins: readonly AgentProfile[] = [],
  preserve?: PreserveOptions,
): LegacyImport {
  const im = new Importer(source, builtins);
  im.parse(text);
  mapOptions(im, preserve);
  const notes = im.sortedNotes();
  const doc = new Document(im.settings);
  if (isMap(doc.contents)) attachComments(doc.contents, "", im.comments);
  doc.commentBefore = header(source, notes);
  const yaml = doc.toString({ lineWidth: 0, singleQuote: true });
  const result: LegacyImport = { yaml, notes, settings: im.settings, files: im.files };
  if (im.profile) result.profile = im.profile;
  return result;
}

/** The site profile file for an imported mailLogRegExp. */
function profileYaml(
  made: Exclude<ReturnType<typeof legacyProfile>, string>,
  line: number,
  original: string,
  source: string,
  changes: string,
): string {
  const doc = new Document({
    name: made.name,
    summary: `mailLogRegExp imported from ${cleanName(source)}, confined to ${made.program} lines`,
    covers: [`the server a Mail::POPRelay agent read with ${original}`],
    programs: [made.program],
    own_log_file: false,
    journal: made.journal,
    prefilter: made.prefilter,
    patterns: [made.pattern],
  });
  doc.commentBefore = indentComment(
    [
      `Site agent profile made by \`poprelay import-legacy\` from ${cleanName(source)}, line ${line}:`,
      `  mailLogRegExp = ${original}`,
      `translated${changes}.`,
      "The legacy tool ran it over whole log lines of any program. Here it runs only on the",
      `lines of ${made.program} (syslog tag, or the journal trust rules), on the text after the`,
      "tag, anchored where the tag ends. Add samples (NAME.samples and samples:) so that",
      "`poprelay check` proves it on your server's real lines.",
    ].join("\n"),
  );
  return doc.toString({ lineWidth: 0, singleQuote: true });
}
