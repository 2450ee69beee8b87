#!/usr/bin/env bash
# install.sh PREFIX: install a built sparsecast (bin/sparsecast) with its
# systemd units, sample configs and Grafana dashboard. `make install` calls
# it; run as root for a real install.
#
#   PREFIX/bin/sparsecast                       the binary
#   $SYSTEMD_DIR/sparsecast-{switch,control}@.service   (default /etc/systemd/system)
#   $SYSCONFDIR/sparsecast/switch-32port.yaml.example   (default /etc; never
#                                               overwrites a config)
#   PREFIX/share/sparsecast/grafana-sparsecast.json, sparsecast-alerts.yml
#   $MANDIR/man1/sparsecast*.1                  (default PREFIX/share/man)
#
# Environment: DESTDIR (staging root, for packaging), BINARY (default
# bin/sparsecast of this checkout), MANPAGES (the pages `make man` wrote,
# default man/ of this checkout), MANDIR, SYSTEMD_DIR, SYSCONFDIR,
# SPARSECAST_NO_USER=1 (do not create the sparsecast system user),
# SPARSECAST_NO_RELOAD=1 (do not run systemctl daemon-reload).
set -Eeuo pipefail

prog=install.sh
die() {
	printf '%s: error: %s\n' "$prog" "$*" >&2
	exit 1
}
run() {
	printf '+ %s\n' "$*"
	"$@"
}

[[ $# -eq 1 ]] || die "usage: install.sh PREFIX (e.g. /usr/local)"
prefix=$1
[[ $prefix == /* ]] || die "PREFIX '$prefix' must be an absolute path"
prefix=${prefix%/}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
binary=${BINARY:-$repo/bin/sparsecast}
[[ -x $binary ]] || die "no executable $binary: run make build first (or set BINARY)"
destdir=${DESTDIR:-}
manpages=${MANPAGES:-$repo/man}
[[ $manpages == /* ]] || manpages=$repo/$manpages
compgen -G "$manpages/*.1" >/dev/null || die "no man pages in $manpages: run make man first (or set MANPAGES)"
mandir=${MANDIR:-$prefix/share/man}
systemd_dir=${SYSTEMD_DIR:-/etc/systemd/system}
sysconfdir=${SYSCONFDIR:-/etc}

run install -D -m 0755 "$binary" "$destdir$prefix/bin/sparsecast"
for unit in sparsecast-switch@.service sparsecast-control@.service; do
	printf '+ sed s|@PREFIX@|%s| %s > %s\n' "$prefix" "$unit" "$destdir$systemd_dir/$unit"
	install -d "$destdir$systemd_dir"
	sed "s|@PREFIX@|$prefix|g" "$here/$unit" >"$destdir$systemd_dir/$unit.tmp"
	chmod 0644 "$destdir$systemd_dir/$unit.tmp"
	mv "$destdir$systemd_dir/$unit.tmp" "$destdir$systemd_dir/$unit"
done
run install -d -m 0755 "$destdir$sysconfdir/sparsecast"
run install -m 0644 "$here/switch-32port.yaml" "$destdir$sysconfdir/sparsecast/switch-32port.yaml.example"
run install -D -m 0644 "$here/grafana-sparsecast.json" "$destdir$prefix/share/sparsecast/grafana-sparsecast.json"
run install -m 0644 "$here/sparsecast-alerts.yml" "$destdir$prefix/share/sparsecast/sparsecast-alerts.yml"
run install -d -m 0755 "$destdir$mandir/man1"
run install -m 0644 "$manpages"/*.1 "$destdir$mandir/man1/"

if [[ -z $destdir && ${SPARSECAST_NO_USER:-0} != 1 ]]; then
	if ! id sparsecast >/dev/null 2>&1; then
		[[ $(id -u) -eq 0 ]] || die "creating the sparsecast user needs root (or set SPARSECAST_NO_USER=1)"
		run useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin sparsecast
	fi
fi
if [[ -z $destdir && ${SPARSECAST_NO_RELOAD:-0} != 1 && -d /run/systemd/system ]]; then
	run systemctl daemon-reload
fi
echo "installed; next: cp $sysconfdir/sparsecast/switch-32port.yaml.example $sysconfdir/sparsecast/NAME.yaml," \
	"edit it, then systemctl enable --now sparsecast-switch@NAME"
