//! `Module.symvers`: which symbols are exported, and by which binary.
//!
//! Each line is `CRC<TAB>SYMBOL<TAB>MODULE<TAB>EXPORT_TYPE[<TAB>NAMESPACE]`. `MODULE` is
//! `vmlinux` or a module path (`fs/xfs/xfs`), normalised here to the runtime module name
//! (`xfs`: basename, `-` turned into `_`).

use crate::HashMap;

/// One exported symbol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Export {
    /// `vmlinux` or the runtime module name.
    pub owner: String,
    /// The symbol namespace, if any.
    pub namespace: Option<String>,
}

/// The exports of a kernel build.
#[derive(Debug, Clone, Default)]
pub struct Symvers {
    exports: HashMap<String, Export>,
    /// Without a Module.symvers every undefined global counts as exported by vmlinux.
    assume_vmlinux: bool,
}

/// Normalise a module path to the name the kernel uses at runtime.
pub fn module_name(path: &str) -> String {
    let base = path.rsplit('/').next().unwrap_or(path);
    let base = base.strip_suffix(".ko").unwrap_or(base);
    base.replace('-', "_")
}

impl Symvers {
    /// The stand-in used without a Module.symvers: every global is a vmlinux export.
    pub fn assume_all_vmlinux() -> Symvers {
        Symvers {
            exports: HashMap::default(),
            assume_vmlinux: true,
        }
    }

    /// Parse the text of a Module.symvers file. Errors name the line.
    pub fn parse(text: &str) -> Result<Symvers, String> {
        let mut exports = HashMap::default();
        for (n, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let fields: Vec<&str> = line.split('\t').collect();
            if fields.len() < 4 || fields[1].is_empty() || fields[2].is_empty() {
                return Err(format!(
                    "line {}: expected CRC, symbol, module and export type separated by tabs",
                    n + 1
                ));
            }
            exports.insert(
                fields[1].to_string(),
                Export {
                    owner: module_name(fields[2]),
                    namespace: fields
                        .get(4)
                        .filter(|s| !s.is_empty())
                        .map(|s| s.to_string()),
                },
            );
        }
        Ok(Symvers {
            exports,
            assume_vmlinux: false,
        })
    }

    /// Exports listed by name, all owned by `owner` (for example the `__ksymtab_<name>`
    /// symbols of a vmlinux when no Module.symvers is at hand).
    pub fn from_names<I: IntoIterator<Item = String>>(names: I, owner: &str) -> Symvers {
        Symvers {
            exports: names
                .into_iter()
                .map(|n| {
                    (
                        n,
                        Export {
                            owner: owner.to_string(),
                            namespace: None,
                        },
                    )
                })
                .collect(),
            assume_vmlinux: false,
        }
    }

    /// The export of `name`, if it is exported.
    pub fn lookup(&self, name: &str) -> Option<Export> {
        if self.assume_vmlinux {
            return Some(Export {
                owner: "vmlinux".into(),
                namespace: None,
            });
        }
        self.exports.get(name).cloned()
    }

    /// Whether lookups are real (a Module.symvers was given).
    pub fn is_real(&self) -> bool {
        !self.assume_vmlinux
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_normalises() {
        let s = Symvers::parse(
            "0x1234\tprintk\tvmlinux\tEXPORT_SYMBOL\t\n0x1\txfs_foo\tfs/xfs/xfs-mod\tEXPORT_SYMBOL_GPL\tXFS\n",
        )
        .unwrap();
        assert_eq!(s.lookup("printk").unwrap().owner, "vmlinux");
        let x = s.lookup("xfs_foo").unwrap();
        assert_eq!(
            (x.owner.as_str(), x.namespace.as_deref()),
            ("xfs_mod", Some("XFS"))
        );
        assert!(s.lookup("nope").is_none());
        assert!(Symvers::parse("garbage line\n")
            .unwrap_err()
            .contains("line 1"));
        assert_eq!(
            Symvers::assume_all_vmlinux().lookup("x").unwrap().owner,
            "vmlinux"
        );
    }
}
