# Cross-architecture end-to-end run (sourced by tests/e2e/run --arch ppc64le|s390x).
# shellcheck shell=bash
#
# A tiny Linux 6.12 for ppc64le (qemu pseries) or s390x (qemu s390-ccw-virtio), cross-compiled
# with Debian's cross gcc and function sections, cached in
#   $KLPFORGE_E2E_CACHE/xarch-<arch>-<key>/linux-6.12/build
# (<key>: the linux-source version, the config fragments of xarch/, the linker-script backport,
# the cross gcc's version). Every case of xarch-cases/ is built with `klpforge build` (cross
# ARCH/CROSS_COMPILE come from the kernel's configuration); one qemu (TCG) run of the kernel
# with a static C /init (xarch/init.c: no busybox for these targets) loads each module, checks
# /proc/cmdline, disables, unloads, and prints the kernel log's lines of the run.
#
# Case headers (before the diff):
#   E2E-EXPECT: patched | no-change | refused
#   E2E-CMDLINE: <substring /proc/cmdline must show while patched>      (patched)
#   E2E-READ: <file>|dmesg      look for the E2E-CMDLINE substring in this file instead (gone
#                               once disabled; /proc/cmdline must read exactly as before), or
#                               in kernel log lines appearing within 2.5 s (none once disabled)
#   E2E-TARGET: <module.ko>     (path in the kernel build) a module the patch targets: loaded
#                               before the livepatch, unloaded at the end
#   E2E-TARGET-LATE: yes        load the target after the livepatch (late module patching)
#   E2E-DMESG: <extended regex some dmesg line must match>              (patched; repeatable)
#   E2E-TOOL-ERROR: <extended regex the refusal must match>              (refused)
#   E2E-ARCH: <arch> ...        only for these architectures (default: all)

xarch_setup() { # arch
    XARCH=$1
    case $XARCH in
    ppc64le)
        XA=powerpc XC=powerpc64le-linux-gnu-
        XPKGS=(gcc-powerpc64le-linux-gnu libc6-dev-ppc64el-cross qemu-system-ppc)
        ;;
    s390x)
        XA=s390 XC=s390x-linux-gnu-
        XPKGS=(gcc-s390x-linux-gnu libc6-dev-s390x-cross qemu-system-misc)
        ;;
    *) die "--arch: ppc64le or s390x, not $XARCH" ;;
    esac
    PACKAGES+=("${XPKGS[@]}")
}

xarch_inputs() {
    printf 'linux-source-6.12 %s\n' "$(dpkg-query -W -f='${Version}' linux-source-6.12 2>/dev/null || echo unknown)"
    printf 'arch %s\n' "$XARCH"
    cat "$E2E/xarch/common.config" "$E2E/xarch/$XARCH.config" | sha256sum | cut -c1-64
    sha256sum <"$E2E/kernel/fsections-lds-backport.patch" | cut -c1-64
    "${XC}gcc" --version | head -n1
    printf 'recipe xarch-1\n'
}

# Sets KDIR, KSRC, KBUILD, XIMAGE; builds the kernel and /init when needed.
ensure_xarch_kernel() {
    local cache=${KLPFORGE_E2E_CACHE:-${HOME:-/root}/.cache/klpforge-e2e} inputs key t0
    inputs=$(xarch_inputs)
    key=$(printf '%s\n' "$inputs" | sha256sum | cut -c1-16)
    KDIR=$cache/xarch-$XARCH-$key
    KSRC=$KDIR/linux-6.12
    KBUILD=$KSRC/build
    case $XARCH in
    ppc64le) XIMAGE=$KBUILD/vmlinux ;;
    s390x) XIMAGE=$KBUILD/arch/s390/boot/bzImage ;;
    esac
    mkdir -p "$KDIR"
    exec 9>"$KDIR.lock"
    flock -w 7200 9 || die "timed out waiting for $KDIR.lock"
    if [ -e "$KDIR/complete" ]; then
        say "kernel ($XARCH): cached in $KDIR (warm)"
        timing "kernel build ($XARCH, warm, cached)" 0.0
        return 0
    fi
    say "kernel ($XARCH): building in $KDIR (cold; a few minutes; log $KDIR/build.log)"
    t0=$(now)
    printf '%s\n' "$inputs" >"$KDIR/inputs"
    unpack_source
    local mk=(make -C "$KSRC" O=build ARCH="$XA" CROSS_COMPILE="$XC")
    if [ ! -e "$KBUILD/.config" ]; then
        {
            "${mk[@]}" tinyconfig &&
                "$KSRC/scripts/kconfig/merge_config.sh" -m -O "$KBUILD" "$KBUILD/.config" \
                    "$E2E/xarch/common.config" "$E2E/xarch/$XARCH.config" &&
                "${mk[@]}" olddefconfig
        } >"$KDIR/config.log" 2>&1 || { rm -f "$KBUILD/.config"; die "kernel configuration failed (log: $KDIR/config.log)"; }
        local l
        grep -hv '^#' "$E2E/xarch/common.config" "$E2E/xarch/$XARCH.config" | grep . | while read -r l; do
            grep -qx -- "$l" "$KBUILD/.config" || { rm -f "$KBUILD/.config"; die "config option lost by olddefconfig: $l"; }
        done
    fi
    "${mk[@]}" -j"$JOBS" KCFLAGS="$KCFLAGS_FS" >"$KDIR/build.log" 2>&1 ||
        { tail -40 "$KDIR/build.log" >&2; die "kernel build failed (log: $KDIR/build.log)"; }
    for f in "$XIMAGE" "$KBUILD/vmlinux" "$KBUILD/Module.symvers" "$KBUILD/usr/gen_init_cpio"; do
        [ -e "$f" ] || die "kernel build did not produce $f"
    done
    touch "$KDIR/complete"
    timing "kernel build ($XARCH, cold)" "$(elapsed "$t0" "$(now)")"
}

