# boot.mk - what the boot check needs: `make install-boot` (QEMU, OVMF, SeaBIOS, xorriso for
# config drives, and the tools the fixture flake uses to make its images bootable) and
# `make install-guest` (the fixture guests' kernel and busybox). Included by the top-level Makefile.

BOOT_SCRIPTS := $(patsubst %/,%,$(dir $(lastword $(MAKEFILE_LIST))))/../scripts

.PHONY: install-boot install-guest
## install-boot: install QEMU (matching the backports qemu-img), OVMF, SeaBIOS, GRUB, nasm, xorriso, cpio (apt as root, only for what is missing)
install-boot: install-guest
	bash '$(BOOT_SCRIPTS)/install-boot.sh'

## install-guest: fetch Debian's cloud kernel and busybox-static (apt-get download) into /var/cache/hephaestus/guest
install-guest:
	bash '$(BOOT_SCRIPTS)/install-guest.sh'
