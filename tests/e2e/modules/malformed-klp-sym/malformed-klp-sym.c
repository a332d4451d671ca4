// SPDX-License-Identifier: GPL-2.0
/*
 * A livepatch module that refers to a vmlinux variable through a symbol already named in the
 * klp format, but malformed: ".klp.sym.vmlinux.saved_command_line" lacks the ",<sympos>" the
 * kernel's parser requires ("symbol ... has an incorrectly formatted name" at load time).
 * `klpforge convert` must refuse the module, naming the symbol, before it reaches a kernel.
 */
#include <linux/kernel.h>
#include <linux/livepatch.h>
#include <linux/module.h>
#include <linux/seq_file.h>

extern char *klpforge_bad_ref asm(".klp.sym.vmlinux.saved_command_line");

static int livepatch_cmdline_proc_show(struct seq_file *m, void *v)
{
	seq_printf(m, "klp-malformed %s\n", klpforge_bad_ref);
	return 0;
}

#include "e2e-cmdline-livepatch.h"
