# A distribution's stock kernel for the e2e test (sourced by tests/e2e/run with --kernel).
# shellcheck shell=bash
# shellcheck disable=SC2034 # KDIR, STOCK and the others are read by run, cases.sh and vm.sh
#
# `klpforge prepare --kernel SPEC` fetches and prepares what building livepatches needs (source,
# config, exports, the -dbg vmlinux; cached in ~/.cache/klpforge). The boot needs the stock image
# and its modules: the -unsigned image package, unpacked (never installed) into
#   $KLPFORGE_E2E_CACHE/stock/<release>/   boot/vmlinuz-<release>, lib/modules/<release>/

# Sets KSRC, KBUILD (the prepared kernel), KDIR, BZIMAGE, GEN_INIT_CPIO, STOCK_RELEASE and
# STOCK_MODULES.
ensure_stock_kernel() { # spec
    local spec=$1 t0 dir version deb
    t0=$(now)
    local prepared
    prepared=$("$KLPFORGE" prepare --kernel "$spec" -j "$JOBS" 2>"$RUN/prepare.log") ||
        { tail -20 "$RUN/prepare.log" >&2; die "klpforge prepare --kernel $spec failed (log: $RUN/prepare.log)"; }
    timing "klpforge prepare $spec" "$(elapsed "$t0" "$(now)")"
    KSRC=$(sed -n 's/^ *"src": "\(.*\)",$/\1/p' "$prepared/kernel.json" | head -n1)
    KBUILD=$prepared/build
    STOCK_RELEASE=$(cat "$KBUILD/include/config/kernel.release")
    # Every case builds against this release (debian:latest resolves once).
    STOCK=${spec%%:*}:$STOCK_RELEASE
    [ -d "$KSRC" ] || die "$prepared/kernel.json names no source tree"
    dir=${KLPFORGE_E2E_CACHE:-${HOME:-/root}/.cache/klpforge-e2e}/stock/$STOCK_RELEASE
    KDIR=$dir
    BZIMAGE=$dir/boot/vmlinuz-$STOCK_RELEASE
    STOCK_MODULES=$dir/lib/modules/$STOCK_RELEASE
    if [ ! -f "$BZIMAGE" ]; then
        t0=$(now)
        version=$(apt-cache madison "linux-image-$STOCK_RELEASE-unsigned" | awk -F'|' 'NR == 1 { gsub(/ /, "", $2); print $2 }')
        [ -n "$version" ] || die "no linux-image-$STOCK_RELEASE-unsigned package in the apt sources"
        mkdir -p "$dir/debs"
        (cd "$dir/debs" && apt-get download -q "linux-image-$STOCK_RELEASE-unsigned=$version") >"$RUN/stock-image.log" 2>&1 ||
            die "apt-get download of the stock image failed (log: $RUN/stock-image.log)"
        deb=$(ls "$dir"/debs/linux-image-"$STOCK_RELEASE"-unsigned_*.deb | head -n1)
        dpkg-deb -x "$deb" "$dir" || die "dpkg-deb -x $deb failed"
        rm -f "$deb"
        timing "stock image download and unpack" "$(elapsed "$t0" "$(now)")"
    fi
    # modules.dep is made at install time: make it for the unpacked tree.
    if [ ! -f "$STOCK_MODULES/modules.dep" ]; then
        PATH=$PATH:/sbin:/usr/sbin depmod -b "$dir" "$STOCK_RELEASE" >"$RUN/depmod.log" 2>&1 ||
            die "depmod for the stock modules failed (log: $RUN/depmod.log)"
    fi
    # gen_init_cpio for the initramfs: the kernel's own host tool, built beside the image.
    GEN_INIT_CPIO=$dir/gen_init_cpio
    if [ ! -x "$GEN_INIT_CPIO" ]; then
        gcc -O2 -o "$GEN_INIT_CPIO" "$KSRC/usr/gen_init_cpio.c" >"$RUN/gen_init_cpio.log" 2>&1 ||
            die "building gen_init_cpio failed (log: $RUN/gen_init_cpio.log)"
    fi
    say "stock kernel $STOCK_RELEASE: image $BZIMAGE, prepared tree $prepared"
}

# The files stock module targets need, in load order: each target's modules.dep dependencies and
# softdep "pre:" modules (resolved through modules.alias, with their own dependencies) first,
# every file once, decompressed into DIR as dep-NN.ko and target-<name>.ko; writes DIR/targets
# (the targets' names, in order).
stock_target_files() { # "module-name..." dir
    local d=$2 name rel i=0 dep
    local -A seen=()
    : >"$d/targets"
    for name in $1; do
        rel=$(stock_module_path "$name")
        [ -n "$rel" ] || die "stock module $name is not in $STOCK_MODULES/modules.dep"
        for dep in $(stock_module_closure "$rel"); do
            [ "$dep" = "$rel" ] && continue
            [ -n "${seen[$dep]+x}" ] && continue
            seen[$dep]=1
            i=$((i + 1))
            decompress_module "$STOCK_MODULES/$dep" >"$d/dep-$(printf '%02d' $i).ko"
        done
        seen[$rel]=1
        name=${name//-/_}
        decompress_module "$STOCK_MODULES/$rel" >"$d/target-$name.ko"
        printf '%s\n' "$name" >>"$d/targets"
    done
}

# The modules.dep path of a module name ('-' and '_' alike), or nothing.
stock_module_path() { # name
    awk -F: -v n="$1" 'BEGIN { gsub(/-/, "_", n) } { m = $1; sub(/.*\//, "", m); sub(/\.ko(\.[a-z]+)?$/, "", m); gsub(/-/, "_", m); if (m == n) { print $1; exit } }' "$STOCK_MODULES/modules.dep"
}

# Every module REL needs, in load order, ending with REL: softdep "pre:" modules and modules.dep
# dependencies first (modules.dep lists the deepest last).
stock_module_closure() { # rel [depth]
    local rel=$1 depth=${2:-0} m pre alias dep
    [ "$depth" -lt 8 ] || die "stock module dependencies nest too deep at $rel"
    m=$(basename "$rel"); m=${m%%.ko*}; m=${m//-/_}
    for pre in $(awk -v n="$m" '$1 == "softdep" { x = $2; gsub(/-/, "_", x); if (x == n) { on = 0; for (i = 3; i <= NF; i++) { if ($i == "pre:") on = 1; else if ($i ~ /:$/) on = 0; else if (on) print $i } } }' "$STOCK_MODULES/modules.softdep" 2>/dev/null); do
        # Several modules may provide an alias: the generic one works on any CPU.
        alias=$(awk -v a="$pre" '$1 == "alias" && $2 == a { if (!first) first = $3; if ($3 ~ /_generic$/) { generic = $3 } } END { print generic ? generic : first }' "$STOCK_MODULES/modules.alias" 2>/dev/null)
        dep=$(stock_module_path "${alias:-$pre}")
        [ -n "$dep" ] && stock_module_closure "$dep" $((depth + 1))
    done
    for dep in $(awk -F: -v r="$rel" '$1 == r { print $2 }' "$STOCK_MODULES/modules.dep" | tr ' ' '\n' | tac); do
        stock_module_closure "$dep" $((depth + 1))
    done
    printf '%s\n' "$rel"
}

decompress_module() { # file
    case $1 in
    *.xz) xz -dc "$1" ;;
    *.zst) zstd -dcq "$1" ;;
    *.gz) gzip -dc "$1" ;;
    *) cat "$1" ;;
    esac
}
