#!/bin/sh
# exitd %pre / preinst: create the exitd user and group before the files
# that belong to them are unpacked. Works chrooted into an image root too.
#   rpm: $1 = 1 install, 2 upgrade;  deb: $1 = install|upgrade
set -e
if ! getent passwd exitd >/dev/null 2>&1; then
	if command -v systemd-sysusers >/dev/null 2>&1; then
		echo 'u exitd - "exitd VPN exit node" /var/lib/exitd /usr/sbin/nologin' |
			systemd-sysusers --replace=/usr/lib/sysusers.d/exitd.conf -
	else
		getent group exitd >/dev/null 2>&1 || groupadd -r exitd
		useradd -r -g exitd -d /var/lib/exitd -s /usr/sbin/nologin -c "exitd VPN exit node" exitd
	fi
fi
exit 0
