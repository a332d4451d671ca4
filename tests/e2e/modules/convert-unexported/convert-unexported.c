// SPDX-License-Identifier: GPL-2.0
/*
 * A hand-written (source-based) livepatch of cmdline_proc_show that uses two vmlinux symbols
 * the kernel does not export: the variable saved_command_line and the function
 * nr_processes(). kbuild leaves both undefined (KBUILD_MODPOST_WARN=1); `klpforge convert`
 * must turn the references into klp relocations, or the kernel refuses the module with
 * "Unknown symbol" (see ../unconverted-load-fails).
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt
#include <linux/init.h>		/* saved_command_line: not exported */
#include <linux/kernel.h>
#include <linux/livepatch.h>
#include <linux/module.h>
#include <linux/sched/stat.h>	/* nr_processes(): not exported */
#include <linux/seq_file.h>

static int livepatch_cmdline_proc_show(struct seq_file *m, void *v)
{
	seq_printf(m, "klp-convert processes=%d %s\n", nr_processes(), saved_command_line);
	return 0;
}

#include "e2e-cmdline-livepatch.h"
