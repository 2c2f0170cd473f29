// node packaging/copyright.mjs APP-DIR YEAR: prints debian/copyright (DEP-5) for the package,
// poprelay itself and every module under APP-DIR/node_modules, with each module's own copyright
// lines and license, so that the file stays true when a dependency changes.
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";

const [app, year] = process.argv.slice(2);
if (!app || !year) {
  process.stderr.write("usage: node packaging/copyright.mjs APP-DIR YEAR\n");
  process.exit(2);
}

// SPDX (package.json) to Debian's short names.
const DEBIAN_NAME = { MIT: "Expat", ISC: "ISC", "Apache-2.0": "Apache-2.0" };

const TEXTS = {
  "GPL-2+": `This program is free software; you can redistribute it and/or modify
it under the terms of the GNU General Public License as published by
the Free Software Foundation; either version 2 of the License, or
(at your option) any later version.

This program is distributed in the hope that it will be useful,
but WITHOUT ANY WARRANTY; without even the implied warranty of
MERCHANTABILITY or FITNESS FOR A PARTICULAR PURPOSE.  See the
GNU General Public License for more details.

On Debian systems, the complete text of the GNU General Public License
version 2 can be found in /usr/share/common-licenses/GPL-2.`,
  "Apache-2.0": `Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.

On Debian systems, the complete text of the Apache License, Version 2.0
can be found in /usr/share/common-licenses/Apache-2.0.`,
  Expat: `Permission is hereby granted, free of charge, to any person obtaining a
copy of this software and associated documentation files (the "Software"),
to deal in the Software without restriction, including without limitation
the rights to use, copy, modify, merge, publish, distribute, sublicense,
and/or sell copies of the Software, and to permit persons to whom the
Software is furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included
in all copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL
THE AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING
FROM, OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER
DEALINGS IN THE SOFTWARE.`,
  ISC: `Permission to use, copy, modify, and/or distribute this software for any
purpose with or without fee is hereby granted, provided that the above
copyright notice and this permission notice appear in all copies.

THE SOFTWARE IS PROVIDED "AS IS" AND THE AUTHOR DISCLAIMS ALL WARRANTIES
WITH REGARD TO THIS SOFTWARE INCLUDING ALL IMPLIED WARRANTIES OF
MERCHANTABILITY AND FITNESS. IN NO EVENT SHALL THE AUTHOR BE LIABLE FOR
ANY SPECIAL, DIRECT, INDIRECT, OR CONSEQUENTIAL DAMAGES OR ANY DAMAGES
WHATSOEVER RESULTING FROM LOSS OF USE, DATA OR PROFITS, WHETHER IN AN
ACTION OF CONTRACT, NEGLIGENCE OR OTHER TORTIOUS ACTION, ARISING OUT OF
OR IN CONNECTION WITH THE USE OR PERFORMANCE OF THIS SOFTWARE.`,
};

/** Every installed module: node_modules/NAME and node_modules/@SCOPE/NAME, nested ones too. */
function modules(dir, prefix) {
  const found = [];
  const root = join(dir, "node_modules");
  if (!existsSync(root)) return found;
  for (const name of readdirSync(root).sort()) {
    if (name.startsWith(".")) continue;
    const names = name.startsWith("@")
      ? readdirSync(join(root, name))
          .sort()
          .map((n) => `${name}/${n}`)
      : [name];
    for (const full of names) {
      const path = join(root, full);
      if (!existsSync(join(path, "package.json"))) continue;
      found.push({ path, files: `${prefix}node_modules/${full}/*` });
      found.push(...modules(path, `${prefix}node_modules/${full}/`));
    }
  }
  return found;
}

function licenseOf(pkg) {
  const spdx =
    typeof pkg.license === "string"
      ? pkg.license
      : (pkg.licenses?.[0]?.type ?? pkg.license?.type ?? "");
  const name = DEBIAN_NAME[spdx];
  if (!name) throw new Error(`${pkg.name}: license ${JSON.stringify(spdx)} has no text here`);
  return name;
}

function copyrightOf(path, pkg) {
  const lines = new Set();
  for (const file of readdirSync(path)) {
    if (!/^(licen[cs]e|copying)/i.test(file)) continue;
    for (const line of readFileSync(join(path, file), "utf8").split("\n")) {
      const match = /^\W*(copyright\b.*)$/i.exec(line.trim());
      if (match && /\d{4}|\(c\)|©/i.test(match[1]))
        lines.add(
          match[1]
            .replace(/^copyright\s*(\(c\)|©)?\s*/i, "")
            .replace(/&lt;/g, "<")
            .replace(/&gt;/g, ">")
            .replace(/&amp;/g, "&")
            .trim(),
        );
    }
  }
  if (lines.size === 0) {
    const author = typeof pkg.author === "string" ? pkg.author : pkg.author?.name;
    lines.add(author ? author : `the ${pkg.name} authors`);
  }
  return [...lines];
}

const field = (name, values) => `${name}: ${values.join("\n ")}`;
const indent = (text) =>
  text
    .split("\n")
    .map((line) => (line === "" ? " ." : ` ${line}`))
    .join("\n");

const paragraphs = [
  [
    "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/",
    "Upstream-Name: poprelay",
    "Comment: The Debian package bundles the Node.js modules poprelay needs at run time, in",
    " /usr/lib/poprelay/node_modules; each has its paragraph below.",
  ].join("\n"),
  ["Files: *", `Copyright: ${year} The poprelay authors`, "License: GPL-2+"].join("\n"),
];
const used = new Set(["GPL-2+"]);
for (const module of modules(app, "usr/lib/poprelay/")) {
  const pkg = JSON.parse(readFileSync(join(module.path, "package.json"), "utf8"));
  const license = licenseOf(pkg);
  used.add(license);
  paragraphs.push(
    [
      `Files: ${module.files}`,
      field("Copyright", copyrightOf(module.path, pkg)),
      `License: ${license}`,
      `Comment: ${pkg.name} ${pkg.version}`,
    ].join("\n"),
  );
}
for (const license of [...used].sort())
  paragraphs.push(`License: ${license}\n${indent(TEXTS[license])}`);
process.stdout.write(`${paragraphs.join("\n\n")}\n`);
