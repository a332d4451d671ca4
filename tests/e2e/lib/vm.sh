# The initramfs, the qemu run and reading its results (sourced by tests/e2e/run).
# shellcheck shell=bash
# shellcheck disable=SC2034 # VM_OK, QEMU_RC, VM_CASES are read by run

# Lines of dmesg that fail the whole run.
DMESG_BAD='WARNING|BUG|Oops|Call Trace|Unpatched return thunk'

# The kernel's name of a module file: basename without .ko, '-' as '_'.
module_name_of() { basename "$1" .ko | tr '-' '_'; }

# The gen_init_cpio lines of a busybox system whose /init is INIT (also used by scripts/demo).
initramfs_base() { # init
    [ -x /bin/busybox ] || die "/bin/busybox not found (package busybox-static)"
    echo "dir /bin 0755 0 0"
    echo "dir /dev 0755 0 0"
    echo "nod /dev/console 0600 0 0 c 5 1"
    echo "dir /proc 0755 0 0"
    echo "dir /sys 0755 0 0"
    echo "dir /tmp 1777 0 0"
    echo "file /bin/busybox /bin/busybox 0755 0 0"
    echo "file /init $1 0755 0 0"
    local a
    for a in $(/bin/busybox --list); do
        # no /bin/busybox -> /bin/busybox link: /init would then fail with -ELOOP
        [ "$a" = busybox ] || echo "slink /bin/$a /bin/busybox 0777 0 0"
    done
}

# Boots KERNEL with INITRD under qemu (TCG) until /init reboots, at most TIMEOUT seconds; the
# console goes to LOG; returns qemu's (or timeout's) status. Extra arguments go to qemu.
qemu_run() { # kernel initrd log timeout mem [qemu args...]
    local kernel=$1 initrd=$2 log=$3 limit=$4 mem=$5
    shift 5
    timeout "$limit" qemu-system-x86_64 -accel tcg "$@" -m "$mem" -nographic -no-reboot \
        -kernel "$kernel" -initrd "$initrd" \
        -append "console=ttyS0 panic=-1 loglevel=4" </dev/null >"$log" 2>&1
}

# Builds $RUN/initramfs.cpio.gz with /init, busybox and one /cases/NN-<label>/ per VM case.
make_initramfs() {
    local stage=$RUN/vm list=$RUN/vm/initramfs.list label i=0 d
    rm -rf "$stage"
    mkdir -p "$stage/cases"
    {
        initramfs_base "$E2E/vm/init"
        echo "dir /cases 0755 0 0"
    } >"$list"
    # Static helper programs the checks run (helpers/*.c: what busybox cannot do), in /bin.
    local src bin
    mkdir -p "$stage/helpers"
    for src in "$E2E"/helpers/*.c; do
        bin=$stage/helpers/$(basename "$src" .c)
        gcc -static -O2 -Wall -o "$bin" "$src" >"$bin.log" 2>&1 ||
            die "building the e2e helper $src failed (log: $bin.log)"
        echo "file /bin/$(basename "$bin") $bin 0755 0 0" >>"$list"
    done
    for label in "${CASE_LABELS[@]}"; do
        [ "${C_STATUS[$label]}" = vm ] || continue
        i=$((i + 1))
        d=$stage/cases/$(printf '%02d' $i)-$label
        mkdir -p "$d"
        printf '%s\n' "$label" >"$d/case"
        printf '%s\n' "${C_NAME[$label]}" >"$d/name"
        printf '%s\n' "${C_EXPECT[$label]}" >"$d/expect"
        if [ "${C_KIND[$label]}" = chain ]; then
            local step n=0 sd
            for step in ${C_STEPS[$label]}; do
                n=$((n + 1))
                sd=$d/step-$(printf '%02d' $n)
                mkdir -p "$sd"
                printf '%s\n' "${C_NAME[$step]}" >"$sd/name"
                printf '%s\n' "${C_EXPECT[$step]}" >"$sd/expect"
                cp "${C_KO[$step]}" "$sd/module.ko"
                [ -n "${C_CHECK[$step]}" ] && printf '%s\n' "${C_CHECK[$step]}" >"$sd/check"
            done
            printf '%s\n' "${C_NAME[${C_STEPS[$label]%% *}]}" >"$d/name"
        else
            cp "${C_KO[$label]}" "$d/module.ko"
            # Modules klpforge build did not make: signed here with the e2e kernel's key.
            [ -z "$STOCK" ] && [ "${C_KIND[$label]}" != patch ] && sign_for_kernel "$d/module.ko"
        fi
        [ "${C_TARGET_FAILS[$label]}" = yes ] && echo yes >"$d/target_fails"
        if [ -n "${C_TARGET[$label]}" ] && [ -n "$STOCK" ]; then
            stock_target_files "${C_TARGET[$label]}" "$d"
            [ "${C_TARGET_LATE[$label]}" = yes ] && echo yes >"$d/target_late"
        elif [ -n "${C_TARGET[$label]}" ]; then
            local t n
            : >"$d/targets"
            for t in ${C_TARGET[$label]}; do
                [ -f "$KBUILD/$t" ] || die "E2E-TARGET $t is not built"
                n=$(module_name_of "$t")
                cp "$KBUILD/$t" "$d/target-$n.ko"
                sign_for_kernel "$d/target-$n.ko"
                printf '%s\n' "$n" >>"$d/targets"
            done
            [ "${C_TARGET_LATE[$label]}" = yes ] && echo yes >"$d/target_late"
        fi
        [ -n "${C_CHECK[$label]}" ] && printf '%s\n' "${C_CHECK[$label]}" >"$d/check"
        [ -n "${C_DMESG[$label]}" ] && printf '%s' "${C_DMESG[$label]}" >"$d/dmesg"
        local rel=${d#"$stage"} f
        echo "dir $rel 0755 0 0" >>"$list"
        for f in "$d"/* "$d"/*/*; do
            [ -e "$f" ] || continue
            if [ -d "$f" ]; then echo "dir $rel/${f#"$d"/} 0755 0 0"; else echo "file $rel/${f#"$d"/} $f 0644 0 0"; fi
        done >>"$list"
    done
    "${GEN_INIT_CPIO:-$KBUILD/usr/gen_init_cpio}" "$list" | gzip -6 >"$RUN/initramfs.cpio.gz" ||
        die "gen_init_cpio failed (list: $list)"
    VM_CASES=$i
}

