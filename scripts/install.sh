#!/usr/bin/env bash
# Installs the release binaries, their man pages and bash/zsh/fish completions (generated from
# the same flag definitions as --help) and the systemd unit, under PREFIX (default /usr/local).
#
#   scripts/install.sh [PREFIX]        # as root for /usr/local; DESTDIR is honoured
set -euo pipefail
cd "$(dirname "$0")/.."
prefix=${1:-/usr/local}
root="${DESTDIR:-}$prefix"
cargo build --release --quiet -p ringecho-server -p ringecho-loadgen -p ringecho-client
install -d "$root/bin" "$root/share/man/man1" "$root/share/bash-completion/completions" \
  "$root/share/zsh/site-functions" "$root/share/fish/vendor_completions.d"
for b in ringecho-server ringecho-loadgen ringecho-client; do
  install -m 0755 "target/release/$b" "$root/bin/$b"
  "target/release/$b" --generate man >"$root/share/man/man1/$b.1"
  "target/release/$b" --generate complete-bash >"$root/share/bash-completion/completions/$b"
  "target/release/$b" --generate complete-zsh >"$root/share/zsh/site-functions/_$b"
  "target/release/$b" --generate complete-fish >"$root/share/fish/vendor_completions.d/$b.fish"
done
if [ -d "${DESTDIR:-}/etc/systemd/system" ] || [ -n "${DESTDIR:-}" ]; then
  install -d "${DESTDIR:-}/etc/systemd/system"
  sed "s#/usr/local/bin/#$prefix/bin/#" dist/ringecho-server.service \
    >"${DESTDIR:-}/etc/systemd/system/ringecho-server.service"
fi
echo "install.sh: installed under $root (man pages, completions; the unit in /etc/systemd/system)"