# Reads a case's headers into the X_* variables.
xarch_headers() { # file
    X_EXPECT='' X_CMDLINE='' X_READ='' X_TARGET='' X_LATE='' X_DMESG=() X_TOOLERR='' X_ARCHES=''
    local line key val
    while IFS= read -r line || [ -n "$line" ]; do
        [[ $line =~ ^(diff\ |---\ |\+\+\+\ ) ]] && break
        [[ $line =~ ^E2E-([A-Z-]+):[[:space:]]*(.*)$ ]] || continue
        key=${BASH_REMATCH[1]} val=${BASH_REMATCH[2]}
        case $key in
        EXPECT) X_EXPECT=$val ;;
        CMDLINE) X_CMDLINE=$val ;;
        READ) X_READ=$val ;;
        TARGET) X_TARGET=$val ;;
        TARGET-LATE) X_LATE=$val ;;
        DMESG) X_DMESG+=("$val") ;;
        TOOL-ERROR) X_TOOLERR=$val ;;
        ARCH) X_ARCHES=$val ;;
        *) die "$1: unknown header E2E-$key" ;;
        esac
    done <"$1"
    case $X_EXPECT in
    patched) [ -n "$X_CMDLINE" ] || die "$1: E2E-EXPECT: patched needs E2E-CMDLINE" ;;
    no-change | refused) ;;
    *) die "$1: E2E-EXPECT must be patched, no-change or refused" ;;
    esac
}

