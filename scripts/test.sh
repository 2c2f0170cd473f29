#!/usr/bin/env bash
# Installs everything the tests need on a fresh Debian 12 machine, then runs every test.
source "$(dirname "$0")/setup-common.sh"
require_node
# g++, make and python3 build the native addons (fs-ext for flock, sd-notify) in npm ci.
# libsystemd-dev builds the sd-notify addon; systemd, systemd-journal-remote, dovecot and
# postfix and redis-server are the real parts the tests run against.
apt_install ca-certificates g++ make python3 libsystemd-dev systemd systemd-journal-remote \
  dovecot-core dovecot-pop3d postfix postfix-lmdb postfix-cdb redis-server ucspi-tcp dpkg-dev binutils lintian systemd-container man-db
# Packages that conflict with Postfix or with ucspi-tcp are unpacked into .cache, not installed:
# Sendmail (makemap, and sendmail -bt with a sendmail.cf that m4 builds from sendmail-cf),
# Exim (exim -bh) and the IPv6-capable tcprules and tcprulescheck.
apt_install libdb5.3 libldap-2.5-0 libsasl2-2 m4 libidn12
unpack sendmail-bin usr/libexec/sendmail/makemap .cache/sendmail
unpack sendmail-cf usr/share/sendmail/cf/m4/cf.m4 .cache/sendmail-cf
unpack ucspi-tcp-ipv6 usr/bin/tcprules .cache/ucspi-tcp-ipv6
unpack exim4-daemon-light usr/sbin/exim4 .cache/exim4
# The Exim binary refuses to run without the user it was built for.
id Debian-exim >/dev/null 2>&1 ||
  as_root useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin Debian-exim
build
# A test file left hanging (a server or watcher never stopped) fails the run instead of stalling CI.
timeout --kill-after=30s 45m node --test --test-concurrency=1 build/test/*.test.js
