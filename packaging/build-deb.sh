#!/usr/bin/env bash
# npm run package: builds dist/poprelay_<version>_<arch>.deb with Debian's own tools (dpkg-deb,
# dpkg-shlibdeps, strip), from this work tree: the compiled program and its production modules
# under /usr/lib/poprelay, /usr/bin/poprelay, the systemd units, tmpfiles.d and sysusers.d,
# /etc/poprelay/conf.d as conffiles, the man page, the examples and the copyright file.
#
# Needs: node and npm (any Node.js the package supports: the addon uses Node-API only, so one
# build loads in each of them), gcc, make and python3 (node-gyp), dpkg-dev.
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD

die() {
  echo "package: $*" >&2
  exit 1
}
for tool in node npm dpkg-deb dpkg-shlibdeps dpkg-buildflags strip gzip; do
  command -v "$tool" >/dev/null || die "$tool is missing (apt-get install dpkg-dev binutils)"
done

version=$(node -p 'require("./package.json").version')
arch=$(dpkg --print-architecture)
# Reproducible dates: the last commit's, else now.
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}
date_rfc2822=$(LC_ALL=C date -u -d "@$SOURCE_DATE_EPOCH" -R)
date_iso=$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%d)
year=$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y)
maintainer="poprelay maintainers <maintainers@users.noreply.r-seed-4431239a.example>"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
pkg=$work/root
app=$pkg/usr/lib/poprelay
doc=$pkg/usr/share/doc/poprelay

echo "package: compiling" >&2
npm run --silent build

echo "package: staging the program and its production modules" >&2
install -d "$app/bin" "$app/build"
install -m 644 package.json package-lock.json "$app/"
install -D -m 644 -t "$app/native" native/binding.gyp native/poprelay.c
install -m 755 bin/poprelay.js "$app/bin/poprelay.js"
cp -r build/src "$app/build/src"
find "$app/build" -name '*.map' -delete
# The production modules, and poprelay's addon (native/, package.json's install script).
# The headers come from the machine's Node.js (nodedir), so node-gyp downloads nothing.
if [ -z "${npm_config_nodedir:-}" ] && [ -f /usr/include/node/node_api.h ]; then
  export npm_config_nodedir=/usr
fi
# Debian's hardening flags for the addon (lintian: bindnow, fortify).
eval "$(DEB_BUILD_MAINT_OPTIONS=hardening=+all dpkg-buildflags --export=sh)"
(cd "$app" && npm ci --omit=dev --no-audit --no-fund --loglevel=error >&2)
rm -rf "$app/node_modules/.bin"
rm -f "$app/package-lock.json" "$app/node_modules/.package-lock.json"
addon=native/build/Release/poprelay.node
[ -f "$app/$addon" ] || die "the addon did not build: apt-get install gcc make python3"
# The addon alone: not its source nor node-gyp's build tree. yaml's browser build: Node.js
# takes its "node" export, dist/.
find "$app/native" -mindepth 1 ! -path "$app/native/build" ! -path "$app/native/build/Release" \
  ! -path "$app/$addon" -delete
rm -rf "$app/node_modules/yaml/browser"
# The modules' copyright lines and licenses go into the package's copyright file, which is read
# from their LICENSE files here; their documentation is not needed under /usr/lib.
install -d "$doc"
node packaging/copyright.mjs "$app" "$year" >"$doc/copyright"
find "$app/node_modules" \( -name '*.cc' -o -name '*.h' -o -name '*.gyp' -o -name '*.gypi' \
  -o -name wscript -o -name appveyor.yml -o -name run_tests.js -o -name example.js \
  -o -name CMakeLists.txt -o -name '.*' -o -name '*.d.ts' -o -name '*.d.mts' -o -name '*.d.cts' \
  -o -iname 'license*' -o -iname 'licence*' -o -iname '*.md' -o -iname 'authors' \) \
  -type f -delete
find "$app/node_modules" -mindepth 2 -maxdepth 2 -type d \
  \( -name test -o -name tests -o -name examples -o -name example -o -name .github \) \
  -exec rm -rf {} +
strip --strip-unneeded --remove-section=.comment --remove-section=.note "$app/$addon"
find "$app" -type d -exec chmod 755 {} +
find "$app" -type f -exec chmod 644 {} +
# Scripts keep their executable bit (bin/poprelay.js, yaml's bin.mjs), nothing else has one.
find "$app" -type f -name '*.*js' -exec grep -l -m 1 '^#!' {} + | xargs -r chmod 755

