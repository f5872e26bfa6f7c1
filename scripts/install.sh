#!/usr/bin/env bash
# Installs the release binaries, their man pages and bash/zsh/fish completions (generated from
# the same flag definitions as --help) under PREFIX (default /usr/local), and the systemd
# unit where it can go: /etc/systemd/system as root, $DESTDIR/etc/systemd/system for a staged
# install. It builds nothing: build as yourself first, so no root-owned target/ is left.
#
#   cargo build --release && sudo scripts/install.sh            # /usr/local and the unit
#   cargo build --release && scripts/install.sh ~/.local        # yours alone, no unit
set -euo pipefail
cd "$(dirname "$0")/.."
prefix=${1:-/usr/local}
root="${DESTDIR:-}$prefix"
for b in ringecho-server ringecho-loadgen ringecho-client ringecho-perf; do
  if [ ! -x "target/release/$b" ]; then
    echo "install.sh: target/release/$b is missing: build first, as yourself (not with sudo):" >&2
    echo "  cargo build --release" >&2
    exit 1
  fi
done
if ! mkdir -p "$root" 2>/dev/null || [ ! -w "$root" ]; then
  echo "install.sh: cannot write $root: run it with sudo, or give a PREFIX of yours (scripts/install.sh ~/.local)" >&2
  exit 1
fi
install -d "$root/bin" "$root/share/man/man1" "$root/share/bash-completion/completions" \
  "$root/share/zsh/site-functions" "$root/share/fish/vendor_completions.d"
for b in ringecho-server ringecho-loadgen ringecho-client ringecho-perf; do
  install -m 0755 "target/release/$b" "$root/bin/$b"
  "target/release/$b" --generate man >"$root/share/man/man1/$b.1"
  "target/release/$b" --generate complete-bash >"$root/share/bash-completion/completions/$b"
  "target/release/$b" --generate complete-zsh >"$root/share/zsh/site-functions/_$b"
  "target/release/$b" --generate complete-fish >"$root/share/fish/vendor_completions.d/$b.fish"
done
unit="not installed (a system unit needs root: sudo scripts/install.sh)"
if [ -n "${DESTDIR:-}" ] || [ "$(id -u)" = 0 ]; then
  install -d "${DESTDIR:-}/etc/systemd/system"
  sed "s#/usr/local/bin/#$prefix/bin/#" dist/ringecho-server.service \
    >"${DESTDIR:-}/etc/systemd/system/ringecho-server.service"
  unit="in ${DESTDIR:-}/etc/systemd/system/ringecho-server.service"
fi
echo "install.sh: binaries, man pages and completions under $root; the systemd unit $unit"
case ":$PATH:" in *":$prefix/bin:"*) ;; *) echo "install.sh: add $prefix/bin to PATH to run them by name" ;; esac
