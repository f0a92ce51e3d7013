#!/bin/sh
# Optional lint of the production flake's sources, run by `make check-flake` after the offline
# checks (tests/it/prod_flake.rs): deadnix (unused bindings) and nixpkgs-fmt --check, each when
# it is installed (`cargo install deadnix nixpkgs-fmt`), else named as skipped. Both exit 0 on a
# syntax error, so the parse check in prod_flake.rs is what catches those.
# Usage: nix/checks/lint.sh [REPO_ROOT]   (default: two levels above this script)
set -eu

root=${1:-$(cd "$(dirname "$0")/../.." && pwd)}
cd "$root"
failed=0

if command -v deadnix >/dev/null 2>&1; then
    if out=$(deadnix --fail nix 2>&1); then
        echo "check-flake: deadnix: no unused bindings"
    else
        echo "check-flake: deadnix found unused bindings: $out" >&2
        failed=1
    fi
else
    echo "check-flake: deadnix not installed, lint skipped (cargo install deadnix)"
fi
if command -v nixpkgs-fmt >/dev/null 2>&1; then
    if out=$(nixpkgs-fmt --check nix 2>&1); then
        echo "check-flake: nixpkgs-fmt: formatted"
    else
        echo "check-flake: nixpkgs-fmt would reformat files (run nixpkgs-fmt nix): $out" >&2
        failed=1
    fi
else
    echo "check-flake: nixpkgs-fmt not installed, format check skipped (cargo install nixpkgs-fmt)"
fi
exit "$failed"
