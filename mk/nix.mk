# Nix for tests and demos: `make install-nix`, and NIX_CONFIG (offline settings) exported to every
# recipe, so `cargo test` and the `pipeline` binary see it. Included by the top-level Makefile.
# scripts/nix-offline.conf is the single source of the settings; scripts/nix-env.sh fills them
# in and this file only imports the result.

NIX_SCRIPTS := $(patsubst %/,%,$(dir $(lastword $(MAKEFILE_LIST))))/../scripts

# $(shell) turns newlines into spaces, but nix.conf takes one setting per line: the subshell
# prints unit separators (\037) instead, turned back into newlines here.
nix_us := $(shell printf '\037')
define nix_newline


endef
NIX_CONFIG := $(subst $(nix_us),$(nix_newline),$(shell HEPHAESTUS_NIX_CONF='$(NIX_SCRIPTS)/nix-offline.conf' && . '$(NIX_SCRIPTS)/nix-env.sh' && printf '%s' "$$NIX_CONFIG" | tr '\n' '\037'))
export NIX_CONFIG

.PHONY: install-nix nix-config
## install-nix: install Nix 2.8 (Debian) and the host tools the fixture flake uses (apt as root, only for what is missing)
install-nix:
	bash '$(NIX_SCRIPTS)/install-nix.sh'

## nix-config: show the offline Nix settings exported to recipes
nix-config:
	@printf '%s\n' "$$NIX_CONFIG"
