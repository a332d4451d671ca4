//! Symbol names as the compiler varies them, reduced to what stays stable across builds.
//!
//! GCC and Clang decorate local names with counters that change whenever anything else in the
//! translation unit changes: `count.3` for a function-scope static, `foo.constprop.0`,
//! `foo.isra.2`, `foo.part.1`, `foo.cold.7`, `__UNIQUE_ID_ddebug_123`, and Clang's promoted
//! `foo.llvm.123456789`. The *stable* name drops the counters (and the `.llvm.` suffix)
//! and keeps the rest, so `foo.constprop.0` and `foo.constprop.1` compare equal but
//! `foo.constprop.0` and `foo` do not.

use std::borrow::Cow;

/// The stable form of `name`.
pub fn stable_name(name: &str) -> Cow<'_, str> {
    let name = match name.find(".llvm.") {
        Some(pos) => &name[..pos],
        None => name,
    };
    let numbered = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
    if !name.split('.').skip(1).any(numbered) && !name.contains("__UNIQUE_ID_") {
        return Cow::Borrowed(name);
    }
    let mut out = String::with_capacity(name.len());
    for (i, part) in name.split('.').enumerate() {
        if i > 0 && numbered(part) {
            continue;
        }
        if i > 0 {
            out.push('.');
        }
        out.push_str(part);
    }
    if out.contains("__UNIQUE_ID_") {
        let trimmed = out.trim_end_matches(|c: char| c.is_ascii_digit() || c == '_');
        out.truncate(trimmed.len());
    }
    Cow::Owned(out)
}

/// The part of a name before a `.cold` suffix, if `name` is a cold split-off
/// (`foo.cold`, `foo.cold.12`, `foo.isra.0.cold`).
pub fn cold_parent(name: &str) -> Option<&str> {
    let pos = name.rfind(".cold")?;
    let rest = &name[pos + ".cold".len()..];
    if rest.is_empty() || (rest.starts_with('.') && rest[1..].bytes().all(|b| b.is_ascii_digit())) {
        Some(&name[..pos])
    } else {
        None
    }
}

/// The variable name of a function-scope static: `count` for GCC's `count.3`, and for Clang's
/// `func.count` or `func.count.3` the last non-numeric component.
pub fn static_local_base(name: &str) -> &str {
    let mut parts = name
        .rsplit('.')
        .filter(|p| !p.bytes().all(|b| b.is_ascii_digit()));
    let last = parts.next().unwrap_or(name);
    if name.starts_with(last) {
        // GCC style: `count.3`.
        name.split('.').next().unwrap_or(name)
    } else {
        last
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_dropped() {
        assert_eq!(stable_name("foo.constprop.0"), "foo.constprop");
        assert_eq!(stable_name("foo.isra.12.cold.3"), "foo.isra.cold");
        assert_eq!(stable_name("count.1234"), "count");
        assert_eq!(stable_name("__already_done.12"), "__already_done");
        assert_eq!(stable_name("plain"), "plain");
        assert_eq!(stable_name("foo.llvm.1234567"), "foo");
        assert_eq!(stable_name("__UNIQUE_ID_ddebug_123"), "__UNIQUE_ID_ddebug");
        assert_eq!(stable_name("__UNIQUE_ID_ddebug123"), "__UNIQUE_ID_ddebug");
        assert_eq!(
            stable_name("__UNIQUE_ID_addressable___UNIQUE_ID_x_694_695"),
            "__UNIQUE_ID_addressable___UNIQUE_ID_x"
        );
        // Digits inside a component stay.
        assert_eq!(stable_name("ipv6_route2"), "ipv6_route2");
        assert_eq!(stable_name("CSWTCH.55"), "CSWTCH");
    }

    #[test]
    fn cold_parents() {
        assert_eq!(cold_parent("foo.cold"), Some("foo"));
        assert_eq!(cold_parent("foo.cold.12"), Some("foo"));
        assert_eq!(cold_parent("foo.isra.0.cold.1"), Some("foo.isra.0"));
        assert_eq!(cold_parent("foo.coldness"), None);
        assert_eq!(cold_parent("foo"), None);
    }

    #[test]
    fn static_local_bases() {
        assert_eq!(static_local_base("count.3"), "count");
        assert_eq!(static_local_base("__key.12"), "__key");
        assert_eq!(
            static_local_base("init_srcu_struct_fields.__key.1"),
            "__key"
        );
        assert_eq!(static_local_base("func.count"), "count");
    }
}
