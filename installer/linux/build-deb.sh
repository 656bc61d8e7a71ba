#!/usr/bin/env bash
# Packs the PyInstaller bundle (dist/unmask-studio/, from packaging/build.sh) into a .deb:
#   /opt/unmask-studio/                          the bundle, as built
#   /usr/bin/unmask-studio                       -> /opt/unmask-studio/unmask-studio
#   /usr/share/applications/unmask-studio.desktop
#   /usr/share/icons/hicolor/{16..512}/apps/unmask-studio.png, scalable/apps/unmask-studio.svg
# and writes dist/unmask-studio_<version>_<arch>.deb. No maintainer scripts: the desktop database
# and icon cache are refreshed by the dpkg triggers of desktop-file-utils and the icon themes.
#
#   bash packaging/build.sh && bash installer/linux/build-deb.sh
#
# Needs dpkg-deb and objdump (Debian/Ubuntu: dpkg, binutils). DEB_COMPRESSION (default xz) goes
# to dpkg-deb -Z: xz makes the smallest file (177 MB from a 650 MB bundle, but ~7 min on two busy
# cores); zstd takes seconds for a third more (every dpkg new enough for the bundle's glibc reads it).
set -euo pipefail
cd "$(dirname "$0")/../.."

BUNDLE=dist/unmask-studio
HERE=installer/linux
ICONS=resources/icons
if [ ! -x "$BUNDLE/unmask-studio" ]; then
  echo "build-deb.sh: $BUNDLE/unmask-studio not found; build the bundle first: bash packaging/build.sh" >&2
  exit 1
fi
command -v dpkg-deb >/dev/null || { echo "build-deb.sh: dpkg-deb not found (apt-get install dpkg)" >&2; exit 1; }

VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml | head -n1)
ARCH=$(dpkg --print-architecture 2>/dev/null || echo amd64)
DEB="dist/unmask-studio_${VERSION}_${ARCH}.deb"
ROOT=build/deb/unmask-studio_${VERSION}_${ARCH}
start=$(date +%s)

rm -rf "$ROOT"
mkdir -p "$ROOT/DEBIAN" "$ROOT/opt" "$ROOT/usr/bin" "$ROOT/usr/share/applications"
cp -a "$BUNDLE" "$ROOT/opt/unmask-studio"
ln -s /opt/unmask-studio/unmask-studio "$ROOT/usr/bin/unmask-studio"
install -m 644 "$HERE/unmask-studio.desktop" "$ROOT/usr/share/applications/unmask-studio.desktop"
for size in 16 32 48 64 128 256 512; do
  install -D -m 644 "$ICONS/unmask-studio-$size.png" \
    "$ROOT/usr/share/icons/hicolor/${size}x${size}/apps/unmask-studio.png"
done
install -D -m 644 "$ICONS/unmask-studio.svg" "$ROOT/usr/share/icons/hicolor/scalable/apps/unmask-studio.svg"
# Files as dpkg expects them whatever the umask of the build: readable by all, no group writes.
chmod -R u+rwX,go+rX,go-w "$ROOT"

INSTALLED_KB=$(du -sk --exclude=DEBIAN "$ROOT" | cut -f1)
# Depends (control.in): the libraries PyInstaller deliberately leaves to the system (glibc, the
# EGL/GL drivers, libxcb, the Wayland client libraries), and libfontconfig1 and libxkbcommon0 for
# the data the bundled copies read (/etc/fonts and a font, the XKB keymaps). The glibc floor is
# the newest GLIBC_ symbol version any bundled binary asks for.
command -v objdump >/dev/null || { echo "build-deb.sh: objdump not found (apt-get install binutils)" >&2; exit 1; }
GLIBC=$({ find "$BUNDLE" -type f \( -name '*.so*' -o -perm -u+x \) -exec objdump -T {} + 2>/dev/null \
  || true; } | grep -o 'GLIBC_[0-9][0-9.]*' | sort -u -V | tail -n1 | cut -d_ -f2)  # objdump fails on non-ELF files
[ -n "$GLIBC" ] || { echo "build-deb.sh: found no GLIBC symbol versions in $BUNDLE" >&2; exit 1; }
sed -e "s/@VERSION@/$VERSION/" -e "s/@ARCH@/$ARCH/" -e "s/@INSTALLED_KB@/$INSTALLED_KB/" \
  -e "s/@GLIBC@/$GLIBC/" "$HERE/control.in" > "$ROOT/DEBIAN/control"

mkdir -p dist
dpkg-deb --root-owner-group -Z"${DEB_COMPRESSION:-xz}" --build "$ROOT" "$DEB" >/dev/null
rm -rf "$ROOT"  # a second copy of the bundle: only the .deb is needed now
seconds=$(( $(date +%s) - start ))
echo "deb: $DEB, $(du -h "$DEB" | cut -f1) (installed $((INSTALLED_KB / 1024)) MiB), built in ${seconds} s"
