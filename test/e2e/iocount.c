/*
 * An LD_PRELOAD library for `make bench-e2e`: counts the files a process
 * opens and the fsync/fdatasync calls it makes, and nothing else. The
 * e2e client reads the two counters through e2e_iocount_read(), a weak
 * symbol there, around the messages it measures.
 *
 * Every libc entry point that opens a file by name is wrapped (the large
 * file and fortified variants too: which one a library calls depends on
 * how it was built), as are fopen and opendir, whose own opens stay
 * inside libc where no wrapper sees them. Sockets and pipes are not
 * file opens and are not counted.
 *
 *   cc -shared -fPIC -O2 test/e2e/iocount.c -o iocount.so
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#define EXPORT __attribute__((visibility("default")))

static unsigned long long iocount_opens;
static unsigned long long iocount_syncs;

EXPORT void e2e_iocount_read(unsigned long long *opens, unsigned long long *syncs)
{
	*opens = __atomic_load_n(&iocount_opens, __ATOMIC_RELAXED);
	*syncs = __atomic_load_n(&iocount_syncs, __ATOMIC_RELAXED);
}

static void iocount_opened(long fd_or_ok)
{
	/* Only opens that succeeded: a failed one touched no file. */
	if (fd_or_ok >= 0)
		__atomic_add_fetch(&iocount_opens, 1, __ATOMIC_RELAXED);
}

static void iocount_synced(void)
{
	__atomic_add_fetch(&iocount_syncs, 1, __ATOMIC_RELAXED);
}

/* The definition of `name` that this library hides (libc's). */
static void *iocount_next(const char *name)
{
	return dlsym(RTLD_NEXT, name);
}

/* open(2) takes a mode only with O_CREAT or O_TMPFILE. */
static mode_t iocount_mode(int flags, va_list ap)
{
	if (flags & (O_CREAT | __O_TMPFILE))
		return (mode_t)va_arg(ap, int);
	return 0;
}

typedef int (*open_fn)(const char *, int, ...);
typedef int (*openat_fn)(int, const char *, int, ...);
typedef int (*open2_fn)(const char *, int);
typedef int (*openat2_fn)(int, const char *, int);
typedef int (*creat_fn)(const char *, mode_t);
typedef FILE *(*fopen_fn)(const char *, const char *);
typedef DIR *(*opendir_fn)(const char *);
typedef int (*sync_fn)(int);

EXPORT int open(const char *path, int flags, ...)
{
	va_list ap;
	mode_t mode;
	int fd;
	static open_fn real_open;

	if (real_open == NULL)
		real_open = (open_fn)iocount_next("open");
	va_start(ap, flags);
	mode = iocount_mode(flags, ap);
	va_end(ap);
	fd = real_open(path, flags, mode);
	iocount_opened(fd);
	return fd;
}

EXPORT int open64(const char *path, int flags, ...)
{
	va_list ap;
	mode_t mode;
	int fd;
	static open_fn real_open64;

	if (real_open64 == NULL)
		real_open64 = (open_fn)iocount_next("open64");
	va_start(ap, flags);
	mode = iocount_mode(flags, ap);
	va_end(ap);
	fd = real_open64(path, flags, mode);
	iocount_opened(fd);
	return fd;
}

EXPORT int openat(int dirfd, const char *path, int flags, ...)
{
	va_list ap;
	mode_t mode;
	int fd;
	static openat_fn real_openat;

	if (real_openat == NULL)
		real_openat = (openat_fn)iocount_next("openat");
	va_start(ap, flags);
	mode = iocount_mode(flags, ap);
	va_end(ap);
	fd = real_openat(dirfd, path, flags, mode);
	iocount_opened(fd);
	return fd;
}

