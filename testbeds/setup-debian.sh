#!/usr/bin/env bash
# setup-debian.sh: prepare a fresh Debian 12 (bookworm) machine to build,
# test and run sparsecast's labs. Run as root; safe to run again.
#
# In:  a Debian machine whose only reachable sources are Debian's archive and
#      the Go module proxy (nothing else is downloaded), and this checkout's
#      go.mod, whose `go` line is the Go version the project needs.
# Out: the lab tools from Debian (iproute2, ethtool, make, gcc, git,
#      ca-certificates, curl, procps, tshark, python3-scapy, tcpreplay, etcd; the
#      labs start etcd on ports and data directories of their own), and a
#      `go` on PATH that builds the project. If no Go at least as new as the
#      go.mod line is installed, the newest golang-1.NN-go from Debian (from
#      bookworm-backports, enabled if needed) is installed and linked into
#      /usr/local/bin; with GOTOOLCHAIN=auto (Debian's default) it fetches the
#      go.mod toolchain from the module proxy on first use, which this script
#      triggers and checks at the end.
#
# Environment: SPARSECAST_DIR overrides the checkout (default: this script's
# parent directory).

set -Eeuo pipefail

prog=setup-debian
log() { printf '%s: %s\n' "$prog" "$*"; }
die() {
	printf '%s: error: %s\n' "$prog" "$*" >&2
	exit 1
}
run() {
	printf '+ %s\n' "$*"
	"$@"
}
trap 'die "command failed (exit $?) at line $LINENO: $BASH_COMMAND"' ERR

packages=(
	iproute2 ethtool make gcc git ca-certificates curl procps
	tshark python3-scapy tcpreplay shellcheck
	# control's shared state (control run --store etcd://...) and its lab
	etcd-server etcd-client
	# the DPDK backend (make build-dpdk) and its tests
	pkg-config libdpdk-dev dpdk dpdk-dev
)
# Oldest Go whose GOTOOLCHAIN=auto can fetch a newer toolchain.
min_switching_go=1.21

export DEBIAN_FRONTEND=noninteractive
apt_get() { run apt-get -o DPkg::Lock::Timeout=300 "$@"; }

# ver_ge A B: true if Go version A (1.26.8, 1.27rc1, ...) >= B.
ver_ge() {
	dpkg --compare-versions "$(tilde "$1")" ge "$(tilde "$2")"
}
# tilde makes Go's pre-releases sort before their release, as dpkg's ~ does.
tilde() { sed -E 's/(rc|beta)/~\1/' <<<"${1#go}"; }

# go_version GO prints the version of the Go binary GO itself, never of a
# toolchain it would switch to, or nothing if it does not run.
go_version() {
	local v
	v=$(cd / && GOTOOLCHAIN=local "$1" version 2>/dev/null | awk '{print $3}') || true
	printf '%s' "${v#go}"
}

# ---- checks ----------------------------------------------------------------

[[ $(id -u) -eq 0 ]] || die "run as root (e.g. sudo $0)"
[[ -r /etc/os-release ]] || die "no /etc/os-release: not a Debian system"
# shellcheck source=/dev/null
. /etc/os-release
[[ ${ID:-} == debian ]] || die "this script is for Debian (found ID=${ID:-unknown})"
codename=${VERSION_CODENAME:-}
[[ -n $codename ]] || die "cannot tell the Debian release from /etc/os-release"
[[ $codename == bookworm ]] || log "warning: written for Debian 12 (bookworm), found $codename; continuing"

