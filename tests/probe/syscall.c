/*
 * The seccomp tests' probe: makes each system call it is given as NR or NR,A0,A1,A2 (arguments
 * not given are zero), and prints "NR ret VALUE" or "NR errno E" for each, so that a test sees
 * what a filter did to what busybox cannot reach: a number above the profile, a call of a compat
 * ABI, a 64-bit argument.
 *
 * Built static against libc for a native ABI. Built with -DFREESTANDING (no libc, no start
 * files) for a compat ABI that Debian ships no libc for (s390's 31 bits), and for i386 and arm
 * alike: it then reads its arguments from /proc/self/cmdline, since a C _start cannot find them
 * on the stack portably.
 */
#ifdef FREESTANDING

/* read, write, open and exit have these numbers on i386, arm EABI and s390 alike. */
enum { NR_EXIT = 1, NR_READ = 3, NR_WRITE = 4, NR_OPEN = 5 };

static long sys(long nr, long a, long b, long c)
{
#if defined(__i386__)
	long r;
	__asm__ volatile("int $0x80" : "=a"(r) : "0"(nr), "b"(a), "c"(b), "d"(c) : "memory");
	return r;
#elif defined(__arm__)
	register long r7 __asm__("r7") = nr;
	register long r0 __asm__("r0") = a;
	register long r1 __asm__("r1") = b;
	register long r2 __asm__("r2") = c;
	__asm__ volatile("svc 0" : "+r"(r0) : "r"(r7), "r"(r1), "r"(r2) : "memory");
	return r0;
#elif defined(__s390__)
	/* svc 0 takes the number from r1, which reaches every number. */
	register long r1 __asm__("r1") = nr;
	register long r2 __asm__("r2") = a;
	register long r3 __asm__("r3") = b;
	register long r4 __asm__("r4") = c;
	__asm__ volatile("svc 0" : "+r"(r2) : "r"(r1), "r"(r3), "r"(r4) : "memory");
	return r2;
#else
#error "no freestanding system call for this ABI"
#endif
}

#else

#include <errno.h>
#include <unistd.h>

#define NR_WRITE SYS_write
#include <sys/syscall.h>

static long sys(long nr, long a, long b, long c)
{
	long r = syscall(nr, a, b, c, 0L, 0L, 0L);
	return r == -1 ? -errno : r;
}

#endif

/* write(2) of a whole buffer: stdout is a pipe, one write carries it. */
static void say(const char *s, unsigned long n)
{
	sys(NR_WRITE, 1, (long)s, (long)n);
}

static char *decimal(char *p, unsigned long v)
{
	char tmp[24];
	int n = 0;
	do
		tmp[n++] = (char)('0' + v % 10);
	while ((v /= 10) != 0);
	while (n > 0)
		*p++ = tmp[--n];
	return p;
}

/* "0x" hexadecimal or decimal, up to a comma or the end; the tests give numbers only. */
static long number(const char **s)
{
	unsigned long v = 0;
	const char *p = *s;
	if (p[0] == '0' && p[1] == 'x') {
		for (p += 2; *p && *p != ','; p++)
			v = v * 16 + (unsigned long)(*p <= '9' ? *p - '0' : (*p | 32) - 'a' + 10);
	} else {
		for (; *p && *p != ','; p++)
			v = v * 10 + (unsigned long)(*p - '0');
	}
	*s = *p ? p + 1 : p;
	return (long)v;
}

static int probe(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		/* NR or NR,A0,A1,A2: the arguments not given are zero. */
		const char *a = argv[i];
		long nr = number(&a), x[3] = {0, 0, 0};
		for (int k = 0; k < 3 && *a; k++)
			x[k] = number(&a);
		long r = sys(nr, x[0], x[1], x[2]);
		char line[80], *p = line;
		p = decimal(p, (unsigned long)nr);
		if (r < 0 && r > -4096) {
			for (const char *w = " errno "; *w; w++)
				*p++ = *w;
			p = decimal(p, (unsigned long)-r);
		} else {
			for (const char *w = " ret "; *w; w++)
				*p++ = *w;
			p = decimal(p, (unsigned long)r);
		}
		*p++ = '\n';
		say(line, (unsigned long)(p - line));
	}
	return 0;
}

#ifdef FREESTANDING

void _start(void)
{
	static char buf[4096];
	char *argv[64];
	int argc = 0;
	long fd = sys(NR_OPEN, (long)"/proc/self/cmdline", 0, 0);
	long n = fd < 0 ? 0 : sys(NR_READ, fd, (long)buf, sizeof buf - 1);
	for (long i = 0; i < n && argc < 64; i++)
		if (i == 0 || buf[i - 1] == 0)
			argv[argc++] = buf + i;
	sys(NR_EXIT, fd < 0 || n <= 0 ? 2 : probe(argc, argv), 0, 0);
	for (;;)
		;
}

#else

int main(int argc, char **argv)
{
	return probe(argc, argv);
}

#endif