EXPORT int openat64(int dirfd, const char *path, int flags, ...)
{
	va_list ap;
	mode_t mode;
	int fd;
	static openat_fn real_openat64;

	if (real_openat64 == NULL)
		real_openat64 = (openat_fn)iocount_next("openat64");
	va_start(ap, flags);
	mode = iocount_mode(flags, ap);
	va_end(ap);
	fd = real_openat64(dirfd, path, flags, mode);
	iocount_opened(fd);
	return fd;
}

/* What _FORTIFY_SOURCE builds call instead of open() and openat(). */
EXPORT int __open_2(const char *path, int flags)
{
	int fd;
	static open2_fn real___open_2;

	if (real___open_2 == NULL)
		real___open_2 = (open2_fn)iocount_next("__open_2");
	fd = real___open_2(path, flags);
	iocount_opened(fd);
	return fd;
}

EXPORT int __open64_2(const char *path, int flags)
{
	int fd;
	static open2_fn real___open64_2;

	if (real___open64_2 == NULL)
		real___open64_2 = (open2_fn)iocount_next("__open64_2");
	fd = real___open64_2(path, flags);
	iocount_opened(fd);
	return fd;
}

EXPORT int __openat_2(int dirfd, const char *path, int flags)
{
	int fd;
	static openat2_fn real___openat_2;

	if (real___openat_2 == NULL)
		real___openat_2 = (openat2_fn)iocount_next("__openat_2");
	fd = real___openat_2(dirfd, path, flags);
	iocount_opened(fd);
	return fd;
}

EXPORT int __openat64_2(int dirfd, const char *path, int flags)
{
	int fd;
	static openat2_fn real___openat64_2;

	if (real___openat64_2 == NULL)
		real___openat64_2 = (openat2_fn)iocount_next("__openat64_2");
	fd = real___openat64_2(dirfd, path, flags);
	iocount_opened(fd);
	return fd;
}

EXPORT int creat(const char *path, mode_t mode)
{
	int fd;
	static creat_fn real_creat;

	if (real_creat == NULL)
		real_creat = (creat_fn)iocount_next("creat");
	fd = real_creat(path, mode);
	iocount_opened(fd);
	return fd;
}

EXPORT int creat64(const char *path, mode_t mode)
{
	int fd;
	static creat_fn real_creat64;

	if (real_creat64 == NULL)
		real_creat64 = (creat_fn)iocount_next("creat64");
	fd = real_creat64(path, mode);
	iocount_opened(fd);
	return fd;
}

EXPORT FILE *fopen(const char *path, const char *mode)
{
	FILE *f;
	static fopen_fn real_fopen;

	if (real_fopen == NULL)
		real_fopen = (fopen_fn)iocount_next("fopen");
	f = real_fopen(path, mode);
	iocount_opened(f != NULL ? 0 : -1);
	return f;
}

EXPORT FILE *fopen64(const char *path, const char *mode)
{
	FILE *f;
	static fopen_fn real_fopen64;

	if (real_fopen64 == NULL)
		real_fopen64 = (fopen_fn)iocount_next("fopen64");
	f = real_fopen64(path, mode);
	iocount_opened(f != NULL ? 0 : -1);
	return f;
}

EXPORT DIR *opendir(const char *path)
{
	DIR *d;
	static opendir_fn real_opendir;

	if (real_opendir == NULL)
		real_opendir = (opendir_fn)iocount_next("opendir");
	d = real_opendir(path);
	iocount_opened(d != NULL ? 0 : -1);
	return d;
}

/* Every call counts, failed or not: each one asked the disk to wait. */
EXPORT int fsync(int fd)
{
	static sync_fn real_fsync;

	if (real_fsync == NULL)
		real_fsync = (sync_fn)iocount_next("fsync");
	iocount_synced();
	return real_fsync(fd);
}

EXPORT int fdatasync(int fd)
{
	static sync_fn real_fdatasync;

	if (real_fdatasync == NULL)
		real_fdatasync = (sync_fn)iocount_next("fdatasync");
	iocount_synced();
	return real_fdatasync(fd);
}
