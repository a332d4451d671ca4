/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The registration shared by the e2e source-based livepatch modules: replace
 * cmdline_proc_show (vmlinux) by livepatch_cmdline_proc_show, which the including file
 * defines first. The harness passes E2E_INCLUDE=<this directory> to kbuild.
 */
static struct klp_func funcs[] = {
	{ .old_name = "cmdline_proc_show", .new_func = livepatch_cmdline_proc_show, },
	{ }
};

static struct klp_object objs[] = {
	{ /* name NULL: vmlinux */ .funcs = funcs, },
	{ }
};

static struct klp_patch patch = {
	.mod = THIS_MODULE,
	.objs = objs,
};

static int livepatch_init(void)
{
	return klp_enable_patch(&patch);
}

static void livepatch_exit(void)
{
}

module_init(livepatch_init);
module_exit(livepatch_exit);
MODULE_LICENSE("GPL");
MODULE_INFO(livepatch, "Y");
