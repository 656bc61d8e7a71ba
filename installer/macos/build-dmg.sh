#!/usr/bin/env bash
# Packs "dist/Unmask Studio.app" (packaging/build.sh on macOS) into
# dist/unmask-studio-<version>-macos-<arch>.dmg: a compressed disk image with the app and a
# link to /Applications to drag it onto.
#
#   bash packaging/build.sh && bash installer/macos/build-dmg.sh
#
# Optional, for distribution outside your own machines (Gatekeeper):
#   MACOS_SIGN_IDENTITY="Developer ID Application: Name (TEAMID)"  sign the app (hardened runtime)
#   MACOS_NOTARY_PROFILE=profile  notarize the image and staple the ticket (a keychain profile made
#                                 with: xcrun notarytool store-credentials profile ...)
# Without them the app keeps PyInstaller's ad-hoc signature: it runs on the machine that built it;
# elsewhere users must right-click > Open the first time.
set -euo pipefail
cd "$(dirname "$0")/../.."

APP="dist/Unmask Studio.app"
[ "$(uname)" = Darwin ] || { echo "build-dmg.sh: needs macOS (hdiutil)" >&2; exit 1; }
[ -d "$APP" ] || { echo "build-dmg.sh: $APP not found; build it first: bash packaging/build.sh" >&2; exit 1; }

VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml | head -n1)
DMG="dist/unmask-studio-${VERSION}-macos-$(uname -m).dmg"
STAGE=build/dmg
start=$(date +%s)

if [ -n "${MACOS_SIGN_IDENTITY:-}" ]; then
  codesign --force --deep --options runtime --timestamp --sign "$MACOS_SIGN_IDENTITY" "$APP"
  codesign --verify --deep --strict "$APP"
fi

rm -rf "$STAGE" "$DMG"
mkdir -p "$STAGE"
cp -R "$APP" "$STAGE/"
ln -s /Applications "$STAGE/Applications"
hdiutil create -volname "Unmask Studio" -srcfolder "$STAGE" -fs HFS+ -format UDZO -ov "$DMG"

if [ -n "${MACOS_SIGN_IDENTITY:-}" ]; then
  codesign --force --timestamp --sign "$MACOS_SIGN_IDENTITY" "$DMG"
fi
if [ -n "${MACOS_NOTARY_PROFILE:-}" ]; then
  xcrun notarytool submit "$DMG" --keychain-profile "$MACOS_NOTARY_PROFILE" --wait
  xcrun stapler staple "$DMG"
fi
echo "dmg: $DMG, $(du -h "$DMG" | cut -f1), built in $(( $(date +%s) - start )) s"
