#!/usr/bin/env bash
# A demo a newcomer can watch: poprelay grants relay on a scratch Postfix map, Postfix's own
# postmap answers for it, and the grant expires. Installs what it needs on a fresh Debian 12.
source "$(dirname "$0")/setup-common.sh"
require_node
apt_install ca-certificates g++ make python3 postfix
build

demo=$(mktemp -d /tmp/poprelay-demo.XXXXXX)
mkdir -p "$demo/conf.d"
cat > "$demo/conf.d/50-demo.yaml" <<YAML
relay:
  period: 5s
spool:
  directory: $demo/spool
state:
  directory: $demo
map:
  mta: postfix
  file: $demo/relay
YAML
export POPRELAY_CONFIG_DIR=$demo
poprelay() { echo "\$ poprelay $*"; node bin/poprelay.js "$@"; }
query() { echo "\$ postmap -q $1 hash:$demo/relay"; postmap -q "$1" "hash:$demo/relay" || echo "(no entry: Postfix would refuse to relay for $1)"; }
step() { printf '\n== %s\n' "$*"; }

step "The configuration: conf.d/00-poprelay.yaml's defaults, with scratch paths and a 5 s period"
cat "$demo/conf.d/50-demo.yaml"
poprelay check

step "alice logs in from 198.51.100.7 (poprelay run does this from the mail log; here by hand)"
poprelay add 198.51.100.7 --user alice
poprelay add 2001:db8::25 --user bob
poprelay list
step "The map Postfix reads (hash:$demo/relay), and Postfix's own lookup of it"
cat "$demo/relay"
query 198.51.100.7
query 2001:db8::25
query 203.0.113.9

step "Bad input is refused before it reaches the spool or the map"
poprelay add '1.2.3.4 OK
0.0.0.0/0' || true

step "Waiting 6 s for relay.period to pass"
sleep 6
poprelay list
poprelay clean
query 198.51.100.7

step "Done. The scratch files are in $demo"
