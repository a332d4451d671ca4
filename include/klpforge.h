/* SPDX-License-Identifier: GPL-2.0 */
/*
 * klpforge.h: annotations for hand-written (source-based) livepatch modules that
 * `klpforge convert` turns into klp relocations, and system-state declarations for patches
 * (see KLPFORGE_STATE below). `klpforge build` puts this header on the include path.
 *
 * A livepatch module may refer to kernel symbols that are not exported: declare them
 * `extern` and use them as usual; build the module with KBUILD_MODPOST_WARN=1 and run
 *
 *     klpforge convert mod.ko --vmlinux vmlinux [--symvers Module.symvers]
 *
 * Each reference becomes a klp relocation the livepatch core resolves when it patches.
 * When a name is unique in the target, nothing else is needed. When several symbols share
 * the name (static functions or variables of different files), say which one, counting
 * from 1 in kallsyms order (ascending address in vmlinux, symbol-table order in a module);
 * `klpforge convert` lists the candidates when an annotation is missing:
 *
 *     extern int helper(int);              // static in the kernel, three of that name
 *     KLPFORGE_SYMPOS(helper, 2);
 *
 * For a symbol of a module rather than vmlinux:
 *
 *     KLPFORGE_MODULE_SYMPOS(xfs, xfs_helper, 0);
 *
 * The annotations live in the non-allocated section .klpforge.sympos, which convert reads
 * and removes; they add nothing to the loaded module.
 */
#ifndef KLPFORGE_H
#define KLPFORGE_H

#define __KLPFORGE_CAT2(a, b) a##b
#define __KLPFORGE_CAT(a, b) __KLPFORGE_CAT2(a, b)
#define __KLPFORGE_STR2(x) #x
#define __KLPFORGE_STR(x) __KLPFORGE_STR2(x)

#define KLPFORGE_MODULE_SYMPOS(objname, sym, pos)                                     \
	static const char __KLPFORGE_CAT(__klpforge_sympos_, __COUNTER__)[]            \
		__attribute__((used, section(".klpforge.sympos"), aligned(1))) =      \
			#objname ":" #sym "," __KLPFORGE_STR(pos)

#define KLPFORGE_SYMPOS(sym, pos) KLPFORGE_MODULE_SYMPOS(vmlinux, sym, pos)

/*
 * System states (the kernel's struct klp_state), for patches `klpforge build` makes. A patch
 * that changes the system in a way later patches must know about (a shadow variable it
 * attaches, a setting it changes) declares it in any patched file:
 *
 *     #include "klpforge.h"
 *     KLPFORGE_STATE(MY_STATE_ID, 1);      // id: non-zero; version: from 1
 *
 * and its code (callbacks, usually) reaches its own struct klp_state with klpforge_state(id)
 * (state->data is the patch's to use) and the one of the patch it replaces with the kernel's
 * klp_get_prev_state(id), to take the state over. The kernel refuses an atomic-replace patch
 * that does not declare every state of the patches it would replace (or declares a lower
 * version). The declarations live in .klp_forge.states, which the module's init code reads;
 * klpforge_state() is defined by that init code.
 */
struct klp_state;

struct klpforge_state_decl {
	unsigned long id;
	unsigned int version;
	unsigned int reserved;
};

#define KLPFORGE_STATE(_id, _version)                                                   \
	static const struct klpforge_state_decl __KLPFORGE_CAT(__klpforge_state_, __COUNTER__) \
		__attribute__((used, section(".klp_forge.states"), aligned(8))) = {     \
			(_id), (_version), 0                                           \
		}

struct klp_state *klpforge_state(unsigned long id);

#endif /* KLPFORGE_H */