echo "package: staging the system files" >&2
install -D -m 755 packaging/poprelay.sh "$pkg/usr/bin/poprelay"
install -D -m 755 packaging/reload.sh "$app/reload"
install -D -m 755 packaging/generator.sh "$pkg/lib/systemd/system-generators/poprelay-generator"
for unit in poprelay@.service poprelay-cleanup.service poprelay-cleanup.timer; do
  install -D -m 644 "systemd/$unit" "$pkg/usr/lib/systemd/system/$unit"
done
install -D -m 644 systemd/sysusers.d/poprelay.conf "$pkg/usr/lib/sysusers.d/poprelay.conf"
install -D -m 644 systemd/tmpfiles.d/poprelay.conf "$pkg/usr/lib/tmpfiles.d/poprelay.conf"
install -D -m 644 conf.d/00-poprelay.yaml "$pkg/etc/poprelay/conf.d/00-poprelay.yaml"
install -d "$doc/examples"
install -m 644 conf.d/examples/*.yaml "$doc/examples/"
gzip -9n <README.md >"$doc/README.md.gz"
chmod 644 "$doc/README.md.gz"
chmod 644 "$doc/copyright"
printf '%s\n' \
  "poprelay ($version) unstable; urgency=medium" "" \
  "  * Built from the poprelay sources, version $version." "" \
  " -- $maintainer  $date_rfc2822" | gzip -9n >"$doc/changelog.gz"
chmod 644 "$doc/changelog.gz"
install -d "$pkg/usr/share/man/man8"
sed -e "s/@VERSION@/$version/" -e "s/@DATE@/$date_iso/" packaging/poprelay.8 |
  gzip -9n >"$pkg/usr/share/man/man8/poprelay.8.gz"
chmod 644 "$pkg/usr/share/man/man8/poprelay.8.gz"

echo "package: control files" >&2
install -d "$pkg/DEBIAN"
for script in postinst prerm postrm; do
  install -m 755 "packaging/debian/$script" "$pkg/DEBIAN/$script"
done
install -m 644 packaging/debian/triggers "$pkg/DEBIAN/triggers"
(cd "$pkg" && find etc -type f | sed 's|^|/|' | sort) >"$pkg/DEBIAN/conffiles"
# The addon's shared library (libc6). Its Node-API symbols come from the node binary, which
# dpkg-shlibdeps cannot see; Node-API is stable, so nodejs is bounded below only, by the
# package.json engines range (the oldest Node.js poprelay runs on).
mkdir -p "$work/shlibs/debian"
touch "$work/shlibs/debian/control"
shlibs=$(cd "$work/shlibs" && dpkg-shlibdeps -O "$app/$addon" 2>/dev/null |
  sed -n 's/^shlibs:Depends=//p')
[ -n "$shlibs" ] || die "dpkg-shlibdeps found no libraries for $addon"
node_min=$(node -p 'require("./package.json").engines.node.match(/^>=(\d+(\.\d+)*)$/)?.[1] ?? ""')
[ -n "$node_min" ] || die "package.json engines.node must be \">=VERSION\", the Depends: range"
installed_size=$(du -s -k --apparent-size --exclude=DEBIAN "$pkg" | cut -f1)
cat >"$pkg/DEBIAN/control" <<EOF
Package: poprelay
Version: $version
Architecture: $arch
Maintainer: $maintainer
Installed-Size: $installed_size
Depends: nodejs (>= $node_min), $shlibs, systemd
Suggests: postfix, dovecot-pop3d | pop3-server | imap-server
Section: mail
Priority: optional
Description: POP-before-SMTP: SMTP relay for addresses that just logged in
 poprelay lets mail clients that cannot do SMTP AUTH send mail through the
 server. It follows the login lines that the POP3/IMAP server already logs,
 from the journal or from a log file, and for a while after a login it lets
 that address relay, by writing the access map that the MTA already reads:
 Postfix, Sendmail, Exim, qmail, or a plain list.
 .
 It runs as systemd services, poprelay@AGENT (poprelay@dovecot), sandboxed,
 with a timer that expires entries while a daemon is stopped. It replaces
 Mail::POPRelay, pop-before-smtp, DRAC and relay-ctrl.
EOF
# Conffiles are not listed: dpkg keeps their sums itself, as dh_md5sums does.
(cd "$pkg" && find . -path ./DEBIAN -prune -o -path ./etc -prune -o -type f -printf '%P\0' |
  sort -z | xargs -0 md5sum) >"$pkg/DEBIAN/md5sums"
chmod 644 "$pkg/DEBIAN/control" "$pkg/DEBIAN/conffiles" "$pkg/DEBIAN/md5sums"

mkdir -p dist
deb=dist/poprelay_${version}_${arch}.deb
dpkg-deb --root-owner-group -Zxz --build "$pkg" "$deb" >&2
echo "$top/$deb"