# Boots the kernel with the initramfs; the console goes to $RUN/qemu.log.
boot_vm() {
    local t0 rc=0
    t0=$(now)
    say "qemu: booting $VM_CASES case(s) (TCG, timeout ${QEMU_TIMEOUT}s; console log $RUN/qemu.log)"
    # A stock kernel is larger and probes more: more memory, a CPU with its features.
    local mem=512M cpu=()
    [ -n "$STOCK" ] && mem=2G cpu=(-cpu max)
    qemu_run "${BZIMAGE:-$KBUILD/arch/x86/boot/bzImage}" "$RUN/initramfs.cpio.gz" "$RUN/qemu.log" \
        "$QEMU_TIMEOUT" "$mem" "${cpu[@]}" -smp "$VM_CPUS" || rc=$?
    local dt
    dt=$(elapsed "$t0" "$(now)")
    timing "qemu ($VM_CASES case(s))" "$dt"
    tr -d '\r' <"$RUN/qemu.log" >"$RUN/console.log"
    # (the first line also carries the firmware's terminal escapes: take the marker from anywhere)
    grep -ao 'E2E: .*' "$RUN/console.log" | grep -av '^E2E: DMESG ' >"$RUN/markers.log" || true
    grep -ao 'KMSG: .*' "$RUN/console.log" | sed 's/^KMSG: //' >"$RUN/dmesg.txt" || true
    QEMU_RC=$rc
    if [ $rc = 124 ]; then warn "qemu timed out after ${QEMU_TIMEOUT}s"
    elif [ $rc != 0 ]; then warn "qemu exited with status $rc"; fi
    say "qemu: finished in $dt s"
}

# Prints the dmesg lines (numbered) that match DMESG_BAD, each prefixed with the case whose
# "klpforge-e2e: begin/end" markers enclose it ("-" outside every case).
bad_dmesg_lines() {
    awk -v bad="$DMESG_BAD" '
        /klpforge-e2e: begin / { c = $NF; next }
        /klpforge-e2e: end /   { c = ""; next }
        $0 ~ bad { printf "%s\t%d: %s\n", (c == "" ? "-" : c), NR, $0 }
    ' "$RUN/dmesg.txt"
}

# Sets each VM case's status from the markers and the dmesg; checks dmesg for the whole run.
read_vm_results() {
    local label bad
    bad=$(bad_dmesg_lines)
    for label in "${CASE_LABELS[@]}"; do
        [ "${C_STATUS[$label]}" = vm ] || continue
        local kbad
        kbad=$(printf '%s\n' "$bad" | awk -F'\t' -v c="$label" '$1 == c { print $2 }' | head -n3 | tr '\n' ';')
        if [ -n "$kbad" ]; then
            case_fail "$label" "the kernel logged, during this case: $kbad (dmesg: $RUN/dmesg.txt)"
        elif grep -qxF "E2E: CASE $label PASS" "$RUN/markers.log"; then
            case_pass "$label" "$(grep -cF "E2E: STEP $label " "$RUN/markers.log") VM steps ok"
        elif grep -qxF "E2E: CASE $label FAIL" "$RUN/markers.log"; then
            case_fail "$label" "in the VM: $(grep -F "E2E: STEP $label " "$RUN/markers.log" | grep ' FAIL' | sed "s/^E2E: STEP $label //" | tr '\n' ';')"
        elif grep -qF "E2E: CASE $label BEGIN" "$RUN/markers.log"; then
            case_fail "$label" "the VM stopped during this case (qemu status $QEMU_RC; see $RUN/console.log)"
        else
            case_fail "$label" "the VM never reached this case (qemu status $QEMU_RC; see $RUN/console.log)"
        fi
    done
    VM_OK=1
    [ "$QEMU_RC" = 0 ] || VM_OK=0 # warned about in boot_vm
    if ! grep -qx 'E2E: DONE.*' "$RUN/markers.log"; then
        warn "the VM did not finish (no 'E2E: DONE'); console: $RUN/console.log"
        tail -n 25 "$RUN/console.log" | sed 's/^/    | /' >&2
        VM_OK=0
    fi
    if [ ! -s "$RUN/dmesg.txt" ]; then
        warn "no dmesg dump from the VM"
        VM_OK=0
    elif [ -n "$bad" ]; then
        warn "dmesg has WARNING/BUG/Oops/Call Trace lines (full dmesg: $RUN/dmesg.txt):"
        grep -En -B2 -A12 "$DMESG_BAD" "$RUN/dmesg.txt" | head -n 60 | sed 's/^/    | /' >&2
        VM_OK=0
    fi
}
