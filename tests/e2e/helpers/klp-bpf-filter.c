/*
 * klp-bpf-filter: run a classic BPF socket filter in the kernel's BPF interpreter and print
 * how many bytes of a 64-byte datagram it kept.
 *
 * The filter computes 7 % 0x4b4c5046 (an ALU_MOD_K instruction) and returns it as the
 * length to keep: 7 from the unpatched interpreter. The e2e case stock-bpf-interpreter
 * patches ___bpf_prog_run, whose dispatch goes through a table of its own code labels, to
 * give 42 for that divisor. The JIT is switched off first, so that the filter runs in the
 * interpreter (the sysctl exists when the kernel may run without the JIT).
 *
 * A static C program for the e2e VM (busybox has no way to attach a filter).
 */
#include <linux/filter.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int main(void)
{
	struct sock_filter code[] = {
		BPF_STMT(BPF_LD | BPF_IMM, 7),
		BPF_STMT(BPF_ALU | BPF_MOD | BPF_K, 0x4b4c5046),
		BPF_STMT(BPF_RET | BPF_A, 0),
	};
	struct sock_fprog prog = { .len = sizeof(code) / sizeof(code[0]), .filter = code };
	char buf[64];
	int sv[2];
	FILE *jit = fopen("/proc/sys/net/core/bpf_jit_enable", "w");
	ssize_t n;

	if (!jit || fputs("0\n", jit) == EOF || fclose(jit) != 0) {
		perror("klp-bpf-filter: switching the BPF JIT off");
		return 2;
	}
	if (socketpair(AF_UNIX, SOCK_DGRAM, 0, sv) != 0 ||
	    setsockopt(sv[1], SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof(prog)) != 0) {
		perror("klp-bpf-filter: attaching the filter");
		return 2;
	}
	memset(buf, 'k', sizeof(buf));
	if (send(sv[0], buf, sizeof(buf), 0) != (ssize_t)sizeof(buf)) {
		perror("klp-bpf-filter: send");
		return 2;
	}
	n = recv(sv[1], buf, sizeof(buf), 0);
	if (n < 0) {
		perror("klp-bpf-filter: recv");
		return 2;
	}
	printf("%zd\n", n);
	return 0;
}
