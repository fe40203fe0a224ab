# contrib/minivm/vm.mk — the KVM half of forkfs-minivm (vm.c, boot.c,
# vmstate.c; the API half lists $(MINIVM_VM_SOURCES) in its program) and the
# freestanding guest image guest.img. The vm-core test is in tests/local.mk.
MINIVM_VM_SOURCES = contrib/minivm/vm.h contrib/minivm/vm-internal.h \
	contrib/minivm/vm.c contrib/minivm/boot.c contrib/minivm/vmstate.c \
	contrib/minivm/emu.c contrib/minivm/cpu.c contrib/minivm/cpu.h \
	contrib/minivm/guest/abi.h

# The guest is built with the project's own compiler, but freestanding, at a
# fixed load address (guest.ld), then flattened with objcopy.
MINIVM_GUEST_FILES = contrib/minivm/guest/start.S contrib/minivm/guest/guest.c
MINIVM_GUEST_CCOPTS = -O2 -ffreestanding -fno-builtin -nostdlib -nostartfiles -static \
	-mno-red-zone -fno-pic -fno-pie -no-pie -mcmodel=small -mgeneral-regs-only \
	-fno-stack-protector -fno-asynchronous-unwind-tables -fcf-protection=none \
	-Wall -Wextra -Wl,--build-id=none -Wl,-z,noexecstack -Wl,--no-warn-rwx-segments

minivmdir = $(pkglibdir)
minivm_DATA = contrib/minivm/guest.img
EXTRA_DIST += $(MINIVM_GUEST_FILES) contrib/minivm/guest/guest.ld
CLEANFILES += contrib/minivm/guest.img contrib/minivm/guest.elf

contrib/minivm/guest.elf: $(MINIVM_GUEST_FILES) contrib/minivm/guest/guest.ld \
		contrib/minivm/guest/abi.h
	@$(MKDIR_P) contrib/minivm
	$(AM_V_CCLD)$(CC) $(MINIVM_GUEST_CCOPTS) -I$(top_srcdir) \
		-Wl,-T,$(top_srcdir)/contrib/minivm/guest/guest.ld -o $@ \
		$(top_srcdir)/contrib/minivm/guest/start.S $(top_srcdir)/contrib/minivm/guest/guest.c

contrib/minivm/guest.img: contrib/minivm/guest.elf
	$(AM_V_GEN)$(OBJCOPY) -O binary contrib/minivm/guest.elf $@
