#!/bin/sh
# Lint of the production flake's sources, run by `make check-flake` and `make test`: deadnix
# (no unused bindings) and nixpkgs-fmt --check (formatted as nixpkgs formats). Both come from
# scripts/install-nix-lint.sh (pinned, `make install-nix-lint`); the directory it prints is
# given as the second argument, else both are taken from PATH. Both exit 0 on a syntax error,
# so the parse check in tests/it/prod_flake.rs is what catches those.
# Usage: nix/checks/lint.sh [REPO_ROOT [TOOLS_DIR]]   (default root: two levels above this script)
set -eu

root=${1:-$(cd "$(dirname "$0")/../.." && pwd)}
[ -n "${2:-}" ] && PATH=$2:$PATH
cd "$root"
failed=0

for tool in deadnix nixpkgs-fmt; do
    command -v "$tool" >/dev/null 2>&1 || {
        echo "check-flake: $tool not found: run make install-nix-lint (scripts/install-nix-lint.sh)" >&2
        exit 1
    }
done
if out=$(deadnix --fail nix 2>&1); then
    echo "check-flake: deadnix: no unused bindings"
else
    echo "check-flake: deadnix found unused bindings: $out" >&2
    failed=1
fi
if out=$(nixpkgs-fmt --check nix 2>&1); then
    echo "check-flake: nixpkgs-fmt: formatted"
else
    echo "check-flake: nixpkgs-fmt would reformat files (run nixpkgs-fmt nix): $out" >&2
    failed=1
fi
exit "$failed"
