/*
 * LD_PRELOAD library for running Debian's kexec as an oracle: nothing is ever loaded.
 *
 * It replaces glibc's syscall() for kexec_load and kexec_file_load, getrandom() and
 * reboot(). Every call is recorded into the folder named by $PYKEXEC_SHIM_OUT:
 *
 *   calls.txt           one line per event, "key=value" words (parsed by tests/bed/oracle.py)
 *   cN-segM.bin         kexec_load: the bytes of segment M of call N (bufsz bytes)
 *   cN-kernel.bin       kexec_file_load: the contents of the kernel fd
 *   cN-initrd.bin       kexec_file_load: the contents of the initrd fd (if fd >= 0)
 *   cN-cmdline.bin      kexec_file_load: cmdline_len bytes of the command line
 *
 * The kexec calls "succeed" (return 0) so kexec finishes its normal path. reboot() always
 * fails with EPERM, so even a mistaken --exec cannot restart the host. getrandom() returns a
 * fixed counter pattern so two runs produce byte-identical segments (kexec puts 32 random
 * bytes into a SETUP_RNG_SEED setup_data, which also changes purgatory's SHA-256 digest).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

#ifndef SYS_kexec_file_load
#  ifdef __x86_64__
#    define SYS_kexec_file_load 320
#  endif
#endif

/* Same layout as the kernel's struct kexec_segment for the build's word size. */
struct shim_kexec_segment {
    const void *buf;
    size_t bufsz;
    const void *mem;
    size_t memsz;
};

static int call_index;          /* numbers the recorded kexec calls: c0, c1, ... */
static unsigned random_counter; /* advances over every getrandom() byte handed out */

static const char *out_dir(void)
{
    const char *dir = getenv("PYKEXEC_SHIM_OUT");
    return (dir && *dir) ? dir : NULL;
}

/* Appends one line to calls.txt. Raw write(2) only: we may be inside libc internals. */
static void record_line(const char *fmt, ...)
{
    const char *dir = out_dir();
    char path[4096], line[1024];
    va_list ap;
    int fd, n;

    if (!dir)
        return;
    snprintf(path, sizeof(path), "%s/calls.txt", dir);
    va_start(ap, fmt);
    n = vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if (n >= (int)sizeof(line))
        n = sizeof(line) - 1;
    fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0)
        return;
    if (write(fd, line, n) != n) {
        /* nothing sensible to do; the test will see a short manifest */
    }
    close(fd);
}

