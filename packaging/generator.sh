#!/bin/sh
# poprelay-generator NORMAL-DIR [EARLY-DIR LATE-DIR]: a systemd.generator(7). It adds drop-ins
# to poprelay@.service for the systemd it runs under (`systemctl cat poprelay@NAME` shows them):
#
# - systemd 253 and later: Type=notify-reload. poprelay@.service is written for systemd 252
#   (Debian 12): Type=notify, and an ExecReload= that sends SIGHUP and waits for the daemon's
#   answer in the journal. Type=notify-reload does this properly: systemd sends SIGHUP itself
#   and `systemctl reload` returns when the daemon has sent RELOADING=1 and then READY=1.
# - systemd 252, in a container: the container's boot ID. A container manager (systemd-nspawn)
#   gives its container a boot ID of its own by mounting a file over
#   /proc/sys/kernel/random/boot_id.
#   systemd 252 mounts a fresh /proc for the unit's sandbox (ProtectProc=,
#   ProtectKernelTunables=), where the kernel's own boot ID shows instead; `journalctl --follow`
#   then follows a boot the journal does not have and never shows a new entry. A copy of the
#   container's, mounted over it inside the sandbox, keeps the two the same.
set -eu
PATH=/usr/sbin:/usr/bin:/sbin:/bin
dir=${1:-}
[ -n "$dir" ] || exit 0
dropins=$dir/poprelay@.service.d

version=$(systemctl --version 2>/dev/null | sed -n '1s/^systemd \([0-9][0-9]*\).*/\1/p')
if [ "${version:-0}" -ge 253 ]; then
  mkdir -p "$dropins"
  cat >"$dropins/50-notify-reload.conf" <<'UNIT'
# From /lib/systemd/system-generators/poprelay-generator: this systemd knows
# Type=notify-reload. It sends SIGHUP (ReloadSignal=) itself, and `systemctl reload` returns
# once the daemon has sent RELOADING=1 and READY=1. ExecReload= only checks the configuration.
[Service]
Type=notify-reload
ExecReload=
ExecReload=/usr/bin/poprelay check --instance %i
UNIT
fi

# systemd 257 and later keep the container's boot ID in the sandbox, and refuse to mount a
# file over it (the unit then fails with 226/NAMESPACE): only before 253, where it is needed.
if [ "${version:-0}" -lt 253 ] && systemd-detect-virt --container --quiet 2>/dev/null &&
  [ -r /proc/sys/kernel/random/boot_id ]; then
  mkdir -p "$dropins"
  # Not a .conf file: systemd reads no unit settings from it.
  cat /proc/sys/kernel/random/boot_id >"$dropins/boot_id"
  cat >"$dropins/50-container-boot-id.conf" <<UNIT
# From /lib/systemd/system-generators/poprelay-generator: in a container, journalctl in the
# sandbox must see the container's boot ID, not the kernel's (see that file).
[Service]
BindReadOnlyPaths=$dropins/boot_id:/proc/sys/kernel/random/boot_id
UNIT
fi
