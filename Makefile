# Convenience targets; the commands themselves are in scripts/.
.PHONY: demo test bench

# Install what is missing, build the demo kernel (cached), build a livepatch with klpforge,
# boot it under qemu and show the behaviour before and after loading the module.
demo:
	scripts/demo

# Everything the CI runs: formatting, lints, unit/integration tests, the end-to-end test.
test:
	scripts/test

bench:
	cargo bench -p klpforge --bench diff_scale --bench diff_engine --bench elf_engine
	scripts/bench-build
