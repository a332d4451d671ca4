//! Debian (and derivatives that ship the same packages): a release such as
//! `6.12.117+deb12-amd64` is built from the package version of `linux-headers-<release>`
//! (`6.12.117-1~deb12u1`); the source is `linux-source-<major.minor>` of that version (Debian's
//! patches applied), the configuration and `Module.symvers` come from the headers package, and
//! the vmlinux and modules with symbols from `linux-image-<release>-dbg` (1 GB: only the files
//! needed are unpacked). Packages are fetched with `apt-get download`, unpacked with
//! `dpkg-deb`, never installed.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::Distribution;
use crate::error::{DriverError, Result};
use crate::inputs::KernelInputs;

/// Debian's kernel packages.
pub struct Debian;

fn run(cmd: &mut Command, what: &str) -> Result<String> {
    let out = cmd
        .output()
        .map_err(|e| format!("{what}: cannot run: {e}"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(format!("{what} failed: {}", err.trim().replace('\n', "; ")).into());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The package version that built `release`, from the apt sources.
fn package_version(release: &str) -> Result<String> {
    let pkg = format!("linux-headers-{release}");
    versions(&pkg)?.into_iter().next().ok_or_else(|| {
            DriverError::from(format!(
                "no package {pkg} in the apt sources: check the release (apt-cache search linux-headers-) or add the archive that has it"
            ))
        })
}

/// The versions apt knows of package `name`, newest first.
fn versions(name: &str) -> Result<Vec<String>> {
    let out = run(
        Command::new("apt-cache").arg("madison").arg(name),
        "apt-cache madison",
    )?;
    Ok(out
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split('|').map(str::trim).collect();
            (f.first() == Some(&name)).then(|| f.get(1).map(|v| v.to_string()))?
        })
        .collect())
}

/// Numeric parts of a release, for ordering (`6.12.117+deb12-amd64` -> 6, 12, 117, 12).
fn release_key(release: &str) -> Vec<u64> {
    release
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// The newest release of this machine's architecture's standard flavour whose source,
/// headers, image and `-dbg` packages all exist in one version (the archive moves: ask apt).
pub fn newest_release() -> Result<String> {
    let arch = run(Command::new("dpkg").arg("--print-architecture"), "dpkg")?;
    let arch = arch.trim();
    let out = run(
        Command::new("apt-cache")
            .args(["search", "--names-only"])
            .arg(format!("^linux-image-[0-9].*-{arch}-dbg$")),
        "apt-cache search",
    )?;
    let mut releases: Vec<String> = out
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter_map(|n| n.strip_prefix("linux-image-")?.strip_suffix("-dbg"))
        .filter(|r| r.ends_with(&format!("-{arch}")) && r.contains("+deb"))
        .map(str::to_string)
        .collect();
    releases.sort_by_key(|r| std::cmp::Reverse(release_key(r)));
    for r in releases {
        let Some(series) = major_minor(&r) else {
            continue;
        };
        let dbg = versions(&format!("linux-image-{r}-dbg")).unwrap_or_default();
        let complete = dbg.iter().find(|v| {
            versions(&format!("linux-headers-{r}"))
                .unwrap_or_default()
                .contains(v)
                && versions(&format!("linux-image-{r}-unsigned"))
                    .unwrap_or_default()
                    .contains(v)
                && versions(&format!("linux-source-{series}"))
                    .unwrap_or_default()
                    .contains(v)
        });
        if complete.is_some() {
            return Ok(r);
        }
    }
    Err(format!(
        "no {arch} kernel release has source, headers, image and -dbg packages in the apt sources"
    )
    .into())
}

/// `6.12` of `6.12.117+deb12-amd64`.
fn major_minor(release: &str) -> Option<String> {
    let mut parts = release.split(['.', '-', '+']);
    Some(format!("{}.{}", parts.next()?, parts.next()?))
}

/// Download `name=version` into `dir` unless a `.deb` of it is already there.
fn download(name: &str, version: &str, dir: &Path, say: &dyn Fn(&str)) -> Result<PathBuf> {
    let find = || {
        std::fs::read_dir(dir).ok().and_then(|rd| {
            rd.flatten().map(|e| e.path()).find(|p| {
                let f = p
                    .file_name()
                    .map(|f| f.to_string_lossy().into_owned())
                    .unwrap_or_default();
                f.starts_with(&format!("{name}_")) && f.ends_with(".deb")
            })
        })
    };
    if let Some(p) = find() {
        return Ok(p);
    }
    say(&format!("downloading {name} {version}"));
    std::fs::create_dir_all(dir).map_err(DriverError::io(&dir))?;
    run(
        Command::new("apt-get")
            .args(["download", "-q"])
            .arg(format!("{name}={version}"))
            .current_dir(dir),
        &format!("apt-get download {name}={version}"),
    )?;
    find().ok_or_else(|| {
        DriverError::from(format!(
            "apt-get download {name}={version} left no .deb in {}",
            dir.display()
        ))
    })
}

/// Unpack `members` of a `.deb`'s file tree into `dest`.
fn unpack(deb: &Path, dest: &Path, members: &[String]) -> Result<()> {
    std::fs::create_dir_all(dest).map_err(DriverError::io(&dest))?;
    let mut dpkg = Command::new("dpkg-deb")
        .arg("--fsys-tarfile")
        .arg(deb)
        .stdout(Stdio::piped())
        .spawn()
        .map_err(DriverError::spawn("dpkg-deb"))?;
    let stdout = dpkg.stdout.take().expect("piped");
    let out = Command::new("tar")
        .arg("-x")
        .arg("--wildcards")
        .arg("-C")
        .arg(dest)
        .args(members)
        .stdin(stdout)
        .output()
        .map_err(DriverError::spawn("tar"))?;
    let _ = dpkg.wait();
    if !out.status.success() {
        return Err(format!(
            "{}: unpacking {} failed: {}",
            deb.display(),
            members.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )
        .into());
    }
    Ok(())
}

impl Distribution for Debian {
    fn name(&self) -> &'static str {
        "debian"
    }

    fn is_running(&self, os_release: &str) -> bool {
        os_release.lines().any(|l| {
            let l = l.trim();
            (l.starts_with("ID=") || l.starts_with("ID_LIKE="))
                && l.split(['=', ' ', '"']).any(|w| w == "debian")
        })
    }

    fn inputs(&self, release: &str, cache: &Path, say: &dyn Fn(&str)) -> Result<KernelInputs> {
        let newest;
        let release = if release == "latest" {
            newest = newest_release()?;
            say(&format!("newest complete Debian kernel release: {newest}"));
            newest.as_str()
        } else {
            release
        };
        let dir = cache.join(release);
        let debs = dir.join("debs");
        let version = package_version(release)?;
        let series =
            major_minor(release).ok_or_else(|| format!("'{release}': no version in it"))?;

        // Configuration and exports.
        let headers_root = dir.join("headers");
        let hdir = headers_root.join(format!("usr/src/linux-headers-{release}"));
        if !hdir.join("Module.symvers").exists() {
            let deb = download(&format!("linux-headers-{release}"), &version, &debs, say)?;
            unpack(
                &deb,
                &headers_root,
                &[
                    format!("./usr/src/linux-headers-{release}/.config"),
                    format!("./usr/src/linux-headers-{release}/Module.symvers"),
                ],
            )?;
        }

        // The source, with Debian's patches applied.
        let src = dir.join("src");
        if !src.join("Makefile").exists() {
            let deb = download(&format!("linux-source-{series}"), &version, &debs, say)?;
            let staging = dir.join("source-deb");
            let tarball = format!("./usr/src/linux-source-{series}.tar.xz");
            unpack(&deb, &staging, std::slice::from_ref(&tarball))?;
            say("unpacking the kernel source");
            let partial = dir.join("src.partial");
            let _ = std::fs::remove_dir_all(&partial);
            std::fs::create_dir_all(&partial).map_err(|e| e.to_string())?;
            run(
                Command::new("tar")
                    .arg("-xf")
                    .arg(staging.join(&tarball))
                    .arg("--strip-components=1")
                    .arg("-C")
                    .arg(&partial),
                "unpacking the source tarball",
            )?;
            std::fs::rename(&partial, &src).map_err(|e| e.to_string())?;
            let _ = std::fs::remove_dir_all(&staging);
        }

        // The vmlinux with symbols; modules are unpacked on demand from the same package.
        let dbg_root = dir.join("dbg");
        let vmlinux = dbg_root.join(format!("usr/lib/debug/boot/vmlinux-{release}"));
        let dbg = download(&format!("linux-image-{release}-dbg"), &version, &debs, say)?;
        if !vmlinux.exists() {
            say("unpacking the vmlinux with symbols (about a minute)");
            unpack(
                &dbg,
                &dbg_root,
                &[format!("./usr/lib/debug/boot/vmlinux-{release}")],
            )?;
        }
        Ok(KernelInputs {
            src,
            config: hdir.join(".config"),
            symvers: hdir.join("Module.symvers"),
            release: release.to_string(),
            vmlinux,
            modules: Some(dbg_root.join(format!("usr/lib/debug/lib/modules/{release}"))),
            module_archive: Some(dbg),
        })
    }
}

/// Unpack the modules `<name>.ko` of `names` (`-` and `_` alike) of `release` from its `-dbg`
/// package, in one pass over the archive, so that they land below `modules` (the package's
/// `usr/lib/debug/lib/modules/<release>`); returns whether that directory exists after.
pub fn unpack_modules(archive: &Path, modules: &Path, release: &str, names: &[&str]) -> bool {
    // The package's file tree is six levels above the modules directory.
    let Some(root) = modules.ancestors().nth(6) else {
        return false;
    };
    let patterns: Vec<String> = names
        .iter()
        .flat_map(|name| {
            [
                name.to_string(),
                name.replace('_', "-"),
                name.replace('-', "_"),
            ]
        })
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .map(|n| format!("./usr/lib/debug/lib/modules/{release}/*/{n}.ko"))
        .collect();
    // One pass over the (large) archive; tar's complaint about the patterns that matched
    // nothing does not matter: what was unpacked does.
    let _ = unpack(archive, root, &patterns);
    modules.exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releases_order_by_their_numbers() {
        let mut r = [
            "6.12.99+deb12-amd64",
            "6.12.117+deb12-amd64",
            "6.12.107+deb12-amd64",
        ];
        r.sort_by_key(|x| std::cmp::Reverse(release_key(x)));
        assert_eq!(r[0], "6.12.117+deb12-amd64");
    }

    #[test]
    fn releases_and_os_release() {
        assert_eq!(major_minor("6.12.117+deb12-amd64").as_deref(), Some("6.12"));
        assert_eq!(major_minor("6.1.0-37-amd64").as_deref(), Some("6.1"));
        assert!(Debian.is_running("PRETTY_NAME=\"Debian GNU/Linux 12\"\nID=debian\n"));
        assert!(Debian.is_running("ID=ubuntu\nID_LIKE=debian\n"));
        assert!(!Debian.is_running("ID=fedora\n"));
    }
}
