# boot.mk - what the boot check needs: `make install-boot` (QEMU, OVMF, SeaBIOS, and the tools
# the fixture flake uses to make its images bootable). Included by the top-level Makefile.

BOOT_SCRIPTS := $(patsubst %/,%,$(dir $(lastword $(MAKEFILE_LIST))))/../scripts

.PHONY: install-boot
## install-boot: install QEMU (matching the backports qemu-img), OVMF, SeaBIOS, GRUB EFI, nasm (root, apt)
install-boot:
	bash '$(BOOT_SCRIPTS)/install-boot.sh'
