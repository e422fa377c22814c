#!/bin/sh
# exitd %preun / prerm — on erase only: systemctl disable --now
# (%systemd_preun), then remove whatever a failed unit left behind.
#   rpm: $1 = 0 erase, 1 upgrade;  deb: $1 = remove|upgrade|deconfigure|failed-upgrade
case "$1" in
0 | remove) ;;
*) exit 0 ;;
esac
if [ -d /run/systemd/system ]; then
	systemctl --no-reload disable --now exitd.service >/dev/null 2>&1 || :
	# A unit that failed for good (start limit) left its table; remove it.
	if ! systemctl is-active --quiet exitd.service; then
		/usr/sbin/exitd cleanup >/dev/null 2>&1 || :
	fi
fi
exit 0
