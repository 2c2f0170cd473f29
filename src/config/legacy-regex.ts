/**
 * Translation of a Mail::POPRelay `mailLogRegExp` (a Perl regex that puts the user in $1 and
 * the IP address in $2) into a JavaScript regex source with `(?<user>…)` and `(?<ip>…)`.
 *
 * The rule is: translate exactly or not at all. Whatever JavaScript lacks and cannot be
 * rewritten with the same meaning is reported as a problem, and no source is returned, so an
 * import never emits a regex that matches something other than what the legacy tool matched.
 * The output avoids identity escapes and lone braces, so it also compiles with the `u` flag.
 */

export interface RegexTranslation {
  /** The JavaScript regex source; undefined when the regex could not be translated exactly. */
  source: string | undefined;
  /** Why it could not be translated (empty when `source` is set). */
  problems: string[];
  /** The exact rewrites that were made (`$1 → (?<user>…)`, `\A → ^`…), for a comment. */
  changes: string[];
}

export interface UnwrappedRegex {
  /** The regex body. */
  body: string;
  /** What was removed around it, for a note; undefined when the value was a bare regex. */
  removed: string | undefined;
  /** Why the wrapper cannot be honoured (flags JavaScript cannot express inline). */
  problems: string[];
}

/** Flags after `/…/` that change nothing when one log line is matched once. */
const HARMLESS_FLAGS = new Set(["g", "o"]);

/**
 * Strips what a user may have copied from Perl source around the regex: `/…/`, `m/…/`,
 * `qr/…/` (with flags), or surrounding single or double quotes.
 */
