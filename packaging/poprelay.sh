#!/bin/sh
# /usr/bin/poprelay: runs poprelay, installed in /usr/lib/poprelay, with the system's Node.js.
#
# When root runs a command that writes the spool, the map or the daemon's state (add, remove,
# clean, wipe, generate, run), it runs as the user poprelay, as the daemons and the cleanup
# timer do: a file that root created there could not be rewritten by them. POPRELAY_AS_ROOT=1
# keeps root (for a map.file or spool.directory that only root may write).
set -eu
program=/usr/lib/poprelay/bin/poprelay.js

# The command is the first argument that is neither an option nor an option's value.
command=
skip=
ended=
for arg in "$@"; do
  if [ -n "$skip" ]; then skip=; continue; fi
  if [ -z "$ended" ]; then
    case $arg in
      --) ended=1; continue ;;
      # The options that take a value (src/cli/main.ts), in the separate form.
      --config-dir | --instance | --user | --agent | --regex) skip=1; continue ;;
      -*) continue ;;
    esac
  fi
  command=$arg
  break
done

if [ "$(id -u)" = 0 ] && [ -z "${POPRELAY_AS_ROOT:-}" ] && getent passwd poprelay >/dev/null; then
  case $command in
    add | remove | clean | wipe | generate)
      exec setpriv --reuid=poprelay --regid=poprelay --clear-groups -- /usr/bin/node "$program" "$@"
      ;;
    run)
      # The daemon's groups, as poprelay@.service gives them: the journal and /var/log/mail.log.
      groups=
      for group in systemd-journal adm; do
        if getent group "$group" >/dev/null; then groups=${groups:+$groups,}$group; fi
      done
      if [ -n "$groups" ]; then
        exec setpriv --reuid=poprelay --regid=poprelay --groups="$groups" -- /usr/bin/node "$program" "$@"
      fi
      exec setpriv --reuid=poprelay --regid=poprelay --clear-groups -- /usr/bin/node "$program" "$@"
      ;;
  esac
fi
exec /usr/bin/node "$program" "$@"
