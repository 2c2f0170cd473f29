#!/bin/sh
# /usr/lib/poprelay/reload INSTANCE MAINPID: ExecReload= of poprelay@.service on systemd 252
# (Debian 12), which has no Type=notify-reload. It makes `systemctl reload` as synchronous as
# that systemd allows:
#   1. it checks the configuration first: when it is not valid, the reload fails with the
#      reason in the journal, and the daemon goes on untouched;
#   2. it sends SIGHUP; the daemon tells systemd RELOADING=1, then READY=1 when it is done;
#   3. it waits (up to 20 s) until the daemon has logged how the reload went, and fails if the
#      daemon kept its previous configuration.
# On systemd >= 253 poprelay-generator replaces this with Type=notify-reload.
set -u
instance=$1
pid=$2

/usr/bin/poprelay check --instance "$instance" >/dev/null || exit 1

since=$(date +%s.%N)
kill -HUP "$pid" || exit 1

tries=0
while [ "$tries" -lt 100 ]; do
  outcome=$(journalctl --quiet --no-pager --output=cat --since="@$since" _PID="$pid" 2>/dev/null |
    grep -m 1 -e 'reloaded the configuration' -e 'reload failed')
  case $outcome in
    *'reload failed'*) exit 1 ;;
    ?*) exit 0 ;;
  esac
  sleep 0.2
  tries=$((tries + 1))
done
echo "sent SIGHUP to $pid, but its outcome is not in the journal yet: see systemctl status poprelay@$instance" >&2
exit 0
