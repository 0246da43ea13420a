/* LD_PRELOAD shim for tests/test_statscan.py: readdir fails with EIO in any directory
 * named "flaky", as a failing disk would, for the C walk and for os.scandir alike. */
#define _GNU_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static int flaky(DIR *dir) {
    char link[64], target[4096];
    snprintf(link, sizeof link, "/proc/self/fd/%d", dirfd(dir));
    ssize_t n = readlink(link, target, sizeof target - 1);
    if (n <= 0) return 0;
    target[n] = '\0';
    const char *base = strrchr(target, '/');
    return base != NULL && strcmp(base, "/flaky") == 0;
}

struct dirent *readdir(DIR *dir) {
    static struct dirent *(*real)(DIR *);
    if (real == NULL) real = (struct dirent *(*)(DIR *))dlsym(RTLD_NEXT, "readdir");
    if (flaky(dir)) { errno = EIO; return NULL; }
    return real(dir);
}

struct dirent64 *readdir64(DIR *dir) {
    static struct dirent64 *(*real)(DIR *);
    if (real == NULL) real = (struct dirent64 *(*)(DIR *))dlsym(RTLD_NEXT, "readdir64");
    if (flaky(dir)) { errno = EIO; return NULL; }
    return real(dir);
}
