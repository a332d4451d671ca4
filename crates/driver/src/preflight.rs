//! Checks before a build: whether the tree can produce livepatches (livepatch configured,
//! no randomising plugins, the same compiler as the kernel's), which files a patch must not
//! touch, and facts of the configuration the stages need.

use klpforge_module::config::KernelConfig;
use std::path::Path;
use std::process::Command;

use crate::error::Result;
use crate::kbuild::KernelTree;
use crate::options::BuildOptions;

/// Paths of the source tree a patch must not touch, with the reason.
pub(crate) fn refused_path(path: &str) -> Option<&'static str> {
    if path.ends_with(".S") || path.ends_with(".s") {
        return Some("assembly code has no ftrace entries and no symbols livepatch can redirect");
    }
    if path.starts_with("lib/") {
        return Some("lib/ objects are linked from an archive, only when referenced; their changes cannot be tracked reliably");
    }
    if path.contains("/vdso/") || path.contains("/vdso") && path.starts_with("arch/") {
        return Some("the vDSO is mapped into user space and is not patched by livepatch");
    }
    if path.starts_with("arch/x86/realmode/") || path.contains("/realmode/") {
        return Some("real-mode code runs before the kernel and cannot be live-patched");
    }
    if path.starts_with("arch/x86/boot/")
        || path.starts_with("scripts/")
        || path.starts_with("tools/")
    {
        return Some("not part of the running kernel");
    }
    if path.ends_with("Makefile") || path.ends_with("Kbuild") || path.contains("Kconfig") {
        return Some("a build or configuration change cannot be applied to a running kernel");
    }
    None
}

/// The configuration of the tree's build (empty when it has no readable `.config`).
pub(crate) fn config(tree: &KernelTree) -> KernelConfig {
    KernelConfig::read(&tree.build).unwrap_or_default()
}

/// Check that the tree can produce livepatches.
pub fn check_tree(opts: &BuildOptions) -> Result<()> {
    let tree = &opts.tree;
    if !tree.build.join(".config").exists() {
        return Err(format!(
            "{}: no .config: not a configured kernel build tree",
            tree.build.display()
        )
        .into());
    }
    let config = config(tree);
    for needed in [
        "CONFIG_LIVEPATCH",
        "CONFIG_DYNAMIC_FTRACE",
        "CONFIG_MODULES",
        "CONFIG_KALLSYMS",
    ] {
        if !config.enabled(needed) {
            return Err(format!(
                "{needed} is not enabled in {}/.config",
                tree.build.display()
            )
            .into());
        }
    }
    for bad in [
        "CONFIG_GCC_PLUGIN_RANDSTRUCT",
        "CONFIG_RANDSTRUCT_FULL",
        "CONFIG_RANDSTRUCT_PERFORMANCE",
        "CONFIG_GCC_PLUGIN_LATENT_ENTROPY",
    ] {
        if config.enabled(bad) {
            return Err(format!(
                "{bad} is enabled: objects built again would not match the running kernel"
            )
            .into());
        }
    }
    if !opts.vmlinux.exists() {
        return Err(format!(
            "{}: the original vmlinux is needed for symbol positions",
            opts.vmlinux.display()
        )
        .into());
    }
    if !opts.skip_compiler_check {
        check_compiler(opts)?;
    }
    Ok(())
}

/// A compiler's identity in its `--version` first line or in `CONFIG_CC_VERSION_TEXT`:
/// everything after the command name (`(Debian 12.2.0-14+deb12u1) 12.2.0`), so that
/// `x86_64-linux-gnu-gcc-12` and `gcc` of one build compare equal.
pub fn compiler_identity(line: &str) -> &str {
    line.trim()
        .split_once(' ')
        .map_or("", |(_, rest)| rest.trim())
}

