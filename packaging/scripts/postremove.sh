#!/bin/sh
# exitd %postun / postrm:
#   rpm upgrade: systemctl try-restart exitd.service (%systemd_postun_with_restart);
#                the new exitd adopts the TUN and UDP socket, members stay connected
#   erase:       daemon-reload and reload firewalld
#   rpm: $1 = 0 erase, 1 upgrade;  deb: $1 = remove|purge|upgrade|...
[ -d /run/systemd/system ] || exit 0
case "$1" in
0 | remove | purge)
	systemctl daemon-reload >/dev/null 2>&1 || :
	if systemctl is-active --quiet firewalld 2>/dev/null; then
		firewall-cmd --reload >/dev/null 2>&1 || :
	fi
	;;
[1-9]*)
	systemctl daemon-reload >/dev/null 2>&1 || :
	systemctl try-restart exitd.service >/dev/null 2>&1 || :
	;;
esac
exit 0
