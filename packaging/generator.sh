#!/bin/sh
# poprelay-generator NORMAL-DIR [EARLY-DIR LATE-DIR]: a systemd.generator(7).
#
# poprelay@.service is written for systemd 252 (Debian 12): Type=notify, and an ExecReload=
# that sends SIGHUP and waits for the daemon's answer in the journal. systemd 253 and later
# know Type=notify-reload, which does this properly: systemd sends SIGHUP itself and
# `systemctl reload` returns when the daemon has sent RELOADING=1 and then READY=1. There, this
# generator adds a drop-in that switches the unit to it (`systemctl cat poprelay@NAME` shows it).
set -eu
PATH=/usr/sbin:/usr/bin:/sbin:/bin
dir=${1:-}
[ -n "$dir" ] || exit 0
version=$(systemctl --version 2>/dev/null | sed -n '1s/^systemd \([0-9][0-9]*\).*/\1/p')
[ "${version:-0}" -ge 253 ] || exit 0
mkdir -p "$dir/poprelay@.service.d"
cat >"$dir/poprelay@.service.d/50-notify-reload.conf" <<'UNIT'
# From /lib/systemd/system-generators/poprelay-generator: this systemd knows
# Type=notify-reload. It sends SIGHUP (ReloadSignal=) itself, and `systemctl reload` returns
# once the daemon has sent RELOADING=1 and READY=1. ExecReload= only checks the configuration.
[Service]
Type=notify-reload
ExecReload=
ExecReload=/usr/bin/poprelay check --instance %i
UNIT