/// The first line of `cc --version`, if `cc` runs.
fn compiler_version(cc: &str) -> Option<String> {
    let o = Command::new(cc).arg("--version").output().ok()?;
    let text = String::from_utf8_lossy(&o.stdout);
    text.lines().next().map(str::to_string)
}

/// Check that a compiler of this machine is the one that built the kernel: the compiler
/// proper of CC=... when given (the last word, after ccache or distcc), else the command
/// the kernel's configuration names, else `gcc`. Compilers compare by version and build,
/// not by command name; the vmlinux's `.comment` must name the same version.
fn check_compiler(opts: &BuildOptions) -> Result<()> {
    let tree = &opts.tree;
    let want = config(tree)
        .value("CONFIG_CC_VERSION_TEXT")
        .unwrap_or_default()
        .to_string();
    let named = want.split_whitespace().next().unwrap_or("gcc").to_string();
    let candidates: Vec<String> = match opts
        .make_vars
        .iter()
        .find_map(|v| v.strip_prefix("CC="))
        .and_then(|c| c.split_whitespace().last())
    {
        Some(cc) => vec![cc.to_string()],
        None => vec![named, "gcc".to_string()],
    };
    let mut seen: Vec<String> = Vec::new();
    let mut chosen: Option<(String, String)> = None;
    for cc in &candidates {
        let Some(have) = compiler_version(cc) else {
            seen.push(format!("{cc}: not found"));
            continue;
        };
        if want.is_empty() || compiler_identity(&have) == compiler_identity(&want) {
            chosen = Some((cc.clone(), have));
            break;
        }
        seen.push(format!("{cc} is '{have}'"));
    }
    let Some((cc, have)) = chosen else {
        return Err(format!(
            "compiler mismatch: the kernel was built with '{want}'; {} (use --skip-compiler-check to override)",
            seen.join(", ")
        ).into());
    };
    // The vmlinux records its compiler in .comment ("GCC: (Debian 12.2.0-14) 12.2.0").
    if let Some(recorded) = vmlinux_compiler(&opts.vmlinux) {
        let version = compiler_identity(&have);
        if !version.is_empty() && !recorded.contains(version) {
            return Err(format!(
                "compiler mismatch: {} was built by '{recorded}', {cc} is '{have}' (use --skip-compiler-check to override)",
                opts.vmlinux.display()
            ).into());
        }
    }
    Ok(())
}

/// The GCC identification recorded in an image's `.comment` section.
fn vmlinux_compiler(vmlinux: &Path) -> Option<String> {
    let file = klpforge_elf::ElfFile::open(vmlinux).ok()?;
    let obj = file.parse().ok()?;
    let sec = obj.section_by_name(b".comment")?;
    obj.section(sec)
        .bytes()
        .split(|&b| b == 0)
        .map(String::from_utf8_lossy)
        .find(|s| s.starts_with("GCC: "))
        .map(|s| s.into_owned())
}

/// The kernel's source architecture directory (`arch/<srcarch>`), from the configuration.
pub(crate) fn kernel_srcarch(tree: &KernelTree) -> Option<&'static str> {
    let config = config(tree);
    [
        ("CONFIG_X86", "x86"),
        ("CONFIG_ARM64", "arm64"),
        ("CONFIG_PPC", "powerpc"),
        ("CONFIG_S390", "s390"),
        ("CONFIG_LOONGARCH", "loongarch"),
    ]
    .into_iter()
    .find(|(key, _)| config.enabled(key))
    .map(|(_, arch)| arch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compilers_compare_by_identity() {
        assert_eq!(
            compiler_identity("x86_64-linux-gnu-gcc-12 (Debian 12.2.0-14+deb12u1) 12.2.0"),
            compiler_identity("gcc (Debian 12.2.0-14+deb12u1) 12.2.0")
        );
        assert_ne!(
            compiler_identity("gcc (Debian 12.2.0-14) 12.2.0"),
            compiler_identity("gcc (Debian 12.2.0-14+deb12u1) 12.2.0")
        );
    }
}
