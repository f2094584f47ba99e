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

/* real: the libc definition of `name`, looked up at the first call. */
#define REAL(fn_t, name)      \
	static fn_t real;     \
	if (real == NULL)     \
		real = (fn_t)iocount_next(#name)

/* An entry point of open(2)'s kind: a mode follows the flags only when
 * they create a file. */
#define WRAP_OPEN_MODE(name, fn_t, params, args)        \
	EXPORT int name params                          \
	{                                               \
		va_list ap;                             \
		mode_t mode;                            \
		int fd;                                 \
		REAL(fn_t, name);                       \
		va_start(ap, flags);                    \
		mode = iocount_mode(flags, ap);         \
		va_end(ap);                             \
		fd = real args;                         \
		iocount_opened(fd);                     \
		return fd;                              \
	}

/* Any other entry point that opens a file; ok (on its result r) says
 * whether it did. */
#define WRAP_OPEN(ret_t, name, fn_t, params, args, ok)  \
	EXPORT ret_t name params                        \
	{                                               \
		ret_t r;                                \
		REAL(fn_t, name);                       \
		r = real args;                          \
		iocount_opened((ok) ? 0 : -1);          \
		return r;                               \
	}

/* Every call counts, failed or not: each one asked the disk to wait. */
#define WRAP_SYNC(name)                 \
	EXPORT int name(int fd)         \
	{                               \
		REAL(sync_fn, name);    \
		iocount_synced();       \
		return real(fd);        \
	}

WRAP_OPEN_MODE(open, open_fn, (const char *path, int flags, ...), (path, flags, mode))
WRAP_OPEN_MODE(open64, open_fn, (const char *path, int flags, ...), (path, flags, mode))
WRAP_OPEN_MODE(openat, openat_fn, (int dirfd, const char *path, int flags, ...),
               (dirfd, path, flags, mode))
WRAP_OPEN_MODE(openat64, openat_fn, (int dirfd, const char *path, int flags, ...),
               (dirfd, path, flags, mode))
/* What _FORTIFY_SOURCE builds call instead of open() and openat(). */
WRAP_OPEN(int, __open_2, open2_fn, (const char *path, int flags), (path, flags), r >= 0)
WRAP_OPEN(int, __open64_2, open2_fn, (const char *path, int flags), (path, flags), r >= 0)
WRAP_OPEN(int, __openat_2, openat2_fn, (int dirfd, const char *path, int flags),
          (dirfd, path, flags), r >= 0)
WRAP_OPEN(int, __openat64_2, openat2_fn, (int dirfd, const char *path, int flags),
          (dirfd, path, flags), r >= 0)
WRAP_OPEN(int, creat, creat_fn, (const char *path, mode_t mode), (path, mode), r >= 0)
WRAP_OPEN(int, creat64, creat_fn, (const char *path, mode_t mode), (path, mode), r >= 0)
WRAP_OPEN(FILE *, fopen, fopen_fn, (const char *path, const char *mode), (path, mode),
          r != NULL)
WRAP_OPEN(FILE *, fopen64, fopen_fn, (const char *path, const char *mode), (path, mode),
          r != NULL)
WRAP_OPEN(DIR *, opendir, opendir_fn, (const char *path), (path), r != NULL)
WRAP_SYNC(fsync)
WRAP_SYNC(fdatasync)
