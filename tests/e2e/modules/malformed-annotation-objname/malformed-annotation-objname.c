// SPDX-License-Identifier: GPL-2.0
/*
 * A hand-written livepatch module whose sympos annotation (klpforge.h) names an object that
 * cannot appear in a klp symbol: "vmlinux.ko" contains a dot, and the kernel parses the objname
 * of ".klp.sym.<objname>.<symbol>,<sympos>" up to the first dot. `klpforge convert` must refuse
 * the annotation with a clear error instead of writing a symbol the kernel would misread.
 */
#include <linux/kernel.h>
#include <linux/livepatch.h>
#include <linux/module.h>
#include <linux/seq_file.h>

#include "klpforge.h"

extern char *saved_command_line;
KLPFORGE_MODULE_SYMPOS(vmlinux.ko, saved_command_line, 1);

static int livepatch_cmdline_proc_show(struct seq_file *m, void *v)
{
	seq_printf(m, "klp-malformed %s\n", saved_command_line);
	return 0;
}

#include "e2e-cmdline-livepatch.h"
