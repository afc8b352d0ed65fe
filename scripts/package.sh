#!/usr/bin/env bash
# Builds a Debian package of the release binary with dpkg-deb: target/debian/ringway_VERSION_ARCH.deb.
#
#   scripts/package.sh                 release build, then the package
#   SKIP_BUILD=1 scripts/package.sh    package the release binary already in target/release/
#   MAINTAINER="Name <mail>" …         the control file's Maintainer field
#
# Contents: /usr/bin/ringway (debug info stripped), the systemd unit from deploy/ringway.service
# with its paths moved to /usr/bin (reload = takeover), /etc/ringway/ringway.toml and
# /etc/logrotate.d/ringway as conffiles (deploy/debian/), the maintainer scripts (a `ringway`
# system user, /var/log/ringway) and the README under /usr/share/doc/ringway/.
# Install with `apt-get install ./target/debian/ringway_*.deb`; see docs/packaging.md.
set -euo pipefail
cd "$(dirname "$0")/.."

version="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)"
arch="$(dpkg --print-architecture)"
maintainer="${MAINTAINER:-ringway maintainers <ringway@localhost>}"
if [ -z "${SKIP_BUILD:-}" ]; then
    cargo build --release
fi
bin=target/release/ringway
[ -x "$bin" ] || { echo "package.sh: $bin missing (build it, or unset SKIP_BUILD)" >&2; exit 1; }

stage="target/debian/ringway_${version}_${arch}"
rm -rf "$stage"
install -d "$stage/DEBIAN" "$stage/usr/bin" "$stage/usr/lib/systemd/system" \
    "$stage/etc/ringway" "$stage/etc/logrotate.d" "$stage/usr/share/doc/ringway"

install -m 0755 "$bin" "$stage/usr/bin/ringway"
strip --strip-debug "$stage/usr/bin/ringway"
# The unit in deploy/ is written for a binary in /usr/local/bin and a README in
# /usr/local/share/doc; the package puts both under /usr.
sed -e 's|/usr/local/bin/ringway|/usr/bin/ringway|g' \
    -e 's|/usr/local/share/doc/ringway|/usr/share/doc/ringway|g' \
    deploy/ringway.service >"$stage/usr/lib/systemd/system/ringway.service"
chmod 0644 "$stage/usr/lib/systemd/system/ringway.service"
install -m 0644 deploy/debian/ringway.toml "$stage/etc/ringway/ringway.toml"
install -m 0644 deploy/debian/ringway.logrotate "$stage/etc/logrotate.d/ringway"
install -m 0644 README.md "$stage/usr/share/doc/ringway/README.md"
install -m 0644 docs/packaging.md "$stage/usr/share/doc/ringway/packaging.md"
cat >"$stage/usr/share/doc/ringway/copyright" <<COPYRIGHT
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: ringway

Files: *
License: Apache-2.0
 On Debian systems the full text of the Apache License 2.0 is in
 /usr/share/common-licenses/Apache-2.0.
COPYRIGHT
for script in postinst prerm postrm; do
    install -m 0755 "deploy/debian/$script" "$stage/DEBIAN/$script"
done
printf '/etc/ringway/ringway.toml\n/etc/logrotate.d/ringway\n' >"$stage/DEBIAN/conffiles"

# glibc symbol versions the binary needs (2.34 on a bookworm build), so apt refuses an older libc.
glibc="$(objdump -T "$stage/usr/bin/ringway" | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -V | tail -n 1)"
size_kib="$(du -sk --exclude=DEBIAN "$stage" | cut -f1)"
cat >"$stage/DEBIAN/control" <<CONTROL
Package: ringway
Version: $version
Architecture: $arch
Maintainer: $maintainer
Installed-Size: $size_kib
Depends: libc6 (>= $glibc), libgcc-s1, adduser
Recommends: logrotate
Section: httpd
Priority: optional
Description: thread-per-core io_uring reverse proxy for dashboards and web apps
 ringway serves web apps on a subdomain or a sub-path, sets the forwarding
 headers they need, and carries their traffic with one pinned io_uring worker
 per core. "systemctl reload ringway" replaces the running process (new binary
 or configuration) without closing a listening socket.
CONTROL

out="target/debian/ringway_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Zxz --build "$stage" "$out" >/dev/null
echo "package.sh: wrote $out ($(du -h "$out" | cut -f1))"
