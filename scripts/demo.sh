#!/usr/bin/env bash
# A demo a newcomer can watch: `poprelay run` follows a Dovecot log that this script writes,
# grants relay on a scratch Postfix map as logins appear, and lets each grant expire on time.
# Installs what it needs on a fresh Debian 12 machine.
source "$(dirname "$0")/setup-common.sh"
require_node 18.19 poprelay
apt_install ca-certificates gcc make python3 postfix
build

demo=$(mktemp -d /tmp/poprelay-demo.XXXXXX)
mkdir -p "$demo/conf.d"
log="$demo/dovecot.log"
cat > "$demo/conf.d/50-demo.yaml" <<YAML
# The shipped defaults (conf.d/00-poprelay.yaml), with everything in a scratch directory.
agent: dovecot
input:
  source: file
  file: $log
relay:
  period: 8s
  # Relay while connected (session_max, 12h as shipped): a session keeps relay until its end,
  # then one period.
spool:
  directory: $demo/spool
state:
  directory: $demo
map:
  mta: postfix
  file: $demo/relay
YAML
export POPRELAY_CONFIG_DIR=$demo
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
login() { # login USER IP [SESSION]: the line Dovecot writes to its own log file for a POP3 login
  printf '%s pop3-login: Info: Login: user=<%s>, method=PLAIN, rip=%s, lip=192.0.2.1, mpid=%d%s\n' \
    "$(LC_ALL=C date '+%b %e %H:%M:%S')" "$1" "$2" $RANDOM "${3:+, session=<$3>}" >> "$log"
  echo "dovecot.log <- Login: user=<$1>, rip=$2${3:+, session=<$3>}"
}
logout() { # logout USER SESSION: the line the user's pop3 process writes when the session ends
  printf '%s pop3(%s)<%d><%s>: Info: Disconnected: Logged out top=0/0, retr=1/512, del=0/1, size=512\n' \
    "$(LC_ALL=C date '+%b %e %H:%M:%S')" "$1" $RANDOM "$2" >> "$log"
  echo "dovecot.log <- pop3($1)<…><$2>: Disconnected: Logged out"
}
show() {
  local keys
  keys=$({ grep -v '^#' "$demo/relay" || true; } | cut -d' ' -f1 | paste -sd' ' -)
  # cidr: is how Postfix reads the map (each line one address); the database beside it only
  # tells smtpd that the map changed.
  echo "map now: ${keys:-(empty)}   postmap -q 198.51.100.7 cidr: $(postmap -q 198.51.100.7 "cidr:$demo/relay" || echo none)"
}

step "Starting poprelay run, following $log (relay period: 8 s)"
touch "$log"
node bin/poprelay.js run &
daemon=$!
trap 'kill $daemon 2>/dev/null; wait $daemon 2>/dev/null' EXIT
sleep 1.5

step "alice and bob check their mail; their sessions stay open"
login alice 198.51.100.7 demoAlice1
login bob 2001:db8::25 demoBob1
sleep 0.5; show

step "Lines that grant nothing: a failed login, a local address (match.ignore), an injection attempt"
printf '%s pop3-login: Info: Disconnected (auth failed, 1 attempts in 2 secs): user=<eve>, method=PLAIN, rip=203.0.113.66, lip=192.0.2.1\n' "$(LC_ALL=C date '+%b %e %H:%M:%S')" >> "$log"
login carol 127.0.0.5
login 'x>, method=PLAIN, rip=6.6.6.6, lip=1.1.1.1, mpid=1, session=<y' 198.51.100.99
sleep 0.5; show

step "The log is rotated (renamed, then a new file); dave logs in on the new file"
mv "$log" "$log.1" && touch "$log"
login dave 203.0.113.10
sleep 0.5; show

step "alice logs out: her relay lasts one period (8 s) from now; bob is still connected"
logout alice demoAlice1
sleep 0.5; node bin/poprelay.js list

step "Waiting 9 s: every grant expires, with no new log line, but bob's: his session is open"
sleep 9; show
node bin/poprelay.js list

step "bob logs out; 9 s later his grant has expired too"
logout bob demoBob1
sleep 9; show

step "Stopping (SIGTERM); the scratch files are in $demo"
kill $daemon; wait $daemon 2>/dev/null || true
trap - EXIT
