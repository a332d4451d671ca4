# Case discovery, headers and per-case module builds (sourced by tests/e2e/run).
# shellcheck shell=bash
# shellcheck disable=SC2034 # the C_* arrays are read by vm.sh and run
#
# A case is one of
#   patch   a *.patch against the pristine linux-source-6.12 tree (tests/e2e/cases/, PATCH_DIRs)
#   module  a directory tests/e2e/modules/<case>/ with a hand-written livepatch module
#           (<case>.c + Kbuild + case.conf) built with kbuild and converted by `klpforge convert`
#   sample  the kernel's own samples/livepatch/livepatch-sample.ko (checks the harness and kernel)
#   chain   a directory (of cases/ or stock-cases/) of patches NN-*.patch, one livepatch each,
#           loaded in order without unloading in between (cumulative patches, atomic replace,
#           klp_state): each step's E2E-EXPECT is patched (its check must then pass) or
#           load-fails; at the end every livepatch still on is disabled, all are unloaded (the
#           last first), and the first step's check must fail again.
#
# Header lines (in a patch: before the diff; in a module: case.conf, or comment lines of the .c):
#   E2E-EXPECT: patched | no-change | refused | load-fails | tool-rejects | apply-fails | interrupted
#   E2E-CHECK: <shell command run in the VM: fails unpatched, succeeds patched>
#   E2E-DMESG: <extended regex dmesg must match after the case; repeatable>
#   E2E-TOOL-ERROR: <extended regex the refusing tool's output must match (refused, tool-rejects)>
#   E2E-BUILD-WARNING: <extended regex some `klpforge build` warning must match (patch cases)>
#   E2E-SIGN: yes | no             (patch cases) yes: modinfo must name the signer: on a stock
#                                  kernel a throwaway key signs the module (--sign-key/--sign-cert),
#                                  on the e2e kernel (MODULE_SIG_FORCE) its own build key signs
#                                  every patch case anyway; no: build unsigned (the e2e kernel
#                                  must then refuse it)
#   E2E-CONVERT: yes | no          (module cases: run `klpforge convert`; default yes)
#   E2E-TOOL: convert | post-link  (module cases: which klpforge command finishes the .ko)
#   E2E-MODE: tu | vmlinux | prepared   (patch cases: klpforge build --mode; default tu;
#                                  prepared: klpforge prepare of the kernel's source, config,
#                                  exports and vmlinux, then klpforge build --kernel, which
#                                  compiles in the prepared tree, never in the built one)
#   E2E-TARGET: <path of a .ko in the build tree>  the patched module, loaded in the VM before
#                                  the livepatch (or after it with E2E-TARGET-LATE: yes; with
#                                  E2E-TARGET-FAILS: yes that late load must fail, as when a
#                                  pre-patch callback of the module's object refuses)

CASE_LABELS=()
declare -A C_STEPS
declare -A C_KIND C_SRC C_NAME C_EXPECT C_CHECK C_DMESG C_TOOLERR C_CONVERT C_TOOL C_KO C_STATUS C_WHY C_MODE C_TARGET C_TARGET_LATE C_TARGET_FAILS C_BUILDWARN C_SIGN