# Builds every case, boots once, checks; sets the case results like the main run.
# shellcheck disable=SC2034 # VM_OK is read by run
run_xarch() {
    local f label dir ko rc t0 vm=() targets=() conf=$RUN/vm/e2e.conf
    mkdir -p "$RUN/vm"
    : >"$conf"
    declare -gA X_WANT_DMESG=()
    for f in "$E2E"/xarch-cases/*.patch; do
        label=$(basename "$f" .patch)
        [ -n "$ONLY" ] && ! [[ $label =~ $ONLY ]] && continue
        xarch_headers "$f"
        if [ -n "$X_ARCHES" ] && ! [[ " $X_ARCHES " == *" $XARCH "* ]]; then continue; fi
        CASE_LABELS+=("$label")
        dir=$RUN/cases/$label
        mkdir -p "$dir"
        ko=$dir/klp_${label//-/_}.ko
        t0=$(now)
        rc=0
        "$KLPFORGE" build --src "$KSRC" --build "$KBUILD" -o "$ko" --name "klp_${label//-/_}" \
            -j "$JOBS" --work "$dir/work" "$f" >"$dir/build.log" 2>&1 || rc=$?
        timing "module build: $label" "$(elapsed "$t0" "$(now)")"
        case $X_EXPECT in
        no-change)
            if [ $rc = 3 ]; then case_pass "$label" "nothing to patch (exit 3)"
            else case_fail "$label" "expected exit 3; exit $rc: $(tail -n2 "$dir/build.log" | tr '\n' ' ')"; fi
            ;;
        refused)
            if [ $rc = 4 ] && { [ -z "$X_TOOLERR" ] || grep -Eq -- "$X_TOOLERR" "$dir/build.log"; }; then
                case_pass "$label" "refused: $(grep -m1 'refused:' "$dir/build.log" | cut -c1-160)"
            else
                case_fail "$label" "expected a refusal (exit 4) matching /$X_TOOLERR/; exit $rc: $(tail -n2 "$dir/build.log" | tr '\n' ' ')"
            fi
            ;;
        patched)
            if [ $rc != 0 ] || [ ! -s "$ko" ]; then
                case_fail "$label" "klpforge build failed (exit $rc): $(grep -E 'error|refused' "$dir/build.log" | head -n2 | tr '\n' ' ')"
            else
                if [ -n "$X_TARGET" ]; then
                    [ -e "$KBUILD/$X_TARGET" ] || die "$f: E2E-TARGET $X_TARGET is not in $KBUILD"
                    targets+=("$KBUILD/$X_TARGET")
                fi
                printf '%s %s ok %s%s%s%s\n' "$(basename "$ko")" "klp_${label//-/_}" \
                    "${X_READ:+@$X_READ }" "${X_TARGET:++$(basename "$X_TARGET") }" \
                    "${X_LATE:++late }" "$X_CMDLINE" >>"$conf"
                vm+=("$ko")
                C_STATUS[$label]=vm
                X_WANT_DMESG[$label]=$(printf '%s\n' "${X_DMESG[@]}")
            fi
            ;;
        esac
    done
    [ ${#vm[@]} -gt 0 ] || return 0
    # The /init is built for every run (a second): it is not part of the cached kernel.
    "${XC}gcc" -static -O2 -Wall -o "$RUN/vm/init" "$E2E/xarch/init.c" >"$RUN/vm/init.log" 2>&1 ||
        die "building the static /init failed (log: $RUN/vm/init.log)"
    local list=$RUN/vm/initramfs.list
    {
        echo "dir /dev 0755 0 0"
        echo "nod /dev/console 0600 0 0 c 5 1"
        echo "dir /proc 0755 0 0"
        echo "dir /sys 0755 0 0"
        echo "dir /tmp 1777 0 0"
        echo "file /init $RUN/vm/init 0755 0 0"
        echo "file /e2e.conf $conf 0644 0 0"
        for ko in "${vm[@]}"; do echo "file /$(basename "$ko") $ko 0644 0 0"; done
        printf '%s\n' "${targets[@]}" | sort -u | while read -r ko; do
            [ -n "$ko" ] && echo "file /$(basename "$ko") $ko 0644 0 0"
        done
    } >"$list"
    "$KBUILD/usr/gen_init_cpio" "$list" | gzip -6 >"$RUN/initramfs.cpio.gz" || die "gen_init_cpio failed"
    local qemu
    case $XARCH in
    ppc64le)
        # TCG lacks the spectre capabilities pseries enables by default; VOF boots in a second.
        local machine=pseries,cap-ccf-assist=off,cap-cfpc=broken,cap-sbbc=broken,cap-ibs=broken,x-vof=on
        qemu=(qemu-system-ppc64 -M "$machine" -cpu power9 -vga none -append "console=hvc0 panic=-1")
        ;;
    s390x) qemu=(qemu-system-s390x -M s390-ccw-virtio -append "console=ttysclp0 panic=-1") ;;
    esac
    t0=$(now)
    rc=0
    timeout "$QEMU_TIMEOUT" "${qemu[@]}" -accel tcg -smp 1 -m 1G -nographic -no-reboot \
        -kernel "$XIMAGE" -initrd "$RUN/initramfs.cpio.gz" </dev/null >"$RUN/qemu.log" 2>&1 || rc=$?
    timing "qemu ($XARCH, ${#vm[@]} module(s))" "$(elapsed "$t0" "$(now)")"
    tr -d '\r' <"$RUN/qemu.log" >"$RUN/console.log"
    grep -a '^E2E:' "$RUN/console.log" >"$RUN/markers.log" || true
    # The guest runs the modules in order; a test's lines run from its TEST line to the next.
    local name why
    for label in "${CASE_LABELS[@]}"; do
        [ "${C_STATUS[$label]}" = vm ] || continue
        name=klp_${label//-/_}
        awk -v n="$name" '/^E2E: TEST /{on = index($0, "patch=" n " ") > 0} on' "$RUN/markers.log" >"$RUN/cases/$label/markers.log"
        why=''
        grep -q '^E2E: PATCHED yes' "$RUN/cases/$label/markers.log" || why+="not patched; "
        grep -q '^E2E: REVERTED ok' "$RUN/cases/$label/markers.log" || why+="not reverted; "
        grep -q '^E2E: RMMOD ok' "$RUN/cases/$label/markers.log" || why+="not unloaded; "
        grep -q '^E2E: FAIL' "$RUN/cases/$label/markers.log" && why+="$(grep -m1 '^E2E: FAIL' "$RUN/cases/$label/markers.log"); "
        local re
        while IFS= read -r re; do
            [ -n "$re" ] || continue
            grep -a '^E2E: dmesg:' "$RUN/markers.log" | grep -Eq -- "$re" || why+="no dmesg line matches /$re/; "
        done <<<"${X_WANT_DMESG[$label]}"
        if [ -z "$why" ]; then case_pass "$label" "patched, checked, reverted, unloaded on $XARCH"
        else case_fail "$label" "in the VM ($XARCH): $why"; fi
    done
    if [ $rc != 0 ] || ! grep -q '^E2E: RESULT PASS' "$RUN/markers.log"; then
        VM_OK=0
        warn "the $XARCH run did not end in RESULT PASS (qemu exit $rc; console $RUN/console.log)"
        grep -a '^E2E: dmesg-bad:' "$RUN/markers.log" | head -5 >&2 || true
    fi
}
