#!/usr/bin/env bash
# Installs everything the tests need on a fresh Debian 12 machine, then runs every test.
source "$(dirname "$0")/setup-common.sh"
# Node.js 20's test runner (--test-concurrency); poprelay itself runs on 18.19 and later.
require_node 20 "the tests"
# gcc, make and python3 build poprelay's Node-API addon (native/: flock, sd_notify) in npm ci.
# systemd, systemd-journal-remote, dovecot, postfix and redis-server are the real parts the
# tests run against. libfaketime sets the daemon's clock in the daylight-saving test
# (test/fault-time.test.ts).
apt_install ca-certificates gcc make python3 systemd systemd-journal-remote \
  dovecot-core dovecot-pop3d dovecot-imapd postfix postfix-lmdb postfix-cdb redis-server ucspi-tcp dpkg-dev binutils lintian systemd-container man-db \
  libfaketime debootstrap
# Packages that conflict with Postfix or with ucspi-tcp are unpacked into .cache, not installed:
# Sendmail (makemap, and sendmail -bt with a sendmail.cf that m4 builds from sendmail-cf),
# Exim (exim -bh) and the IPv6-capable tcprules and tcprulescheck.
apt_install libdb5.3 libldap-2.5-0 libsasl2-2 m4 libidn12
unpack sendmail-bin usr/libexec/sendmail/makemap .cache/sendmail
unpack sendmail-cf usr/share/sendmail/cf/m4/cf.m4 .cache/sendmail-cf
unpack ucspi-tcp-ipv6 usr/bin/tcprules .cache/ucspi-tcp-ipv6
# The oldest Node.js poprelay supports (package.json engines) and Debian testing's: the addon
# and the program are run with each (test/native.test.ts).
node_binary 18.19.0
node_binary 24.22.3
unpack exim4-daemon-light usr/sbin/exim4 .cache/exim4
# The Exim binary refuses to run without the user it was built for.
id Debian-exim >/dev/null 2>&1 ||
  as_root useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin Debian-exim
build
# The field test's Debian 12, 13 and testing images (test/field.test.ts), debootstrapped once into
# /var/cache/poprelay-field and reused: the first time takes minutes, outside the time limit below.
bash scripts/field-test.sh --image all
# A test file left hanging (a server or watcher never stopped) fails the run instead of stalling CI.
# (The field test's three releases take about 15 minutes of it.)
timeout --kill-after=30s 60m node --test --test-concurrency=1 build/test/*.test.js
