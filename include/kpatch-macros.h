/* SPDX-License-Identifier: GPL-2.0 */
/*
 * kpatch-macros.h as klpforge provides it: the patch-author macros of kpatch, so patches
 * written for kpatch build unchanged with `klpforge build` (which puts this directory on the
 * include path after the kernel's own). Written from their documented behaviour: each macro
 * leaves a record in the marker section kpatch's tools read, and klpforge reads the same ones
 * (.kpatch.callbacks.*, .kpatch.ignore.functions, .kpatch.ignore.sections, .kpatch.force).
 * Callbacks receive the kernel's struct klp_object, as livepatch callbacks do.
 */
#ifndef _KLPFORGE_KPATCH_MACROS_H_
#define _KLPFORGE_KPATCH_MACROS_H_

#include <linux/compiler.h>
#include <linux/livepatch.h>
#include <linux/printk.h>
#include <linux/types.h>

/* A callback's argument: the kernel's livepatch object (obj->mod is the module, NULL for vmlinux). */
typedef struct klp_object patch_object;

typedef int (*kpatch_pre_patch_call_t)(patch_object *obj);
typedef void (*kpatch_post_patch_call_t)(patch_object *obj);
typedef void (*kpatch_pre_unpatch_call_t)(patch_object *obj);
typedef void (*kpatch_post_unpatch_call_t)(patch_object *obj);

/* One record per callback: the function and (filled in by the tool) its object's name. */
struct kpatch_pre_patch_callback {
	kpatch_pre_patch_call_t fn;
	char *objname;
};
struct kpatch_post_patch_callback {
	kpatch_post_patch_call_t fn;
	char *objname;
};
struct kpatch_pre_unpatch_callback {
	kpatch_pre_unpatch_call_t fn;
	char *objname;
};
struct kpatch_post_unpatch_callback {
	kpatch_post_unpatch_call_t fn;
	char *objname;
};

/* Run before the object is patched; a non-zero return cancels patching it. */
#define KPATCH_PRE_PATCH_CALLBACK(_fn)					\
	static struct kpatch_pre_patch_callback				\
	__kpatch_callbacks_pre_patch __used				\
	__section(".kpatch.callbacks.pre_patch") = {			\
		.fn = (_fn), .objname = NULL }
/* Run after the object is patched. */
#define KPATCH_POST_PATCH_CALLBACK(_fn)					\
	static struct kpatch_post_patch_callback			\
	__kpatch_callbacks_post_patch __used				\
	__section(".kpatch.callbacks.post_patch") = {			\
		.fn = (_fn), .objname = NULL }
/* Run before the object is unpatched. */
#define KPATCH_PRE_UNPATCH_CALLBACK(_fn)				\
	static struct kpatch_pre_unpatch_callback			\
	__kpatch_callbacks_pre_unpatch __used				\
	__section(".kpatch.callbacks.pre_unpatch") = {			\
		.fn = (_fn), .objname = NULL }
/* Run after the object is unpatched. */
#define KPATCH_POST_UNPATCH_CALLBACK(_fn)				\
	static struct kpatch_post_unpatch_callback			\
	__kpatch_callbacks_post_unpatch __used				\
	__section(".kpatch.callbacks.post_unpatch") = {			\
		.fn = (_fn), .objname = NULL }

/*
 * The old load and unload hooks: a load hook runs once the patch is in place, an unload
 * hook before it is removed (the post-patch and pre-unpatch callbacks).
 */
#define KPATCH_LOAD_HOOK(_fn)						\
	static void __kpatch_load_hook_##_fn(patch_object *obj) { (_fn)(); } \
	KPATCH_POST_PATCH_CALLBACK(__kpatch_load_hook_##_fn)
#define KPATCH_UNLOAD_HOOK(_fn)						\
	static void __kpatch_unload_hook_##_fn(patch_object *obj) { (_fn)(); } \
	KPATCH_PRE_UNPATCH_CALLBACK(__kpatch_unload_hook_##_fn)

/* Leave the named section out of the comparison (and out of the patch). */
#define KPATCH_IGNORE_SECTION(_sec)					\
	char *__UNIQUE_ID(kpatch_ignore_section_) __used		\
	__section(".kpatch.ignore.sections") = (_sec)

/* Treat this function as unchanged, whatever its code says. */
#define KPATCH_IGNORE_FUNCTION(_fn)					\
	void *__kpatch_ignore_func_##_fn __used				\
	__section(".kpatch.ignore.functions") = (void *)(_fn)

/* Patch this function even where it would be refused as unsafe. */
#define KPATCH_FORCE_UNSAFE(_fn)					\
	void *__kpatch_force_func_##_fn __used				\
	__section(".kpatch.force") = (void *)(_fn)

/* printk for patches: a plain printk. */
#define KPATCH_PRINTK(_fmt, ...) printk(_fmt, ##__VA_ARGS__)

/*
 * A static call whose key lives in a module cannot be patched in place: call through the
 * key's current target instead.
 */
#define KPATCH_STATIC_CALL(name)					\
	((typeof(STATIC_CALL_TRAMP(name)) *)(STATIC_CALL_KEY(name).func))

#endif /* _KLPFORGE_KPATCH_MACROS_H_ */
