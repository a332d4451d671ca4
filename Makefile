# Convenience targets; the commands themselves are in scripts/.
.PHONY: demo test bench install

# Install what is missing, build the demo kernel (cached), build a livepatch with klpforge,
# boot it under qemu and show the behaviour before and after loading the module.
demo:
	scripts/demo

# Everything the CI runs: formatting, lints, unit/integration tests, the end-to-end test.
test:
	scripts/test

# The per-pair comparison with the peer and the build benchmark run klpforge as installed
# (scripts/install: statically linked where it can be), here into target/bench-install.
bench:
	scripts/install --prefix target/bench-install >/dev/null
	KLPFORGE_BENCH_BIN=$(CURDIR)/target/bench-install/bin/klpforge \
		cargo bench -p klpforge --bench diff_scale --bench diff_engine --bench elf_engine
	KLPFORGE=$(CURDIR)/target/bench-install/bin/klpforge scripts/bench-build

# Build klpforge for release and install it as $(PREFIX)/bin/klpforge (statically linked where
# the C library allows; see scripts/install).
PREFIX ?= $(HOME)/.local
install:
	scripts/install --prefix $(PREFIX)
