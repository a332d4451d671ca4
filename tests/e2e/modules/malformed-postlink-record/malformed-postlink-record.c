// SPDX-License-Identifier: GPL-2.0
/*
 * A livepatch module carrying, by hand, the intermediate form `klpforge post-link` consumes: a
 * placeholder relocation against a klp symbol plus a record in .klp_forge.relocs (place,
 * symbol + addend, type). The klp symbol name is malformed (".klp.sym.vmlinux.saved_command_line"
 * has no ",<sympos>"), so post-link must refuse the module, naming the symbol, instead of
 * emitting a .klp.rela section the kernel would reject at load time.
 */
#include <linux/kernel.h>
#include <linux/livepatch.h>
#include <linux/module.h>
#include <linux/seq_file.h>

static noinline char *klpforge_cmdline(void)
{
	char *p;

	/* movq sym(%rip), reg: REX.W, opcode, ModRM, then the 32-bit displacement at +3 */
	asm("1:	movq .klp.sym.vmlinux.saved_command_line(%%rip), %0\n"
	    "	.weak .klp.sym.vmlinux.saved_command_line\n"
	    "	.pushsection .klp_forge.relocs, \"a\"\n"
	    "	.balign 8\n"
	    "	.quad 1b + 3\n"					/* place */
	    "	.quad .klp.sym.vmlinux.saved_command_line - 4\n"	/* symbol + addend */
	    "	.long 2\n"						/* R_X86_64_PC32 */
	    "	.long 0\n"
	    "	.popsection\n"
	    : "=r" (p));
	return p;
}

static int livepatch_cmdline_proc_show(struct seq_file *m, void *v)
{
	seq_printf(m, "klp-malformed %s\n", klpforge_cmdline());
	return 0;
}

#include "e2e-cmdline-livepatch.h"
