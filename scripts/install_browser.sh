#!/usr/bin/env bash
# Chromium for the web app's browser test (tests/test_app_browser.py drives it through Playwright).
# Playwright's own browser download does not work offline, so we use Debian's `chromium` package.
# Idempotent: does nothing when /usr/bin/chromium exists; skips with a message when not root.
set -euo pipefail
CHROMIUM="${RECOLORIZE_CHROMIUM:-/usr/bin/chromium}"
if [ -x "$CHROMIUM" ]; then
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "install_browser.sh: $CHROMIUM is missing and this is not root; skipping." \
       "Install it with: sudo apt-get install -y chromium (the browser test skips locally, fails in CI)" >&2
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "install_browser.sh: no apt-get here; install Chromium yourself and set RECOLORIZE_CHROMIUM" >&2
  exit 0
fi
echo "install_browser.sh: installing Debian's chromium for the browser test" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq chromium >/dev/null
