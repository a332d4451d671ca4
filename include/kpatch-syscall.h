/* SPDX-License-Identifier: GPL-2.0 */
/*
 * kpatch-syscall.h as klpforge provides it: KPATCH_SYSCALL_DEFINE0..6, which kpatch patch authors
 * write instead of SYSCALL_DEFINE0..6 to change a system call. Written from the documented
 * behaviour, not from kpatch's file.
 *
 * kpatch needs its own definitions because the body of a system call is a notrace inline
 * function (__do_sys_<name>) that its tools cannot patch, so they rename it and drop the
 * syscall's trace metadata. klpforge needs neither: a changed notrace function is patched
 * through the traceable functions that call or inline it (the __<arch>_sys_<name> entry
 * points), and the trace metadata, which does not change with the body, is compared like any
 * other data. So here each macro is the kernel's own SYSCALL_DEFINE, and a patch written for
 * kpatch builds unchanged (the macros exist whatever the architecture).
 */
#ifndef _KLPFORGE_KPATCH_SYSCALL_H_
#define _KLPFORGE_KPATCH_SYSCALL_H_

#include <linux/syscalls.h>
#include "kpatch-macros.h"

#define KPATCH_SYSCALL_DEFINE0(sname) SYSCALL_DEFINE0(sname)
#define KPATCH_SYSCALL_DEFINE1(name, ...) SYSCALL_DEFINE1(name, __VA_ARGS__)
#define KPATCH_SYSCALL_DEFINE2(name, ...) SYSCALL_DEFINE2(name, __VA_ARGS__)
#define KPATCH_SYSCALL_DEFINE3(name, ...) SYSCALL_DEFINE3(name, __VA_ARGS__)
#define KPATCH_SYSCALL_DEFINE4(name, ...) SYSCALL_DEFINE4(name, __VA_ARGS__)
#define KPATCH_SYSCALL_DEFINE5(name, ...) SYSCALL_DEFINE5(name, __VA_ARGS__)
#define KPATCH_SYSCALL_DEFINE6(name, ...) SYSCALL_DEFINE6(name, __VA_ARGS__)

#endif /* _KLPFORGE_KPATCH_SYSCALL_H_ */