export function unwrapPerlRegex(value: string): UnwrappedRegex {
  const slashes = /^(qr|m)?\/([\s\S]*)\/([A-Za-z]*)$/.exec(value);
  if (slashes && value.length >= 2) {
    const [, prefix = "", body = "", flags = ""] = slashes;
    const problems: string[] = [];
    const bad = [...flags].filter((flag) => !HARMLESS_FLAGS.has(flag));
    if (bad.length > 0) {
      problems.push(
        `the /${bad.join("")} flag${bad.length > 1 ? "s" : ""} cannot be written inside a JavaScript regex source`,
      );
    }
    return { body, removed: `${prefix}/…/${flags}`, problems };
  }
  const quotes = /^(['"])([\s\S]*)\1$/.exec(value);
  if (quotes && value.length >= 2) {
    const quote = quotes[1] ?? "";
    return { body: quotes[2] ?? "", removed: `${quote}…${quote}`, problems: [] };
  }
  return { body: value, removed: undefined, problems: [] };
}

/** JavaScript escapes that mean the same as in Perl, outside a character class. */
const SAME_ESCAPES = new Set([..."dDwWsSbBnrtf"]);
/** The same, inside a character class (`\b` is a backspace in both). */
const SAME_CLASS_ESCAPES = new Set([..."dDwWsSnrtfb"]);
/** Characters that keep their backslash outside a class (the identity escapes u mode allows). */
const SYNTAX_CHARS = new Set([..."^$\\.*+?()[]{}|/"]);
/** The same inside a class, where u mode also allows `\-`. */
const CLASS_SYNTAX_CHARS = new Set([...SYNTAX_CHARS, "-"]);

/** Perl escapes with no JavaScript equivalent, and why. */
const UNTRANSLATABLE_ESCAPES: Record<string, string> = {
  G: "\\G (end of the previous match)",
  K: "\\K (keep what is left of it)",
  N: "\\N (non-newline, or a named character)",
  R: "\\R (any line break)",
  X: "\\X (extended grapheme cluster)",
  C: "\\C (a single byte)",
  h: "\\h (horizontal whitespace)",
  H: "\\H (not horizontal whitespace)",
  v: "\\v (vertical whitespace; \\v is a vertical tab in JavaScript)",
  V: "\\V (not vertical whitespace)",
  p: "\\p (Unicode property: needs the u flag)",
  P: "\\P (Unicode property: needs the u flag)",
  o: "\\o{…} (octal)",
  l: "\\l (a string escape, not a regex one)",
  u: "\\u (a string escape, not a regex one)",
  L: "\\L (a string escape, not a regex one)",
  U: "\\U (a string escape, not a regex one)",
  Q: "\\Q (a string escape: in a regex read from a file Perl takes it as a literal Q)",
  E: "\\E (a string escape, not a regex one)",
  F: "\\F (a string escape, not a regex one)",
};

/** POSIX classes inside brackets, as JavaScript class contents (ASCII, as Perl without /u). */
const POSIX_CLASSES: Record<string, string> = {
  alpha: "A-Za-z",
  digit: "0-9",
  alnum: "A-Za-z0-9",
  upper: "A-Z",
  lower: "a-z",
  space: "\\s",
  blank: " \\t",
  word: "\\w",
  xdigit: "0-9A-Fa-f",
  punct: "!-\\/:-@\\[-`{-~",
  cntrl: "\\x00-\\x1F\\x7F",
  print: " -~",
  graph: "!-~",
  ascii: "\\x00-\\x7F",
};
const NEGATED_POSIX_CLASSES: Record<string, string> = { digit: "\\D", space: "\\S", word: "\\W" };

const NAME = /^[A-Za-z_][A-Za-z0-9_]*/;

/** The new names of the first two capturing groups. */
const ROLE_NAMES = ["user", "ip"] as const;

/** Parts of the output that are only known once every group has been seen. */
type Part =
  | string
  | { kind: "capture"; index: number }
  | { kind: "named-ref"; name: string }
  | { kind: "numbered-ref"; number: number };

function hex(code: number, width: 2 | 4): string {
  return code.toString(16).toUpperCase().padStart(width, "0");
}

/** `\xHH` or `\uHHHH` for a code point, or undefined when it needs the u flag. */
function codeEscape(code: number): string | undefined {
  if (code <= 0xff) return `\\x${hex(code, 2)}`;
  if (code <= 0xffff) return `\\u${hex(code, 4)}`;
  return undefined;
}

class Translator {
  private readonly parts: Part[] = [];
  readonly problems: string[] = [];
  readonly changes: string[] = [];
  /** Original names of the capturing groups, in the order their parentheses open. */
  private readonly captures: (string | undefined)[] = [];
  private pos = 0;

  constructor(private readonly src: string) {}

  private problem(text: string): void {
    if (!this.problems.includes(text)) this.problems.push(text);
  }

  private change(text: string): void {
    if (!this.changes.includes(text)) this.changes.push(text);
  }

  private peek(offset = 0): string | undefined {
    return this.src[this.pos + offset];
  }

  private rest(): string {
    return this.src.slice(this.pos);
  }

  run(): void {
    while (this.pos < this.src.length) {
      const char = this.src[this.pos] as string;
      switch (char) {
        case "\\":
          this.escape(false);
          break;
        case "[":
          this.characterClass();
          break;
        case "(":
          this.group();
          break;
        case "*":
        case "+":
        case "?":
          this.pos++;
          this.parts.push(char);
          this.quantifierSuffix();
          break;
        case "{":
          this.brace();
          break;
        case "}":
        case "]":
          this.pos++;
          this.parts.push(`\\${char}`);
          break;
        default:
          this.pos++;
          this.parts.push(char);
      }
    }
  }

  /** After a quantifier: `?` makes it lazy (fine), `+` makes it possessive (no JS equivalent). */
  private quantifierSuffix(): void {
    const next = this.peek();
    if (next === "?") {
      this.pos++;
      this.parts.push("?");
    } else if (next === "+") {
      this.pos++;
      this.problem("possessive quantifiers (*+, ++, ?+, {n}+)");
    }
  }

  /** `{n}`, `{n,}`, `{n,m}`, or a literal brace. */
  private brace(): void {
    const rest = this.rest();
    const match = /^\{\d+(?:,\d*)?\}/.exec(rest);
    if (match) {
      this.pos += match[0].length;
      this.parts.push(match[0]);
      this.quantifierSuffix();
      return;
    }
    const newer = /^\{\s*\d*\s*(?:,\s*\d*\s*)?\}/.exec(rest);
    if (newer && /\d/.test(newer[0])) {
      // Perl 5.34 made {,n} and spaced braces quantifiers; older Perls took them literally.
      this.pos += newer[0].length;
      this.problem(`${newer[0]} (a quantifier since Perl 5.34, literal text before)`);
      return;
    }
    this.pos++;
    this.parts.push("\\{");
  }

  private group(): void {
    const rest = this.rest();
    if (rest.startsWith("(*")) {
      this.problem("backtracking control verbs such as (*FAIL) or (*SKIP)");
      this.skipGroupOpener();
      return;
    }
    if (!rest.startsWith("(?")) {
      this.pos++;
      this.openCapture(undefined);
      return;
    }
    const plain = /^\(\?(?::|=|!|<=|<!)/.exec(rest);
    if (plain) {
      this.pos += plain[0].length;
      this.parts.push(plain[0]);
      return;
    }
    const named = /^\(\?(?:<([A-Za-z_]\w*)>|'([A-Za-z_]\w*)'|P<([A-Za-z_]\w*)>)/.exec(rest);
    if (named) {
      this.pos += named[0].length;
      this.openCapture(named[1] ?? named[2] ?? named[3]);
      return;
    }
    const namedRef = /^\(\?P=([A-Za-z_]\w*)\)/.exec(rest);
    if (namedRef) {
      this.pos += namedRef[0].length;
      this.parts.push({ kind: "named-ref", name: namedRef[1] as string });
      return;
    }
    if (rest.startsWith("(?^:")) {
      // What Perl prints for a qr// object: a group with the default flags.
      this.pos += 4;
      this.parts.push("(?:");
      this.change("(?^: → (?:");
      return;
    }
    if (rest.startsWith("(?#")) this.problem("(?#…) comments");
    else if (rest.startsWith("(?>")) this.problem("atomic groups (?>…)");
    else if (rest.startsWith("(?|")) this.problem("branch reset groups (?|…)");
    else if (rest.startsWith("(?(")) this.problem("conditionals (?(…)…)");
    else if (/^\(\?\??\{/.test(rest)) this.problem("embedded code (?{…}) and (??{…})");
    else if (rest.startsWith("(?[")) this.problem("extended bracketed character classes (?[…])");
    else if (/^\(\?(?:R|[+-]?\d+|&|P>)/.test(rest)) this.problem("recursion and subroutine calls");
    else if (/^\(\?\^?[a-zA-Z]*(?:-[a-zA-Z]*)?[:)]/.test(rest)) {
      const flags = /^\(\?[^:)]*[:)]/.exec(rest)?.[0] ?? "(?";
      this.problem(`inline flags such as ${flags}${flags.endsWith(":") ? "…)" : ""}`);
    } else this.problem(`the group syntax ${rest.slice(0, 4)}`);
    this.skipGroupOpener();
  }

  /** Skips `(` so that the scan goes on and finds further problems. */
  private skipGroupOpener(): void {
    this.pos++;
    this.parts.push("(?:");
  }

  private openCapture(name: string | undefined): void {
    const index = this.captures.length;
    this.captures.push(name);
    this.parts.push({ kind: "capture", index });
  }

  /** A backslash escape at `pos`; `inClass` when inside `[…]`. */
  private escape(inClass: boolean): void {
    const next = this.peek(1);
    if (next === undefined) {
      this.pos++;
      this.problem("a trailing backslash");
      return;
    }
    const rest = this.rest();

    // Escapes that mean the same in JavaScript.
    if ((inClass ? SAME_CLASS_ESCAPES : SAME_ESCAPES).has(next)) {
      if (!inClass && (next === "b" || next === "B") && this.peek(2) === "{") {
        this.problem(`\\${next}{…} (Unicode boundaries)`);
        this.pos += 2;
        return;
      }
      this.pos += 2;
      this.parts.push(`\\${next}`);
      return;
    }

    // Anchors: exact outside a class; a single log line has no inner newline for \Z to see.
    if (next === "A" || next === "z" || next === "Z") {
      this.pos += 2;
      if (inClass) {
        this.problem(`\\${next} inside a character class`);
        return;
      }
      const js = next === "A" ? "^" : "$";
      this.parts.push(js);
      this.change(`\\${next} → ${js}`);
      return;
    }

    if (next === "e" || next === "a") {
      this.pos += 2;
      const js = next === "e" ? "\\x1B" : "\\x07";
      this.parts.push(js);
      this.change(`\\${next} → ${js}`);
      return;
    }

    if (next === "x") {
      const braced = /^\\x\{\s*([0-9A-Fa-f]*)\s*\}/.exec(rest);
      const bare = /^\\x([0-9A-Fa-f]{0,2})/.exec(rest);
      const match = braced ?? bare;
      if (!match) return; // unreachable: bare always matches
      const digits = match[1] ?? "";
      const js = codeEscape(digits === "" ? 0 : Number.parseInt(digits, 16));
      this.pos += match[0].length;
      if (js === undefined) {
        this.problem(`${match[0]} (a code point above U+FFFF needs the u flag)`);
        return;
      }
      this.parts.push(js);
      if (js !== match[0]) this.change(`${match[0]} → ${js}`);
      return;
    }

    if (next === "c") {
      const control = this.peek(2);
      this.pos += 3;
      if (control === undefined || !/[A-Za-z]/.test(control)) {
        this.problem(`\\c${control ?? ""} (only \\cA … \\cZ exist in JavaScript)`);
        return;
      }
      this.parts.push(`\\c${control.toUpperCase()}`);
      return;
    }

    if (next === "0") {
      // Octal: \0, \01, \012.
      const octal = /^\\(0[0-7]{0,2})/.exec(rest);
      const digits = octal?.[1] ?? "0";
      this.pos += 1 + digits.length;
      const js = codeEscape(Number.parseInt(digits, 8)) as string;
      this.parts.push(js);
      this.change(`\\${digits} → ${js}`);
      return;
    }

    if (/[1-9]/.test(next)) {
      const digits = /^\\(\d+)/.exec(rest)?.[1] ?? next;
      this.pos += 1 + digits.length;
      // Perl: \1 … \9 are back-references, and so is \10 and up when that many groups have
      // opened before it; otherwise (and always inside a class) the digits are octal.
      const number = Number(digits);
      if (!inClass && (number < 10 || number <= this.captures.length)) {
        this.parts.push({ kind: "numbered-ref", number });
        return;
      }
      const octal = /^[0-7]{1,3}/.exec(digits)?.[0];
      if (octal === undefined) {
        this.problem(`\\${digits} (neither a group nor an octal escape)`);
        return;
      }
      const js = `${codeEscape(Number.parseInt(octal, 8))}${digits.slice(octal.length)}`;
      this.parts.push(js);
      this.change(`\\${digits} → ${js}`);
      return;
    }

    if (next === "g" && !inClass) {
      const match = /^\\g(?:\{\s*(-?\d+|[A-Za-z_]\w*)\s*\}|(-?\d+))/.exec(rest);
      const ref = match?.[1] ?? match?.[2];
      if (!match || ref === undefined) {
        this.pos += 2;
        this.problem("\\g without a group number or name");
        return;
      }
      this.pos += match[0].length;
      if (NAME.test(ref)) {
        this.parts.push({ kind: "named-ref", name: ref });
        return;
      }
      const number = Number(ref);
      // \g{-1} is the group opened last before this point.
      const absolute = number < 0 ? this.captures.length + number + 1 : number;
      if (absolute < 1) {
        this.problem(`${match[0]} refers to a group that does not exist`);
        return;
      }
      this.parts.push({ kind: "numbered-ref", number: absolute });
      if (number < 0) this.change(`${match[0]} → \\${absolute}`);
      return;
    }

    if (next === "k" && !inClass) {
      const match = /^\\k(?:<([A-Za-z_]\w*)>|'([A-Za-z_]\w*)'|\{([A-Za-z_]\w*)\})/.exec(rest);
      const name = match?.[1] ?? match?.[2] ?? match?.[3];
      if (!match || name === undefined) {
        this.pos += 2;
        this.problem("\\k without a group name");
        return;
      }
      this.pos += match[0].length;
      this.parts.push({ kind: "named-ref", name });
      return;
    }

    const untranslatable = UNTRANSLATABLE_ESCAPES[next];
    if (untranslatable !== undefined || /[A-Za-z0-9]/.test(next)) {
      this.pos += 2;
      this.problem(untranslatable ?? `the escape \\${next}`);
      return;
    }

    // A punctuation (or other) character taken literally.
    this.pos += 2;
    this.parts.push((inClass ? CLASS_SYNTAX_CHARS : SYNTAX_CHARS).has(next) ? `\\${next}` : next);
  }

  /** `[…]` with Perl's rules: a `]` first is literal, `[:name:]` is a POSIX class. */
  private characterClass(): void {
    const start = this.pos;
    this.pos++;
    this.parts.push("[");
    if (this.peek() === "^") {
      this.pos++;
      this.parts.push("^");
    }
    if (this.peek() === "]") {
      // Perl: literal; JavaScript: `[]` would match nothing and `[^]` anything.
      this.pos++;
      this.parts.push("\\]");
    }
    while (this.pos < this.src.length) {
      const char = this.src[this.pos] as string;
      if (char === "]") {
        this.pos++;
        this.parts.push("]");
        return;
      }
      if (char === "\\") {
        this.escape(true);
        continue;
      }
      if (char === "[") {
        const posix = /^\[([:.=])(\^?)([A-Za-z]*)\1\]/.exec(this.rest());
        if (posix) {
          this.pos += posix[0].length;
          const [text, kind, negated, name = ""] = posix;
          const js =
            kind === ":" ? (negated ? NEGATED_POSIX_CLASSES : POSIX_CLASSES)[name] : undefined;
          if (js === undefined) {
            this.problem(`the POSIX class ${text}`);
          } else {
            this.parts.push(js);
            this.change(`${text} → ${js}`);
          }
          continue;
        }
        this.pos++;
        this.parts.push("\\[");
        continue;
      }
      this.pos++;
      this.parts.push(char);
    }
    this.problem(`an unterminated character class at offset ${start}`);
  }

  /** Resolves group names and references; undefined when a reference cannot be resolved. */
  finish(): string | undefined {
    const names = this.captures.map((original, index) => ROLE_NAMES[index] ?? original);
    const renamed = new Map<string, string>();
    this.captures.forEach((original, index) => {
      const role = ROLE_NAMES[index];
      if (original !== undefined && role !== undefined) renamed.set(original, role);
    });
    for (const [index, name] of names.entries()) {
      if (index >= ROLE_NAMES.length && name !== undefined && names.indexOf(name) !== index) {
        this.problem(`a later group is also named "${name}"`);
      }
    }
    if (this.captures[0] !== undefined) this.change(`(?<${this.captures[0]}>…) → (?<user>…)`);
    else if (this.captures.length > 0) this.change("$1 → (?<user>…)");
    if (this.captures[1] !== undefined) this.change(`(?<${this.captures[1]}>…) → (?<ip>…)`);
    else if (this.captures.length > 1) this.change("$2 → (?<ip>…)");

    let out = "";
    for (const [index, part] of this.parts.entries()) {
      if (typeof part === "string") {
        out += part;
      } else if (part.kind === "capture") {
        const name = names[part.index];
        out += name === undefined ? "(" : `(?<${name}>`;
      } else if (part.kind === "named-ref") {
        const name = renamed.get(part.name) ?? part.name;
        if (!names.includes(name)) this.problem(`\\k<${part.name}> refers to no group`);
        out += `\\k<${name}>`;
      } else {
        if (part.number > this.captures.length) {
          this.problem(`\\${part.number} refers to a group that does not exist`);
        }
        out += `\\${part.number}`;
        // A digit right after (possible after \g{1}) would be read as part of the number.
        const following = this.parts[index + 1];
        if (typeof following === "string" && /^\d/.test(following)) out += "(?:)";
      }
    }
    return this.problems.length > 0 ? undefined : out;
  }

  get captureCount(): number {
    return this.captures.length;
  }
}

/**
 * Translates a Perl regex whose $1 is the user and $2 the IP address into a JavaScript source
 * with `(?<user>…)` and `(?<ip>…)`; see the module comment for the rule.
 */
export function translatePerlRegex(perl: string): RegexTranslation {
  const translator = new Translator(perl);
  if (/[\u{10000}-\u{10FFFF}]/u.test(perl)) {
    // Without the u flag JavaScript sees two UTF-16 units, and a quantifier takes only one.
    return { source: undefined, problems: ["characters above U+FFFF"], changes: [] };
  }
  translator.run();
  const source = translator.finish();
  const { problems, changes } = translator;
  if (source === undefined) return { source, problems, changes };
  if (translator.captureCount < 2) {
    const count = translator.captureCount;
    problems.push(
      `it has ${count} capturing group${count === 1 ? "" : "s"}; the legacy tool took the user from $1 and the IP address from $2`,
    );
    return { source: undefined, problems, changes };
  }
  try {
    // The empty alternative matches "", so `groups` lists every named group.
    const groups = new RegExp(`(?:${source})|`).exec("")?.groups ?? {};
    new RegExp(source);
    if (!("user" in groups) || !("ip" in groups)) {
      problems.push("the translation lost the user or ip group");
      return { source: undefined, problems, changes };
    }
  } catch (error) {
    problems.push(`it does not compile in JavaScript: ${(error as Error).message}`);
    return { source: undefined, problems, changes };
  }
  return { source, problems, changes };
}
