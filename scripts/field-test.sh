#!/usr/bin/env bash
# scripts/field-test.sh RELEASE...   (bookworm, trixie, forky, or all)
# scripts/field-test.sh --image RELEASE...   (only build the cached images)
#
# The field test (issue 11): boots a Debian release with its own systemd, Node.js, Dovecot and
# Postfix (systemd-nspawn --boot --private-network), installs the built .deb there with apt,
# configures Postfix first as the README says, starts poprelay@dovecot and checks it through
# real POP3, IMAP and SMTP clients on 127.0.0.x (test/field.test.ts).
#
# Each release is debootstrapped once into $POPRELAY_FIELD_CACHE (default
# /var/cache/poprelay-field/RELEASE, outside the clone, kept between runs and by CI); a run
# boots a throwaway overlay of it. The image is built again when its package list below changes.
# Needs root, debootstrap and systemd-container (scripts/test.sh installs them).
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE=${POPRELAY_FIELD_CACHE:-/var/cache/poprelay-field}
# The Debian archive this host's apt uses (its main archive, not -security), unless told.
host_mirror() {
  cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources \
    2>/dev/null | grep -oE '(https?|file)://[^ ]*/debian/?( |$)' | head -1 | tr -d ' ' || true
}
MIRROR=${POPRELAY_FIELD_MIRROR:-$(host_mirror)}
[[ -n $MIRROR ]] || { echo "field-test: no Debian archive in /etc/apt; set POPRELAY_FIELD_MIRROR" >&2; exit 1; }
RELEASES=(bookworm trixie forky)
# What the field test needs inside: the release's own systemd (and dbus, as on a real system),
# Node.js, Dovecot and Postfix with the map types poprelay writes.
PACKAGES=systemd,systemd-sysv,dbus,nodejs,dovecot-core,dovecot-pop3d,dovecot-imapd,postfix,postfix-lmdb,postfix-cdb,ca-certificates

log() { printf 'field-test: %s\n' "$*" >&2; }

# The debootstrap script for RELEASE: this host's debootstrap may predate it (forky), and
# every Debian release after bookworm is bootstrapped as sid is.
script_for() {
  local release=$1
  if [[ -e /usr/share/debootstrap/scripts/$release ]]; then echo "/usr/share/debootstrap/scripts/$release"
  else echo /usr/share/debootstrap/scripts/sid; fi
}

# Builds $CACHE/RELEASE unless it is there with the same package list. Built beside it and
# renamed at the end, so that an interrupted build is never taken for an image.
image() {
  local release=$1 dir=$CACHE/$1 stamp="$PACKAGES $MIRROR"
  if [[ -f $dir/.poprelay-field && $(<"$dir/.poprelay-field") == "$stamp" ]]; then
    log "$release: cached image $dir"
    return
  fi
  local start=$SECONDS tmp=$CACHE/.$release.building
  mkdir -p "$CACHE"
  rm -rf "$tmp"
  log "$release: debootstrap into $tmp (from $MIRROR)"
  debootstrap --variant=minbase --include="$PACKAGES" "$release" "$tmp" "$MIRROR" \
    "$(script_for "$release")" >"$CACHE/.$release.log" 2>&1 || {
    tail -40 "$CACHE/.$release.log" >&2
    log "$release: debootstrap failed (whole log: $CACHE/.$release.log)"
    return 1
  }
  # Testing's Release file expires within days; the image must stay usable long after.
  echo 'Acquire::Check-Valid-Until "false";' >"$tmp/etc/apt/apt.conf.d/50poprelay-field"
  echo "$release" >"$tmp/etc/hostname"
  rm -f "$tmp/var/cache/apt/archives/"*.deb
  echo "$stamp" >"$tmp/.poprelay-field"
  rm -rf "$dir"
  mv "$tmp" "$dir"
  log "$release: image built in $((SECONDS - start)) s: $(du -sh "$dir" | cut -f1)"
}

releases() {
  local release
  for release in "$@"; do
    if [[ $release == all ]]; then printf '%s\n' "${RELEASES[@]}"
    elif [[ " ${RELEASES[*]} " == *" $release "* ]]; then echo "$release"
    else log "unknown release '$release': one of ${RELEASES[*]} or all"; return 2; fi
  done
}

only_image=false
if [[ ${1:-} == --image ]]; then only_image=true; shift; fi
[[ $# -gt 0 ]] || { sed -n '2,3s/^# //p' "$0" >&2; exit 2; }
mapfile -t wanted < <(releases "$@")
[[ ${#wanted[@]} -gt 0 ]] || exit 2

# The images at the same time: most of a first build is waiting for the archive.
pids=()
for release in "${wanted[@]}"; do image "$release" & pids+=($!); done
for pid in "${pids[@]}"; do wait "$pid"; done
$only_image && exit 0

# The checks themselves, one release after the other, with the .deb `npm run package` builds.
[[ -d node_modules ]] || npm ci
npm run --silent build
POPRELAY_FIELD_RELEASES="${wanted[*]}" POPRELAY_FIELD_CACHE=$CACHE \
  node --test --test-concurrency=1 build/test/field.test.js
