#!/bin/sh
# exitd %post / postinst — what the RHEL systemd macros do:
#   first install: systemctl preset exitd.service (%systemd_post)
#   deb upgrade:   systemctl try-restart exitd.service (rpm does it in %postun)
#   always:        reload firewalld so it sees the exitd service
# Anything touching the running system is skipped without a booted systemd
# (installs into an image root).
#   rpm: $1 = 1 install, 2 upgrade;  deb: $1 = configure, $2 = old version
first=0
deb_upgrade=0
case "$1" in
1) first=1 ;;
configure) if [ -z "$2" ]; then first=1; else deb_upgrade=1; fi ;;
esac

if [ -d /run/systemd/system ]; then
	systemctl daemon-reload >/dev/null 2>&1 || :
	if [ "$first" = 1 ]; then
		systemctl --no-reload preset exitd.service >/dev/null 2>&1 || :
	fi
	if [ "$deb_upgrade" = 1 ]; then
		systemctl try-restart exitd.service >/dev/null 2>&1 || :
	fi
	if systemctl is-active --quiet firewalld 2>/dev/null; then
		firewall-cmd --reload >/dev/null 2>&1 || :
	fi
fi
exit 0
