// SPDX-License-Identifier: GPL-2.0
/*
 * A livepatch module carrying, by hand, the intermediate form `klpforge post-link` consumes: a
 * placeholder relocation against the weak undefined klp symbol
 * ".klp.sym.vmlinux.saved_command_line,0" plus a record in .klp_forge.relocs (place,
 * symbol + addend, type). Post-link alone (no diff, no convert) must turn it into a working
 * .klp.rela.vmlinux..text relocation: the positive twin of ../malformed-postlink-record.
 */
#include <linux/kernel.h>
#include <linux/livepatch.h>
#include <linux/module.h>
#include <linux/seq_file.h>

static noinline char *klpforge_cmdline(void)
{
	char *p;

	/* movq sym(%rip), reg: REX.W, opcode, ModRM, then the 32-bit displacement at +3 */
	asm("1:	movq \".klp.sym.vmlinux.saved_command_line,0\"(%%rip), %0\n"
	    "	.weak \".klp.sym.vmlinux.saved_command_line,0\"\n"
	    "	.pushsection .klp_forge.relocs, \"a\"\n"
	    "	.balign 8\n"
	    "	.quad 1b + 3\n"					/* place */
	    "	.quad \".klp.sym.vmlinux.saved_command_line,0\" - 4\n"	/* symbol + addend */
	    "	.long 2\n"						/* R_X86_64_PC32 */
	    "	.long 0\n"
	    "	.popsection\n"
	    : "=r" (p));
	return p;
}

static int livepatch_cmdline_proc_show(struct seq_file *m, void *v)
{
	seq_printf(m, "klp-postlink %s\n", klpforge_cmdline());
	return 0;
}

#include "e2e-cmdline-livepatch.h"
