// SPDX-License-Identifier: GPL-2.0
/*
 * The module of ../convert-unexported, loaded without `klpforge convert`: nothing resolves its
 * references to the unexported saved_command_line and nr_processes(), so the kernel must
 * refuse it ("Unknown symbol").
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
	seq_printf(m, "klp-unconverted processes=%d %s\n", nr_processes(), saved_command_line);
	return 0;
}

#include "e2e-cmdline-livepatch.h"
