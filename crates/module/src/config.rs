//! A kernel build's configuration (`.config`), read once and asked many times.

use std::collections::HashMap;
use std::path::Path;

/// The `CONFIG_*=value` settings of a `.config` (quotes removed; the first of a repeated key
/// counts, as kconfig's own reader of the file does not repeat them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KernelConfig {
    values: HashMap<String, String>,
}

impl KernelConfig {
    /// The configuration of the kernel build directory `build`; `None` when it has no
    /// readable `.config`.
    pub fn read(build: &Path) -> Option<KernelConfig> {
        std::fs::read_to_string(build.join(".config"))
            .ok()
            .map(|text| KernelConfig::parse(&text))
    }

    /// The settings of `.config` text (`# CONFIG_X is not set` lines set nothing).
    pub fn parse(text: &str) -> KernelConfig {
        let mut values = HashMap::new();
        for line in text.lines() {
            if let Some((key, value)) = line.split_once('=') {
                if !key.starts_with('#') {
                    values
                        .entry(key.to_string())
                        .or_insert_with(|| value.trim_matches('"').to_string());
                }
            }
        }
        KernelConfig { values }
    }

    /// The value of `key` (quotes removed), if set.
    pub fn value(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }

    /// Whether `key` is set to `y`.
    pub fn enabled(&self, key: &str) -> bool {
        self.value(key) == Some("y")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_read_as_kconfig_writes_them() {
        let c = KernelConfig::parse(
            "# comment\nCONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C=\"gcc (Debian) 12\"\nCONFIG_D=m\nCONFIG_A=n\n",
        );
        assert!(c.enabled("CONFIG_A"));
        assert_eq!(c.value("CONFIG_B"), None);
        assert_eq!(c.value("CONFIG_C"), Some("gcc (Debian) 12"));
        assert!(!c.enabled("CONFIG_D"));
        assert_eq!(c.value("CONFIG_D"), Some("m"));
        assert_eq!(c.value("CONFIG"), None);
    }
}