repo=${SPARSECAST_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
[[ -f $repo/go.mod ]] || die "no go.mod in $repo (set SPARSECAST_DIR to the checkout)"
need_go=$(awk '$1 == "go" { print $2; exit }' "$repo/go.mod")
[[ -n $need_go ]] || die "no go line in $repo/go.mod"
log "checkout $repo needs Go $need_go"

# ---- Debian packages -------------------------------------------------------

log "refreshing the package lists"
apt_get update

log "preseeding wireshark-common: do not install dumpcap setuid"
echo 'wireshark-common wireshark-common/install-setuid boolean false' |
	run debconf-set-selections

log "installing ${packages[*]}"
apt_get install -y "${packages[@]}"

# ---- Go --------------------------------------------------------------------

# Find the newest Go already here: on PATH, in /usr/local/go, or from Debian.
have_go='' have_ver=''
for g in "$(command -v go || true)" /usr/local/go/bin/go /usr/lib/go-*/bin/go; do
	[[ -n $g && -x $g ]] || continue
	v=$(go_version "$g")
	[[ -n $v ]] || continue
	if [[ -z $have_ver ]] || ! ver_ge "$have_ver" "$v"; then
		have_go=$g have_ver=$v
	fi
done

# link_go DIR puts DIR/go and DIR/gofmt on PATH through /usr/local/bin,
# unless a go that is not a symlink already sits there.
link_go() {
	local bin=$1 tool
	for tool in go gofmt; do
		if [[ -e /usr/local/bin/$tool && ! -L /usr/local/bin/$tool ]]; then
			die "/usr/local/bin/$tool exists and is not a symlink; put $bin on PATH by hand"
		fi
		[[ -x $bin/$tool ]] && run ln -sfn "$bin/$tool" "/usr/local/bin/$tool"
	done
	hash -r
}

# newest_pkg prints the newest golang-1.NN-go with an installable candidate.
newest_pkg() {
	local p best=
	for p in $(apt-cache pkgnames golang-1. | grep -E '^golang-1\.[0-9]+-go$' | sort -V || true); do
		[[ $(apt-cache policy "$p") =~ Candidate:\ [0-9] ]] && best=$p
	done
	printf '%s' "$best"
}

if [[ -n $have_ver ]] && ver_ge "$have_ver" "$need_go"; then
	log "Go $have_ver at $have_go is new enough; not installing Go"
	if [[ $(command -v go || true) != "$have_go" ]]; then
		# Only link if PATH's go is missing or is the older one.
		path_ver=$(go_version "$(command -v go || echo /nonexistent)")
		if [[ -z $path_ver ]] || ! ver_ge "$path_ver" "$need_go"; then
			log "putting $(dirname "$have_go") on PATH"
			link_go "$(dirname "$have_go")"
		fi
	fi
else
	log "Go ${have_ver:-(none)} is missing or older than $need_go; making sure Debian's newest golang-1.NN-go is installed (its GOTOOLCHAIN=auto fetches go$need_go)"
	pkg=$(newest_pkg)
	pkg_ver=$(sed -E 's/^golang-([0-9.]+)-go$/\1/' <<<"$pkg")
	if [[ -z $pkg ]] || ! ver_ge "$pkg_ver" "$min_switching_go"; then
		if ! grep -rqsE "^[^#]*$codename-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
			log "enabling $codename-backports for a newer Go"
			echo "deb http://deb.debian.org/debian $codename-backports main" |
				run tee "/etc/apt/sources.list.d/$codename-backports.list"
			apt_get update
		fi
		pkg=$(newest_pkg)
		pkg_ver=$(sed -E 's/^golang-([0-9.]+)-go$/\1/' <<<"$pkg")
	fi
	[[ -n $pkg ]] || die "no golang-1.NN-go package available from the configured Debian sources"
	ver_ge "$pkg_ver" "$min_switching_go" ||
		die "newest Debian Go is $pkg ($pkg_ver); need $need_go, or at least $min_switching_go to fetch it"
	log "installing $pkg"
	apt_get install -y "$pkg"
	gobin=/usr/lib/go-$pkg_ver/bin
	[[ -x $gobin/go ]] || die "$pkg installed but $gobin/go is missing"
	link_go "$gobin"
fi

# ---- check -----------------------------------------------------------------

command -v go >/dev/null || die "go is not on PATH ($PATH)"
if [[ $(cd / && go env GOTOOLCHAIN) == local* ]]; then
	log "warning: GOTOOLCHAIN defaults to local here; using auto for this check"
fi
log "checking that $(command -v go) builds with the go.mod toolchain (may fetch it from the module proxy)"
got=$(cd "$repo" && GOTOOLCHAIN=auto go version) ||
	die "go version in $repo failed: is the module proxy ($(cd / && go env GOPROXY)) reachable?"
got_ver=$(awk '{print $3}' <<<"$got")
ver_ge "$got_ver" "$need_go" || die "go in $repo is $got_ver, older than $need_go"
log "ok: $got"