static int write_all(int fd, const unsigned char *p, size_t len)
{
    while (len) {
        ssize_t w = write(fd, p, len);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

static void save_bytes(const char *name, const void *buf, size_t len)
{
    const char *dir = out_dir();
    char path[4096];
    int fd;

    if (!dir)
        return;
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return;
    if (buf && len)
        write_all(fd, buf, len);
    close(fd);
}

/* Copies everything readable from `src_fd` (from offset 0, without moving its position;
 * /proc is replaced in the oracle's namespace, so /proc/self/fd cannot be used). */
static long long save_fd(const char *name, int src_fd)
{
    const char *dir = out_dir();
    char path[4096];
    unsigned char chunk[65536];
    long long total = 0;
    int fd;

    if (!dir)
        return -1;
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return -1;
    for (;;) {
        ssize_t r = pread(src_fd, chunk, sizeof(chunk), (off_t)total);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        if (write_all(fd, chunk, (size_t)r) < 0)
            break;
        total += r;
    }
    close(fd);
    return total;
}

static long fake_kexec_load(unsigned long entry, unsigned long nr_segments,
                            const struct shim_kexec_segment *segments, unsigned long flags)
{
    int n = call_index++;
    unsigned long i;

    record_line("call=%d name=kexec_load entry=0x%lx nr_segments=%lu flags=0x%lx\n",
                n, entry, nr_segments, flags);
    for (i = 0; segments && i < nr_segments; i++) {
        const struct shim_kexec_segment *s = &segments[i];
        char name[64];

        snprintf(name, sizeof(name), "c%d-seg%lu.bin", n, i);
        save_bytes(name, s->buf, s->buf ? s->bufsz : 0);
        record_line("call=%d segment=%lu file=%s bufsz=0x%lx mem=0x%lx memsz=0x%lx\n",
                    n, i, name, (unsigned long)s->bufsz, (unsigned long)(uintptr_t)s->mem,
                    (unsigned long)s->memsz);
    }
    return 0;
}

static long fake_kexec_file_load(int kernel_fd, int initrd_fd, unsigned long cmdline_len,
                                 const char *cmdline, unsigned long flags)
{
    int n = call_index++;
    char name[64];

    record_line("call=%d name=kexec_file_load kernel_fd=%d initrd_fd=%d cmdline_len=%lu"
                " flags=0x%lx\n", n, kernel_fd, initrd_fd, cmdline_len, flags);
    if (kernel_fd >= 0) {
        long long size;
        snprintf(name, sizeof(name), "c%d-kernel.bin", n);
        size = save_fd(name, kernel_fd);
        record_line("call=%d part=kernel file=%s size=%lld\n", n, name, size);
    }
    if (initrd_fd >= 0) {
        long long size;
        snprintf(name, sizeof(name), "c%d-initrd.bin", n);
        size = save_fd(name, initrd_fd);
        record_line("call=%d part=initrd file=%s size=%lld\n", n, name, size);
    }
    if (cmdline && cmdline_len) {
        snprintf(name, sizeof(name), "c%d-cmdline.bin", n);
        save_bytes(name, cmdline, cmdline_len);
        record_line("call=%d part=cmdline file=%s size=%lu\n", n, name, cmdline_len);
    }
    return 0;
}

static void fill_random(void *buf, size_t len)
{
    unsigned char *p = buf;
    size_t i;

    for (i = 0; i < len; i++)
        p[i] = (unsigned char)(0x5a ^ random_counter++);
}

static long fake_getrandom(void *buf, size_t len, unsigned int flags)
{
    fill_random(buf, len);
    record_line("event=getrandom len=%lu flags=0x%x\n", (unsigned long)len, flags);
    return (long)len;
}

typedef long (*syscall_fn)(long, long, long, long, long, long, long);

long syscall(long number, ...)
{
    static syscall_fn real_syscall;
    long a[6];
    va_list ap;
    int i;

    /* Reading six words is what glibc's own syscall() does; extra ones are ignored. */
    va_start(ap, number);
    for (i = 0; i < 6; i++)
        a[i] = va_arg(ap, long);
    va_end(ap);

    switch (number) {
#ifdef SYS_kexec_load
    case SYS_kexec_load:
        return fake_kexec_load((unsigned long)a[0], (unsigned long)a[1],
                               (const struct shim_kexec_segment *)a[2], (unsigned long)a[3]);
#endif
#ifdef SYS_kexec_file_load
    case SYS_kexec_file_load:
        return fake_kexec_file_load((int)a[0], (int)a[1], (unsigned long)a[2],
                                    (const char *)a[3], (unsigned long)a[4]);
#endif
#ifdef SYS_getrandom
    case SYS_getrandom:
        return fake_getrandom((void *)a[0], (size_t)a[1], (unsigned int)a[2]);
#endif
#ifdef SYS_reboot
    case SYS_reboot:
        record_line("event=reboot cmd=0x%lx via=syscall\n", (unsigned long)a[2]);
        errno = EPERM;
        return -1;
#endif
    default:
        break;
    }
    if (!real_syscall)
        real_syscall = (syscall_fn)dlsym(RTLD_NEXT, "syscall");
    if (!real_syscall) {
        errno = ENOSYS;
        return -1;
    }
    return real_syscall(number, a[0], a[1], a[2], a[3], a[4], a[5]);
}

ssize_t getrandom(void *buf, size_t buflen, unsigned int flags)
{
    return (ssize_t)fake_getrandom(buf, buflen, flags);
}

int reboot(int cmd)
{
    record_line("event=reboot cmd=0x%x via=reboot\n", (unsigned)cmd);
    errno = EPERM;
    return -1;
}
