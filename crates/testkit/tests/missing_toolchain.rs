//! A toolchain whose gcc is absent or broken is skipped, not an error.
//! (Alone in its test binary because it changes `PATH` for the process.)

use std::os::unix::fs::PermissionsExt;

use klpforge_testkit::{toolchain, ScratchDir};

#[test]
fn absent_and_broken_compilers_are_skipped() {
    let dir = ScratchDir::new("fake-path").unwrap();
    // A "cross compiler" that answers -dumpmachine but cannot compile.
    let fake = dir.join("aarch64-linux-gnu-gcc");
    std::fs::write(
        &fake,
        "#!/bin/sh\nif [ \"$1\" = -dumpmachine ]; then echo aarch64-linux-gnu; exit 0; fi\n\
         echo 'cc1: fatal error: simulated breakage' >&2\nexit 1\n",
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::env::set_var("PATH", dir.path());
    // The skips are what this test checks: CI's KLPFORGE_REQUIRE_ALL must not turn them into
    // failures here.
    std::env::remove_var("KLPFORGE_REQUIRE_ALL");
    assert_eq!(toolchain("aarch64"), None);
    assert_eq!(toolchain("s390x"), None);
    // The result is cached: still None after the fake compiler is gone.
    std::fs::remove_file(&fake).unwrap();
    assert_eq!(toolchain("aarch64"), None);
}
