/**
 * A Mail::POPRelay `mailLogRegExp`, once translated (legacy-regex.ts), becomes a site agent
 * profile (agents.d/NAME.yaml) instead of a regex over whole lines. Mail::POPRelay ran it over
 * every line of the log, so a line of any program that quoted the server's text matched: a
 * remote client's MAIL FROM that Postfix logs verbatim in its reject line granted relay. A
 * profile runs only on the lines of its programs (syslog tag, or trusted journal fields), on
 * the message after the tag. Pure: no I/O.
 *
 * The program is read from the regex itself: the legacy regex names the server by its syslog
 * tag ("dovecot: pop3-login: ...", "vpop3d\[\d+\]: ..."), since it had to match whole lines.
 * The rest of the regex is what the message must start with, as it was right after the tag in a
 * real line; what follows it is left free, as it was. A regex that names no program cannot be
 * confined and is not imported.
 */
import type { AgentProfile } from "../matcher/profile.js";

export interface LegacyProfile {
  /** legacy-PROGRAM: the profile's name and file name (agents.d/NAME.yaml). */
  name: string;
  /** The syslog tag the regex names, which the profile is confined to. */
  program: string;
  /** The anchored pattern over the message. */
  pattern: string;
  prefilter: string;
  /** Trust rules for journal input, from the built-in profile of the same program. */
  journal: string[];
  /** The built-in profile the journal rules come from, if any. */
  from: string | undefined;
}

// Before the tag: an optional ^, then whatever came before it in a line (.*, .+, \S+), and a
// space.
const BEFORE = /^\^?(?:\.[*+]\??|\\S\+)?(?: |\\s\+?)?/;
// The tag: a program name (regex escapes of / . - allowed).
const PROGRAM = /^(?:[A-Za-z0-9_]|\\[/.-]|[/-])+/;
// The pid part, as legacy regexes wrote it.
const PIDS = [
  String.raw`\[\d+\]`,
  String.raw`\[\d*\]`,
  String.raw`\[[0-9]+\]`,
  String.raw`(?:\[\d+\])?`,
  String.raw`\[.*?\]`,
  String.raw`\[.+?\]`,
  String.raw`\[.*\]`,
  String.raw`\[\S+\]`,
];
// After the tag: the colon and the space that ends it.
const AFTER = /^:(?: \+?| |\\s[+*]?)?/;

/** The program the regex names, and the rest of it; or why it cannot be confined. */
export function splitLegacyTag(source: string): { program: string; rest: string } | string {
  const refusal =
    "it does not start with the server's syslog tag (such as `dovecot: ` or `vpop3d\\[\\d+\\]: `), so it cannot be confined to the server's lines";
  let at = BEFORE.exec(source)?.[0].length ?? 0;
  const name = PROGRAM.exec(source.slice(at))?.[0];
  if (!name) return refusal;
  at += name.length;
  const pid = PIDS.find((form) => source.startsWith(form, at));
  if (pid) at += pid.length;
  const after = AFTER.exec(source.slice(at))?.[0];
  if (!after) return refusal;
  const program = name.replace(/\\(.)/g, "$1");
  if (!/^[A-Za-z0-9_][A-Za-z0-9_./-]{0,63}$/.test(program)) return refusal;
  const rest = source.slice(at + after.length);
  if (rest === "") return "nothing follows the syslog tag";
  return { program, rest };
}

/**
 * The longest literal text every match of `source` contains, for the prefilter; "" when there
 * is none that is sure (an alternation at the top, or no literal run at all).
 */
export function literalOf(source: string): string {
  let best = "";
  let run = "";
  let depth = 0;
  const end = () => {
    if (run.length > best.length) best = run;
    run = "";
  };
  for (let i = 0; i < source.length; i++) {
    const char = source[i] ?? "";
    const next = source[i + 1] ?? "";
    if (char === "\\") {
      // An escaped punctuation character is itself; \d, \w, \s... are classes.
      const literal = /[^A-Za-z0-9]/.test(next) ? next : undefined;
      i++;
      if (depth === 0 && literal !== undefined && !/[?*+{]/.test(source[i + 1] ?? "")) {
        run += literal;
        continue;
      }
      end();
      continue;
    }
    if (char === "[") {
      end();
      // Skip the class: a ] right after [ or [^ is literal, escapes skip a character.
      let j = i + 1;
      if (source[j] === "^") j++;
      if (source[j] === "]") j++;
      while (j < source.length && source[j] !== "]") j += source[j] === "\\" ? 2 : 1;
      i = j;
      continue;
    }
    if (char === "(") {
      end();
      depth++;
      continue;
    }
    if (char === ")") {
      depth--;
      end();
      continue;
    }
    if (char === "|") {
      if (depth === 0) return "";
      continue;
    }
    if (/[.^$?*+{}]/.test(char) || depth > 0) {
      // A quantifier takes back the character it applies to.
      if (/[?*+{]/.test(char) && run.length > 0) run = run.slice(0, -1);
      end();
      continue;
    }
    if (/[?*+{]/.test(next)) {
      end();
      continue;
    }
    run += char;
  }
  end();
  return /^[\x20-\x7e]+$/.test(best) && !/["\\]/.test(best) ? best : "";
}

/** The site profile for a translated legacy regex, or why there can be none. */
export function legacyProfile(
  source: string,
  builtins: readonly AgentProfile[],
): LegacyProfile | string {
  const split = splitLegacyTag(source);
  if (typeof split === "string") return split;
  const { program, rest } = split;
  const name = `legacy-${program.toLowerCase().replace(/[^a-z0-9._-]+/g, "-")}`.slice(0, 64);
  const builtin = builtins.find((profile) => profile.programs.includes(program));
  const journal = (builtin?.journal ?? []).map((rule) =>
    Object.entries(rule)
      .map(([field, value]) => `${field}=${value}`)
      .join(" "),
  );
  return {
    name,
    program,
    // Anchored at the message's start, where the tag ended; the legacy regex left the rest of
    // the line free, and so does `.*$`.
    pattern: `^(?:${rest}).*$`,
    prefilter: literalOf(rest),
    journal,
    from: builtin?.name,
  };
}

/**
 * A match.regex written for whole lines, as Mail::POPRelay's were: it starts with the agent's
 * own syslog tag, which the message it now runs on no longer holds, so it would never match
 * again. Undefined when the regex does not start so.
 */
export function taggedRegexProblem(regex: string, programs: readonly string[]): string | undefined {
  const split = splitLegacyTag(regex);
  if (typeof split === "string" || !programs.includes(split.program)) return undefined;
  return `match.regex: starts with the syslog tag "${split.program}:", but it runs on the message after the tag (so that another program's line quoting a login grants nothing) and would never match: remove the tag from it, or make it a site profile (poprelay import-legacy)`;
}
