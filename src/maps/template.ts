/**
 * The seed's `%x` templates: `%i`, `%m`, `%r` and `%%` for a literal percent sign.
 * One expander serves map lines and commands so both read templates the same way.
 */

const ESCAPE = /%([\s\S]?)/g;

/**
 * Replaces each `%x` with `quote(values[x])` and `%%` with `%`.
 * An escape not in `values` (or a lone `%` at the end) throws: validation should have caught it,
 * and guessing would put unexpected text into a map or a command.
 */
export function expandTemplate(
  template: string,
  values: Readonly<Record<string, string>>,
  quote: (value: string) => string = (value) => value,
): string {
  const quoted = Object.fromEntries(Object.entries(values).map(([name, v]) => [name, quote(v)]));
  return compileTemplate(template, quoted)({});
}

/**
 * A template used once per map line, parsed once: `fixed` values are substituted now, the
 * remaining escapes on each call.
 */
export function compileTemplate(
  template: string,
  fixed: Readonly<Record<string, string>>,
): (values: Readonly<Record<string, string>>) => string {
  // Text up to each escape still open, then the text after the last one.
  const holes: { text: string; name: string }[] = [];
  let text = "";
  let last = 0;
  for (const match of template.matchAll(ESCAPE)) {
    text += template.slice(last, match.index);
    last = match.index + match[0].length;
    const name = match[1] ?? "";
    if (name === "") throw new Error(`${describe(name)} in ${JSON.stringify(template)}`);
    if (name === "%") text += "%";
    else if (Object.hasOwn(fixed, name)) text += fixed[name];
    else {
      holes.push({ text, name });
      text = "";
    }
  }
  const tail = text + template.slice(last);
  return (values) => {
    let out = "";
    for (const hole of holes) {
      const value = Object.hasOwn(values, hole.name) ? values[hole.name] : undefined;
      if (value === undefined)
        throw new Error(`${describe(hole.name)} in ${JSON.stringify(template)}`);
      out += hole.text + value;
    }
    return out + tail;
  };
}

/** The escapes in `template` that are not `%%` or one of `allowed`, described for a message. */
export function unknownEscapes(template: string, allowed: readonly string[]): string[] {
  const unknown: string[] = [];
  for (const [, name = ""] of template.matchAll(ESCAPE)) {
    if (name !== "%" && !allowed.includes(name)) unknown.push(describe(name));
  }
  return unknown;
}

/** True when the template uses `%name`, not counting `%%name`. */
export function usesEscape(template: string, name: string): boolean {
  for (const [, found] of template.matchAll(ESCAPE)) if (found === name) return true;
  return false;
}

function describe(name: string): string {
  return name === "" ? "a lone % at the end" : `unknown escape %${name}`;
}
