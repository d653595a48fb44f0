#!/usr/bin/env bash
# The README's test command: installs the peers the tests use (tests/setup.sh)
# and runs every test. With the peers installed, a test whose peer is missing
# fails instead of skipping (PIGEONPOST_REQUIRE_PEERS). Extra arguments go to
# `cargo test` (e.g. `tests/run.sh imap::` for one module).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tests/setup.sh
export PIGEONPOST_REQUIRE_PEERS=1
exec cargo test --locked "$@"
