#!/bin/sh
# Offline checks of the production flake (nix/), run by `make check-flake`:
#   1. every .nix file under nix/ parses (nix-instantiate --parse exits non-zero otherwise);
#   2. flake.nix's outputs, evaluated with a stub nixpkgs (checks/flake-outputs.nix), declare
#      nixosConfigurations and images for exactly the profiles in profiles/*.yaml;
#   3. each profile module's `hephaestus.boot` equals the `boot` of its YAML;
#   4. sunraku's placeholder values (`.example`) fail evaluation through a NixOS assertion;
#   5. the nightly module adds to allowed-users, has nix on PATH, reads its checkout read-only;
#   6. lint, when the tools are installed (they are optional: 1 is what catches syntax errors,
#      and both tools exit 0 on one): deadnix (unused bindings), nixpkgs-fmt --check.
# None of this needs nixpkgs or the network; building and booting the images does (README.md).
# Usage: nix/checks/offline.sh [REPO_ROOT]   (default: two levels above this script)
set -eu

root=${1:-$(cd "$(dirname "$0")/../.." && pwd)}
cd "$root"
nix_instantiate=${NIX_INSTANTIATE:-nix-instantiate}

if ! command -v "$nix_instantiate" >/dev/null 2>&1; then
    echo "check-flake: $nix_instantiate not found; install Nix (make install-nix, or apt-get install nix-bin)" >&2
    exit 1
fi

failed=0
fail() { echo "check-flake: $*" >&2; failed=1; }

# 1. Syntax.
files=$(find nix -name '*.nix' | sort)
[ -n "$files" ] || fail "no .nix files under nix/"
for f in $files; do
    if ! err=$("$nix_instantiate" --parse "$f" 2>&1 >/dev/null); then
        fail "$f does not parse: $err"
    fi
done
echo "check-flake: parsed $(echo "$files" | wc -l) .nix files"

# Profile names and boot modes from profiles/*.yaml (policy.yaml is not a profile).
yaml_field() { sed -n "s/^$1:[[:space:]]*\\([A-Za-z0-9_-]*\\).*/\\1/p" "$2" | head -n 1; }
expected=$(for y in profiles/*.yaml; do
    [ "$(basename "$y")" = policy.yaml ] || yaml_field name "$y"
done | sort)
[ -n "$expected" ] || fail "no profiles in profiles/*.yaml"

# 2. Output names.
before=$failed
json_list() { tr -d '[]"\n' | tr ',' '\n' | sed '/^$/d' | sort; }
for output in nixosConfigurations images; do
    if ! got=$("$nix_instantiate" --eval --strict --json \
        -E "(import ./nix/checks/flake-outputs.nix).$output" 2>/dev/null | json_list); then
        fail "evaluating nix/checks/flake-outputs.nix failed (run it by hand for the error)"
        continue
    fi
    if [ "$got" != "$expected" ]; then
        fail "flake $output: $(echo $got) but profiles/*.yaml has: $(echo $expected)"
    fi
done
[ "$failed" -eq "$before" ] && echo "check-flake: flake outputs match profiles: $(echo $expected)"

# 3. Boot mode: the profile module's `hephaestus.boot = "…";` against the YAML's `boot:`.
before=$failed
for y in profiles/*.yaml; do
    [ "$(basename "$y")" = policy.yaml ] && continue
    name=$(yaml_field name "$y")
    boot=$(yaml_field boot "$y")
    module=nix/modules/profiles/$name.nix
    if [ ! -f "$module" ]; then
        fail "$y: no profile module $module"
        continue
    fi
    declared=$(sed -n 's/^[[:space:]]*hephaestus\.boot[[:space:]]*=[[:space:]]*"\([a-z]*\)";.*/\1/p' "$module")
    if [ "$(echo "$declared" | sed '/^$/d' | wc -l)" -ne 1 ]; then
        fail "$module: expected exactly one hephaestus.boot = \"…\"; found: $(echo $declared)"
    elif [ "$declared" != "$boot" ]; then
        fail "$module says hephaestus.boot = \"$declared\" but $y says boot: $boot"
    fi
done
[ "$failed" -eq "$before" ] && echo "check-flake: boot modes agree with profiles/*.yaml"

# 4. Placeholders cannot ship: sunraku's `.example` values fail evaluation with a message
#    naming the option to set; real values pass.
before=$failed
placeholders() { "$nix_instantiate" --eval --strict --json -E \
    "import ./nix/checks/placeholders.nix { domain = \"$1\"; oidcIssuer = \"$2\"; }" 2>&1; }
if ! out=$(placeholders vpn.hephaestus.example https://auth.hephaestus.example); then
    fail "evaluating nix/checks/placeholders.nix failed: $out"
else
    for option in hephaestus.netbird.domain hephaestus.netbird.oidcIssuer; do
        case $out in
            *"$option is still the placeholder"*) ;;
            *) fail "sunraku's placeholder $option does not fail evaluation: $out" ;;
        esac
    done
fi
if ! out=$(placeholders vpn.estate.org https://auth.estate.org/realms/estate) || [ "$out" != "[]" ]; then
    fail "sunraku with real values fails an assertion: $out"
fi
[ "$failed" -eq "$before" ] && echo "check-flake: placeholders fail evaluation, real values pass"

# 5. The nightly module adds to nix.settings.allowed-users (never replaces NixOS's [ "*" ]),
#    puts nix on the unit's PATH, makes the checkout read-only to the unit, writes the run's
#    metrics and links them into node_exporter's textfile directory when it has one.
if ! out=$("$nix_instantiate" --eval --strict --json -E 'import ./nix/checks/nightly.nix' 2>/dev/null); then
    fail "evaluating nix/checks/nightly.nix failed (run it by hand for the error)"
else
    for fact in allowedUsersMerged nixOnPath checkoutReadOnly assertionsPass metricsWritten metricsInTextfileDirectory; do
        case $out in
            *"\"$fact\":true"*) ;;
            *) fail "the nightly module breaks $fact: $out" ;;
        esac
    done
    [ "$failed" -eq 0 ] && echo "check-flake: the nightly module adds to allowed-users, has nix on PATH, reads the checkout read-only, links its metrics into node_exporter's textfile directory"
fi

# 6. Optional lint.
if command -v deadnix >/dev/null 2>&1; then
    if out=$(deadnix --fail nix 2>&1); then
        echo "check-flake: deadnix: no unused bindings"
    else
        fail "deadnix found unused bindings: $out"
    fi
else
    echo "check-flake: deadnix not installed, lint skipped (cargo install deadnix)"
fi
if command -v nixpkgs-fmt >/dev/null 2>&1; then
    if out=$(nixpkgs-fmt --check nix 2>&1); then
        echo "check-flake: nixpkgs-fmt: formatted"
    else
        fail "nixpkgs-fmt would reformat files (run nixpkgs-fmt nix): $out"
    fi
else
    echo "check-flake: nixpkgs-fmt not installed, format check skipped (cargo install nixpkgs-fmt)"
fi

exit "$failed"