add_case() { # kind src label
    local kind=$1 src=$2 label=$3
    label=${label//[[:space:]]/_}
    if [ -n "${C_KIND[$label]+x}" ]; then
        label="$(basename "$(dirname "$src")")-$label"
        label=${label//[[:space:]]/_}
        [ -n "${C_KIND[$label]+x}" ] && die "two cases are both named $label"
    fi
    if [ -n "$ONLY" ] && ! [[ $label =~ $ONLY ]]; then return 0; fi
    CASE_LABELS+=("$label")
    init_case "$label" "$kind" "$src"
}

# The C_* entries of a case (or of a chain's step) with their defaults.
init_case() { # label kind src
    local label=$1
    C_KIND[$label]=$2
    C_SRC[$label]=$3
    C_NAME[$label]=$(module_name_for "$label")
    C_EXPECT[$label]=
    C_CHECK[$label]=
    C_DMESG[$label]=
    C_TOOLERR[$label]=
    C_CONVERT[$label]=yes
    C_TOOL[$label]=convert
    C_MODE[$label]=tu
    C_TARGET[$label]=
    C_TARGET_LATE[$label]=
    C_TARGET_FAILS[$label]=
    C_BUILDWARN[$label]=
    C_SIGN[$label]=
    C_KO[$label]=
    C_STATUS[$label]=pending
    C_WHY[$label]=
}

# Reads the E2E-* header lines of a case into the C_* arrays.
parse_header() { # label file is_patch
    local label=$1 file=$2 is_patch=$3 line key val
    while IFS= read -r line || [ -n "$line" ]; do
        if [ "$is_patch" = 1 ] && [[ $line =~ ^(diff\ |---\ |\+\+\+\ |Index:\ ) ]]; then break; fi
        [[ $line =~ ^[[:space:]/*#]*E2E-([A-Z-]+):[[:space:]]*(.*)$ ]] || continue
        key=${BASH_REMATCH[1]}
        val=${BASH_REMATCH[2]}
        val=${val%$'\r'}
        case $key in
        EXPECT) C_EXPECT[$label]=$val ;;
        CHECK) C_CHECK[$label]=$val ;;
        DMESG) C_DMESG[$label]+="$val"$'\n' ;;
        TOOL-ERROR) C_TOOLERR[$label]=$val ;;
        CONVERT) C_CONVERT[$label]=$val ;;
        TOOL) C_TOOL[$label]=$val ;;
        MODE) C_MODE[$label]=$val ;;
        TARGET) C_TARGET[$label]=$val ;;
        TARGET-LATE) C_TARGET_LATE[$label]=$val ;;
        TARGET-FAILS) C_TARGET_FAILS[$label]=$val ;;
        BUILD-WARNING) C_BUILDWARN[$label]=$val ;;
        SIGN) C_SIGN[$label]=$val ;;
        *) die "$file: unknown header E2E-$key" ;;
        esac
    done <"$file"
    # A patch without E2E-EXPECT: it must build (or end in "nothing to patch" or a refusal
    # whose reason is printed) and, when built, load, transition, disable and unload cleanly.
    [ -z "${C_EXPECT[$label]}" ] && [ "$is_patch" = 1 ] && C_EXPECT[$label]=auto
    case ${C_EXPECT[$label]} in
    patched | no-change | refused | load-fails | tool-rejects | apply-fails | interrupted | auto) ;;
    '') die "$file: no E2E-EXPECT header" ;;
    *) die "$file: unknown E2E-EXPECT: ${C_EXPECT[$label]}" ;;
    esac
    [ "${C_EXPECT[$label]}" = patched ] && [ -z "${C_CHECK[$label]}" ] && die "$file: E2E-EXPECT: patched needs an E2E-CHECK"
    case ${C_CONVERT[$label]} in yes | no) ;; *) die "$file: E2E-CONVERT must be yes or no" ;; esac
    case ${C_TOOL[$label]} in convert | post-link) ;; *) die "$file: E2E-TOOL must be convert or post-link" ;; esac
    return 0
}

discover_cases() { # PATCH_DIR...
    local f d
    if [ "$SANITY" = 1 ]; then
        add_case sample "$KBUILD/samples/livepatch/livepatch-sample.ko" sample
        return 0
    fi
    if [ -n "$STOCK" ]; then
        # The stock kernel: patches only (module cases are written for the e2e kernel).
        for f in "$E2E"/stock-cases/*.patch; do
            [ -e "$f" ] && add_case patch "$f" "$(basename "$f" .patch)"
        done
        for d in "$E2E"/stock-cases/*/; do
            [ -d "$d" ] && add_case chain "${d%/}" "$(basename "$d")"
        done
    else
        for f in "$E2E"/cases/*.patch; do
            [ -e "$f" ] && add_case patch "$f" "$(basename "$f" .patch)"
        done
        for d in "$E2E"/cases/*/; do
            [ -d "$d" ] && add_case chain "${d%/}" "$(basename "$d")"
        done
        for d in "$E2E"/modules/*/; do
            [ "$(basename "$d")" = include ] && continue # shared headers, not a case
            [ -d "$d" ] && add_case module "${d%/}" "$(basename "$d")"
        done
    fi
    for d in "$@"; do
        [ -d "$d" ] || die "not a directory: $d"
        local n=0
        for f in "$d"/*.patch; do
            [ -e "$f" ] || continue
            add_case patch "$(realpath "$f")" "$(basename "$f" .patch)"
            n=$((n + 1))
        done
        [ $n -gt 0 ] || warn "no *.patch in $d"
    done
    local label
    for label in "${CASE_LABELS[@]}"; do
        case ${C_KIND[$label]} in
        patch) parse_header "$label" "${C_SRC[$label]}" 1 ;;
        chain) parse_chain "$label" ;;
        module)
            if [ -e "${C_SRC[$label]}/case.conf" ]; then
                parse_header "$label" "${C_SRC[$label]}/case.conf" 0
            else
                parse_header "$label" "${C_SRC[$label]}/$label.c" 0
            fi
            ;;
        esac
    done
}

# A chain's steps are cases of their own (label-NN, not in CASE_LABELS) with their headers;
# the chain's check and dmesg are its first step's check and all steps' dmesg.
parse_chain() { # label
    local label=$1 f step n=0
    C_STEPS[$label]=
    for f in "${C_SRC[$label]}"/[0-9][0-9]-*.patch; do
        [ -e "$f" ] || continue
        n=$((n + 1))
        step=$label-$(basename "$f" .patch | cut -c1-2)
        init_case "$step" patch "$f"
        parse_header "$step" "$f" 1
        case ${C_EXPECT[$step]} in
        patched | load-fails) ;;
        *) die "$f: a chain step's E2E-EXPECT must be patched or load-fails" ;;
        esac
        C_STEPS[$label]+="$step "
        C_DMESG[$label]+=${C_DMESG[$step]}
    done
    [ $n -ge 2 ] || die "${C_SRC[$label]}: a chain needs at least two NN-*.patch steps"
    step=${C_STEPS[$label]%% *}
    C_EXPECT[$label]=chain
    C_CHECK[$label]=${C_CHECK[$step]}
    [ "${C_EXPECT[$step]}" = patched ] || die "${C_SRC[$label]}: the first step must be E2E-EXPECT: patched"
}

case_pass() { C_STATUS[$1]=pass; C_WHY[$1]=$2; say "  PASS $1: $2"; }
case_fail() { C_STATUS[$1]=fail; C_WHY[$1]=$2; say "  FAIL $1: $2"; }
case_vm() { C_STATUS[$1]=vm; C_KO[$1]=$2; }

# Does the tool output in LOG match the case's E2E-TOOL-ERROR (when it has one)?
tool_error_ok() { # label log
    [ -z "${C_TOOLERR[$1]}" ] && return 0
    grep -Eq -- "${C_TOOLERR[$1]}" "$2"
}

klpforge_has() { "$KLPFORGE" "$1" --help >/dev/null 2>&1; }

# ---- patch cases ----------------------------------------------------------------------------
# Every patch case goes through `klpforge build` itself, against the cached kernel tree, which
# klpforge only reads (the run checks the whole tree's fingerprint before and after).
build_patch_case() {
    local label=$1 patch=${C_SRC[$1]} dir=$RUN/cases/$1 rc=0 t0
    mkdir -p "$dir"
    local ko=$dir/${C_NAME[$label]}.ko expect=${C_EXPECT[$label]}
    t0=$(now)
    local pause=()
    [ "$expect" = interrupted ] && pause=(env KLPFORGE_PAUSE_AT=compiling)
    if [ "$expect" = interrupted ]; then
        # Interrupt the build while it compiles: it must exit non-zero and leave the trees alone.
        "${pause[@]}" "$KLPFORGE" build --src "$KSRC" --build "$KBUILD" -o "$ko" --name "${C_NAME[$label]}" \
            -j "$JOBS" --work "$dir/work" "$patch" >"$dir/build.log" 2>&1 &
        local pid=$! i=0
        while ! grep -q 'paused at' "$dir/build.log" 2>/dev/null && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
        # SIGTERM: a background job of a non-interactive shell ignores SIGINT.
        kill -TERM "$pid" 2>/dev/null || true
        wait "$pid" || rc=$?
        if [ $rc != 0 ] && grep -q 'paused at' "$dir/build.log"; then
            case_pass "$label" "interrupted while compiling (exit $rc)"
        else
            case_fail "$label" "expected an interrupted build; exit $rc: $(tail -n3 "$dir/build.log" | tr '\n' ' ')"
        fi
        timing "module build: $label" "$(elapsed "$t0" "$(now)")" "interrupted"
        return 0
    fi
    local kernel=(--mode "${C_MODE[$label]}" --src "$KSRC" --build "$KBUILD")
    if [ -n "$STOCK" ]; then
        kernel=(--kernel "$STOCK")
    elif [ "${C_MODE[$label]}" = prepared ]; then
        kernel=(--kernel "$(prepared_kernel)") || { case_fail "$label" "klpforge prepare failed (log: $RUN/prepare.log)"; return 0; }
    fi
    if [ "${C_SIGN[$label]}" = no ]; then
        : # unsigned, on purpose
    elif [ -z "$STOCK" ]; then
        # The e2e kernel enforces signatures (MODULE_SIG_FORCE): its own build key signs.
        kernel+=(--sign-key "$KBUILD/certs/signing_key.pem" --sign-cert "$KBUILD/certs/signing_key.x509")
    elif [ "${C_SIGN[$label]}" = yes ]; then
        signing_key
        kernel+=(--sign-key "$RUN/signing/key.pem" --sign-cert "$RUN/signing/cert.pem")
    fi
    "$KLPFORGE" build "${kernel[@]}" -o "$ko" --name "${C_NAME[$label]}" \
        -j "$JOBS" --work "$dir/work" --json "$dir/report.json" "$patch" >"$dir/build.log" 2>&1 || rc=$?
    if [ "$expect" = auto ]; then
        case $rc in
        3) expect=no-change ;;
        4) expect=refused ;;
        *) expect=patched ;;
        esac
    fi
    case $expect in
    refused)
        if [ $rc = 4 ] && tool_error_ok "$label" "$dir/build.log"; then
            case_pass "$label" "refused: $(grep -m1 'refused:' "$dir/build.log")"
        else
            case_fail "$label" "expected a refusal (exit 4) matching /${C_TOOLERR[$label]}/; exit $rc: $(tail -n3 "$dir/build.log" | tr '\n' ' ')"
        fi
        ;;
    no-change)
        if [ $rc = 3 ]; then case_pass "$label" "nothing to patch (exit 3)"
        else case_fail "$label" "expected exit 3; exit $rc: $(tail -n3 "$dir/build.log" | tr '\n' ' ')"; fi
        ;;
    apply-fails | tool-rejects)
        if [ $rc = 1 ] && tool_error_ok "$label" "$dir/build.log"; then
            case_pass "$label" "rejected: $(grep -m1 'error:' "$dir/build.log")"
        else
            case_fail "$label" "expected klpforge build to fail with a matching error; exit $rc: $(tail -n3 "$dir/build.log" | tr '\n' ' ')"
        fi
        ;;
    *)
        if [ $rc != 0 ]; then
            case_fail "$label" "klpforge build failed (exit $rc): $(grep -E 'error|refused' "$dir/build.log" | head -n3 | tr '\n' ' ')"
        elif [ ! -s "$ko" ]; then
            case_fail "$label" "klpforge build exited 0 but wrote no $ko"
        elif [ "${C_SIGN[$label]}" = yes ] && [ "$(module_signer "$ko")" != "$(expected_signer)" ]; then
            case_fail "$label" "the module is not signed by '$(expected_signer)' (modinfo -F signer: $(module_signer "$ko"))"
        elif [ "${C_SIGN[$label]}" = no ] && [ -n "$(module_signer "$ko")" ]; then
            case_fail "$label" "the module must be unsigned, but modinfo names a signer: $(module_signer "$ko")"
        elif [ -n "${C_BUILDWARN[$label]}" ] && ! grep 'warning:' "$dir/build.log" | grep -Eq -- "${C_BUILDWARN[$label]}"; then
            case_fail "$label" "no klpforge build warning matches /${C_BUILDWARN[$label]}/ (log: $dir/build.log)"
        else
            case_vm "$label" "$ko"
        fi
        ;;
    esac
    local detail
    detail=$(grep -m1 '^objects recompiled' "$dir/build.log" || true)
    timing "module build: $label" "$(elapsed "$t0" "$(now)")" "$detail"
}

# Every step of a chain is built like a patch case; the chain goes to the VM when all built.
build_chain_case() { # label
    local label=$1 step why=''
    for step in ${C_STEPS[$label]}; do
        C_STATUS[$step]=pending
        build_patch_case "$step"
        [ "${C_STATUS[$step]}" = vm ] || why+="$step: ${C_WHY[$step]}; "
    done
    if [ -n "$why" ]; then case_fail "$label" "$why"; else case_vm "$label" chain; fi
}

module_signer() { PATH=$PATH:/sbin:/usr/sbin modinfo -F signer "$1" 2>&1; }

# Who E2E-SIGN: yes cases must be signed by: the throwaway key on a stock kernel, the e2e
# kernel's own build key (the common name of its certificate) otherwise.
expected_signer() {
    if [ -n "$STOCK" ]; then
        echo "$SIGNER"
    else
        openssl x509 -inform DER -in "$KBUILD/certs/signing_key.x509" -noout -subject -nameopt multiline |
            sed -n 's/^ *commonName *= *//p'
    fi
}

# Sign a module the e2e kernel is to load (not made by klpforge build: converted modules,
# samples, target modules of the build tree) with the kernel's own build key, when the kernel
# checks signatures.
sign_for_kernel() { # ko
    local hash
    hash=$(sed -n 's/^CONFIG_MODULE_SIG_HASH="\(.*\)"$/\1/p' "$KBUILD/.config")
    [ -n "$hash" ] || return 0
    "$KBUILD/scripts/sign-file" "$hash" "$KBUILD/certs/signing_key.pem" "$KBUILD/certs/signing_key.x509" "$1" ||
        die "signing $1 with the kernel's key failed"
}

# A throwaway signing key and certificate for E2E-SIGN cases, made once per run.
SIGNER="klpforge e2e throwaway key"
signing_key() {
    [ -f "$RUN/signing/key.pem" ] && return 0
    mkdir -p "$RUN/signing"
    openssl req -new -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=$SIGNER/" \
        -keyout "$RUN/signing/key.pem" -out "$RUN/signing/cert.pem" >"$RUN/signing/openssl.log" 2>&1 ||
        die "openssl could not make a signing key (log: $RUN/signing/openssl.log)"
}

# The e2e kernel prepared by `klpforge prepare` from its source, configuration, exports and
# vmlinux (no use of its build records), cached beside the kernel; prints its directory.
prepared_kernel() {
    local cache=$KDIR/prepared
    "$KLPFORGE" prepare --src "$KSRC" --config "$KBUILD/.config" --symvers "$KBUILD/Module.symvers" \
        --release "$(cat "$KBUILD/include/config/kernel.release")" --vmlinux "$KBUILD/vmlinux" \
        --modules "$KBUILD" --cache "$cache" -j "$JOBS" 2>>"$RUN/prepare.log"
}

# ---- module cases ---------------------------------------------------------------------------
build_module_case() {
    local label=$1 src=${C_SRC[$1]} dir=$RUN/cases/$1 t0 rc
    t0=$(now)
    mkdir -p "$dir"
    rm -rf "$dir/src"
    cp -r "$src" "$dir/src"
    rm -f "$dir/src/case.conf"
    # KBUILD_MODPOST_WARN: references to unexported symbols are what convert is for;
    # KLPFORGE_INCLUDE: where klpforge.h is (a Kbuild adds ccflags-y += -I$(KLPFORGE_INCLUDE));
    # E2E_INCLUDE: the shared registration code of the modules (modules/include)
    if ! make -C "$KBUILD" M="$dir/src" KBUILD_MODPOST_WARN=1 KLPFORGE_INCLUDE="$REPO/include" \
        E2E_INCLUDE="$E2E/modules/include" \
        modules >"$dir/kbuild.log" 2>&1; then
        case_fail "$label" "kbuild failed (log: $dir/kbuild.log): $(grep -m3 -E 'error' "$dir/kbuild.log" | tr '\n' ' ')"
        return 0
    fi
    local kos=("$dir"/src/*.ko)
    if [ ${#kos[@]} != 1 ] || [ ! -e "${kos[0]}" ]; then
        case_fail "$label" "kbuild must produce exactly one .ko in $dir/src"
        return 0
    fi
    local raw=${kos[0]} name
    name=$(basename "$raw" .ko)
    C_NAME[$label]=${name//-/_}
    local ko=$dir/$name.ko expect=${C_EXPECT[$label]}
    if [ "${C_CONVERT[$label]}" = no ]; then
        cp "$raw" "$ko"
        case_vm "$label" "$ko"
    else
        local tool=${C_TOOL[$label]}
        rc=0
        if ! klpforge_has "$tool"; then
            echo "klpforge has no '$tool' command" >"$dir/$tool.log"
            rc=1
        elif [ "$tool" = convert ]; then
            "$KLPFORGE" convert "$raw" --vmlinux "$KBUILD/vmlinux" --symvers "$KBUILD/Module.symvers" -o "$ko" >"$dir/$tool.log" 2>&1 || rc=$?
        else
            cp "$raw" "$ko"
            "$KLPFORGE" post-link "$ko" >"$dir/$tool.log" 2>&1 || rc=$?
        fi
        if [ "$expect" = tool-rejects ]; then
            if [ $rc != 0 ] && [ -s "$dir/$tool.log" ] && tool_error_ok "$label" "$dir/$tool.log"; then
                case_pass "$label" "klpforge $tool rejected it: $(head -n1 "$dir/$tool.log")"
            else
                case_fail "$label" "expected klpforge $tool to reject it with an error matching /${C_TOOLERR[$label]}/; exit $rc: $(head -n3 "$dir/$tool.log" | tr '\n' ' ')"
            fi
        elif [ $rc != 0 ]; then
            case_fail "$label" "klpforge $tool failed (exit $rc): $(head -n5 "$dir/$tool.log" | tr '\n' ' ')"
        elif [ ! -s "$ko" ]; then
            case_fail "$label" "klpforge $tool exited 0 but wrote no $ko"
        else
            case_vm "$label" "$ko"
        fi
    fi
    timing "module build: $label" "$(elapsed "$t0" "$(now)")"
}

build_cases() {
    local label
    for label in "${CASE_LABELS[@]}"; do
        say "case $label (${C_KIND[$label]}, expect ${C_EXPECT[$label]:-patched})"
        case ${C_KIND[$label]} in
        patch) build_patch_case "$label" ;;
        chain) build_chain_case "$label" ;;
        module) build_module_case "$label" ;;
        sample)
            C_EXPECT[$label]=patched
            C_NAME[$label]=livepatch_sample
            C_CHECK[$label]="grep -q 'this has been live patched' /proc/cmdline"
            case_vm "$label" "${C_SRC[$label]}"
            ;;
        esac
    done
}

# ---- module link replayed without make -------------------------------------------------------
# klpforge learns kbuild's module link commands from one make run per kernel and replays them
# after (crates/module/src/recipe.rs). With an empty cache, the first `klpforge module` of a
# built case's diff objects runs make (and learns); the second must replay (no make record in
# its work directory) and give make's module byte for byte. (Not with --only: the cases run may
# leave no diff objects.)
check_module_replay() {
    local label=module-replay dir=$RUN/module-replay case diffs=() i
    for case in "${CASE_LABELS[@]}"; do
        [ "${C_KIND[$case]}" = patch ] && [ "${C_STATUS[$case]}" != fail ] || continue
        mapfile -t diffs < <(find "$RUN/cases/$case/work/diff" -name '*.o' 2>/dev/null | sort)
        [ ${#diffs[@]} -gt 0 ] && break
    done
    CASE_LABELS+=("$label")
    if [ ${#diffs[@]} = 0 ]; then
        case_fail "$label" "no built case left diff objects to link"
        return 0
    fi
    mkdir -p "$dir/cache"
    for i in make replay; do
        rm -rf "$dir/work"
        if ! XDG_CACHE_HOME=$dir/cache "$KLPFORGE" module --kernel "$KBUILD" --name klp_replay \
            --work "$dir/work" -o "$dir/$i.ko" "${diffs[@]}" >"$dir/$i.log" 2>&1; then
            case_fail "$label" "klpforge module ($i) failed: $(tail -n2 "$dir/$i.log" | tr '\n' ' ')"
            return 0
        fi
    done
    if [ -e "$dir/work/.klp_replay.ko.cmd" ] || ! ls "$dir"/cache/klpforge/init/*.recipe >/dev/null 2>&1; then
        case_fail "$label" "the second build ran make (no recipe learned; see $dir/cache)"
    elif ! cmp -s "$dir/make.ko" "$dir/replay.ko"; then
        case_fail "$label" "the replayed module differs from make's ($dir/make.ko, $dir/replay.ko)"
    else
        case_pass "$label" "replayed module link byte-identical to make's ($case)"
    fi
}
