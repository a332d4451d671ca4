# Packages and the cached e2e kernel (sourced by tests/e2e/run).
# shellcheck shell=bash
#
# Cache layout:  $KLPFORGE_E2E_CACHE (default ~/.cache/klpforge-e2e)/
#   <key>.lock                 flock held by a run for its whole duration
#   <key>/inputs               what the key was computed from (human-readable)
#   <key>/complete             written once the full build succeeded
#   <key>/build.log            the kernel build log
#   <key>/linux-6.12/          the source tree (fsections linker-script backport applied)
#   <key>/linux-6.12/build/    the build (O=build): vmlinux, Module.symvers, bzImage, samples
# key = first 16 hex digits of sha256 over: the linux-source package version and tarball size,
# the config fragment, the linker-script backport, `gcc --version`, KCFLAGS and RECIPE_REV.

PACKAGES=(linux-source-6.12 qemu-system-x86 busybox-static flex bison bc libelf-dev libssl-dev
    cpio kmod dwarves xz-utils zstd build-essential patch)
TARBALL=/usr/src/linux-source-6.12.tar.xz
KCFLAGS_FS="-ffunction-sections -fdata-sections"
RECIPE_REV=fsections-1 # bump when the way the kernel is built changes

ensure_packages() {
    local missing=() p
    for p in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$' ||
            missing+=("$p")
    done
    [ ${#missing[@]} = 0 ] && return 0
    command -v apt-get >/dev/null || die "missing packages (${missing[*]}) and no apt-get: install them by hand"
    say "installing ${missing[*]}"
    local t0
    t0=$(now)
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q >"$RUN/apt.log" 2>&1 ||
        { tail -20 "$RUN/apt.log" >&2; die "apt-get update failed (log: $RUN/apt.log)"; }
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        "${missing[@]}" >>"$RUN/apt.log" 2>&1 ||
        { tail -20 "$RUN/apt.log" >&2; die "apt-get install failed (log: $RUN/apt.log)"; }
    timing "apt-get install" "$(elapsed "$t0" "$(now)")"
}

kernel_inputs() {
    printf 'linux-source-6.12 %s\n' "$(dpkg-query -W -f='${Version}' linux-source-6.12 2>/dev/null || echo unknown)"
    printf 'tarball-size %s\n' "$(stat -c %s "$TARBALL")"
    printf 'config %s\n' "$(sha256sum <"$E2E/kernel/livepatch-min.config" | cut -c1-64)"
    printf 'lds-backport %s\n' "$(sha256sum <"$E2E/kernel/fsections-lds-backport.patch" | cut -c1-64)"
    printf 'gcc %s\n' "$(gcc --version | head -n1)"
    printf 'kcflags %s\n' "$KCFLAGS_FS"
    printf 'recipe %s\n' "$RECIPE_REV"
}

# Sets KDIR (cache entry), KSRC (source tree), KBUILD (build directory); builds when needed.
ensure_kernel() {
    [ -r "$TARBALL" ] || die "$TARBALL not found (package linux-source-6.12)"
    local cache=${KLPFORGE_E2E_CACHE:-${HOME:-/root}/.cache/klpforge-e2e} inputs key
    inputs=$(kernel_inputs)
    key=$(printf '%s\n' "$inputs" | sha256sum | cut -c1-16)
    KDIR=$cache/$key
    KSRC=$KDIR/linux-6.12
    KBUILD=$KSRC/build
    mkdir -p "$cache"
    # One run at a time per kernel: cases patch the cached tree.
    exec 9>"$KDIR.lock"
    if ! flock -n 9; then
        say "waiting for another e2e run to release $KDIR.lock"
        flock -w 7200 9 || die "timed out waiting for $KDIR.lock"
    fi
    if [ -e "$KDIR/complete" ] && [ -e "$KBUILD/vmlinux" ] && [ -e "$KBUILD/arch/x86/boot/bzImage" ]; then
        say "kernel: cached in $KDIR (warm)"
        timing "kernel build (warm, cached)" 0.0
        return 0
    fi
    say "kernel: building in $KDIR (cold; about 5 minutes with -j$JOBS; log $KDIR/build.log)"
    local t0
    t0=$(now)
    mkdir -p "$KDIR"
    printf '%s\n' "$inputs" >"$KDIR/inputs"
    unpack_source
    if [ ! -e "$KBUILD/.config" ]; then
        (
            cd "$KSRC"
            make O=build tinyconfig
            ./scripts/kconfig/merge_config.sh -m -O build build/.config "$E2E/kernel/livepatch-min.config"
            make O=build olddefconfig
        ) >"$KDIR/config.log" 2>&1 || { tail -30 "$KDIR/config.log" >&2; rm -f "$KBUILD/.config"; die "kernel configuration failed"; }
        local l
        while read -r l; do
            case $l in '#'* | '') continue ;; esac
            grep -qx -- "$l" "$KBUILD/.config" || { rm -f "$KBUILD/.config"; die "config option lost by olddefconfig: $l"; }
        done <"$E2E/kernel/livepatch-min.config"
        grep -Eq '^CONFIG_DYNAMIC_FTRACE_WITH_(REGS|ARGS)=y' "$KBUILD/.config" ||
            die "neither CONFIG_DYNAMIC_FTRACE_WITH_REGS nor _WITH_ARGS survived olddefconfig"
    fi
    (cd "$KSRC" && make O=build -j"$JOBS" KCFLAGS="$KCFLAGS_FS") >"$KDIR/build.log" 2>&1 ||
        { tail -40 "$KDIR/build.log" >&2; die "kernel build failed (log: $KDIR/build.log)"; }
    for f in vmlinux Module.symvers arch/x86/boot/bzImage usr/gen_init_cpio samples/livepatch/livepatch-sample.ko \
        certs/signing_key.pem certs/signing_key.x509 scripts/sign-file; do
        [ -e "$KBUILD/$f" ] || die "kernel build did not produce $f"
    done
    touch "$KDIR/complete"
    local dt
    dt=$(elapsed "$t0" "$(now)")
    say "kernel: built in $dt s"
    timing "kernel build (cold)" "$dt"
}

# Unpack linux-source-6.12 into $KSRC (below $KDIR) unless it is there, and apply the
# linker-script backport that lets function-sections objects link.
unpack_source() {
    if [ ! -e "$KSRC/Makefile" ]; then
        rm -rf "$KDIR/unpack" "$KSRC"
        mkdir "$KDIR/unpack"
        tar -C "$KDIR/unpack" -xf "$TARBALL" || die "unpacking $TARBALL failed"
        mv "$KDIR/unpack/linux-source-6.12" "$KSRC"
        rmdir "$KDIR/unpack"
    fi
    if ! grep -q 'e2e backport' "$KSRC/include/asm-generic/vmlinux.lds.h"; then
        patch -d "$KSRC" -p0 --forward --batch <"$E2E/kernel/fsections-lds-backport.patch" >"$KDIR/lds-patch.log" 2>&1 ||
            { cat "$KDIR/lds-patch.log" >&2; die "the linker-script backport does not apply"; }
    fi
}
