#!/usr/bin/env bash
# ensure-valkey.sh makes sure valkey-server and valkey-sentinel (Valkey 8) are
# on PATH: the tests start both. Nothing happens when they already are. On
# Debian 12 it installs from bookworm-backports, on Debian 13 from main;
# anywhere else it stops and says what to install. It is idempotent and safe
# to run before every test.
set -euo pipefail

if command -v valkey-server >/dev/null 2>&1 && command -v valkey-sentinel >/dev/null 2>&1; then
	exit 0
fi

pkgs=(valkey-server valkey-tools valkey-sentinel)
sudo=""
if [ "$(id -u)" != 0 ]; then
	if command -v sudo >/dev/null 2>&1; then
		sudo="sudo"
	fi
fi

. /etc/os-release 2>/dev/null || true
case "${ID:-}:${VERSION_ID:-}" in
debian:12)
	echo "ensure-valkey: installing ${pkgs[*]} from bookworm-backports" >&2
	list=/etc/apt/sources.list.d/bookworm-backports.list
	if ! grep -rqs "bookworm-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
		echo "deb http://deb.debian.org/debian bookworm-backports main" | $sudo tee "$list" >/dev/null
	fi
	$sudo apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq -t bookworm-backports "${pkgs[@]}" >/dev/null
	;;
debian:13)
	echo "ensure-valkey: installing ${pkgs[*]} from Debian main" >&2
	$sudo apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${pkgs[@]}" >/dev/null
	;;
*)
	echo "ensure-valkey: valkey-server or valkey-sentinel is not installed and this is not Debian 12 or 13." >&2
	echo "Install Valkey 8 (valkey-server, valkey-sentinel and valkey-cli) with your package manager, e.g." >&2
	echo "  apt-get install valkey-server valkey-sentinel valkey-tools   (Debian/Ubuntu)" >&2
	echo "  brew install valkey                          (macOS)" >&2
	exit 1
	;;
esac

# Debian's packages start system services; the tests start their own servers.
if command -v systemctl >/dev/null 2>&1; then
	for unit in valkey-server valkey-sentinel; do
		$sudo systemctl disable --now "$unit" >/dev/null 2>&1 || true
	done
fi
for bin in valkey-server valkey-sentinel; do
	command -v "$bin" >/dev/null || { echo "ensure-valkey: install finished but $bin is not on PATH" >&2; exit 1; }
done
valkey-server --version >&2
