#!/usr/bin/env bash
# Builds the one-folder bundle dist/unmask-studio/ (on macOS also "dist/Unmask Studio.app") with
# the PyInstaller in .venv, then prints the bundle's size and the build time.
#
#   bash packaging/build.sh                      # trimmed default bundle (CPU torch)
#   UNMASK_BUNDLE_TRIM=0 bash packaging/build.sh # stock hooks, nothing left out (to compare)
#   bash packaging/build.sh --log-level WARN     # extra arguments go to PyInstaller
#
# Needs: bash scripts/bootstrap.sh, then .venv/bin/pip install -e '.[packaging]'. The bundle
# contains whatever torch .venv has: bootstrap installs the CPU build (TORCH_INDEX_URL for others).
# build/ and dist/ are git-ignored. Check the result with: dist/unmask-studio/unmask-studio --self-test
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -x .venv/bin/python ]; then
  PY=.venv/bin/python
elif [ -x .venv/Scripts/python.exe ]; then  # Windows (Git Bash)
  PY=.venv/Scripts/python.exe
else
  echo "build.sh: no .venv here; run: bash scripts/bootstrap.sh" >&2
  exit 1
fi
if ! "$PY" -m PyInstaller --version >/dev/null 2>&1; then
  echo "build.sh: PyInstaller is not installed in .venv; run: $PY -m pip install -e '.[packaging]'" >&2
  exit 1
fi

start=$(date +%s)
"$PY" -m PyInstaller --noconfirm --clean --distpath dist --workpath build "$@" \
  packaging/unmask-studio.spec
seconds=$(( $(date +%s) - start ))

bundle=dist/unmask-studio
[ -d "dist/Unmask Studio.app" ] && bundle="dist/Unmask Studio.app"
trim=$([ "${UNMASK_BUNDLE_TRIM:-1}" = 0 ] && echo "untrimmed" || echo "trimmed")
echo "bundle: $bundle ($trim), $(du -sh "$bundle" | cut -f1), built in $((seconds / 60)) min $((seconds % 60)) s"
