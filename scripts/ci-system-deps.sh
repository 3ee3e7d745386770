#!/usr/bin/env bash
# System packages the browser test (tests/e2e/test_quality_ui.py) needs: Debian's chromium, driven by Playwright
# through its executable (no browser download). Idempotent: does nothing when chromium is already installed.
set -euo pipefail

if command -v chromium >/dev/null 2>&1; then
    echo "ci-system-deps: chromium already installed ($(command -v chromium))"
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "ci-system-deps: no apt-get here; install chromium yourself or the browser test skips" >&2
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo"
    else
        echo "ci-system-deps: not root and no sudo; install chromium yourself or the browser test skips" >&2
        exit 0
    fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core
echo "ci-system-deps: installed $(chromium --version 2>/dev/null || echo chromium)"
