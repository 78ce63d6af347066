/*
 * sleep: a tiny, statically linked sleep for the image puller's DaemonSet.
 *
 * The init container copies this binary into an emptyDir; every image-holding
 * container then runs `/kip/sleep 720h`.  Those images may be `scratch` images
 * with no shell and no libc, so this program must be a static executable.
 *
 * Usage: sleep DURATION
 *   DURATION is a sequence of <integer><unit> with unit h, m or s
 *   (e.g. 720h, 90m, 1h30m, 2h3m4s, 45s), or a plain integer of seconds (10).
 *
 * It exits 0 promptly on SIGTERM, SIGINT or SIGHUP, also when it runs as PID 1
 * (the kernel does not apply default signal actions to PID 1 of a PID
 * namespace, so the handlers are installed explicitly), and exits 2 with a
 * usage message on missing or malformed input.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Upper bound: 100 years, far beyond any useful caching interval. */
#define MAX_SECONDS ((uint64_t)100 * 366 * 24 * 3600)

static void put(const char *s)
{
    size_t n = strlen(s);
    while (n > 0) {
        ssize_t w = write(STDERR_FILENO, s, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return;
        }
        s += w;
        n -= (size_t)w;
    }
}

static int usage(const char *why, const char *arg)
{
    put("sleep: ");
    put(why);
    if (arg) {
        put(": \"");
        put(arg);
        put("\"");
    }
    put("\nusage: sleep DURATION\n"
        "  DURATION: <n>h, <n>m, <n>s or a combination such as 1h30m or 2h3m4s;\n"
        "            a plain integer is a number of seconds\n");
    return 2;
}

/* Parse DURATION into *out seconds; returns 0 on success, -1 on bad input. */
static int parse_duration(const char *s, uint64_t *out)
{
    uint64_t total = 0;
    int last_unit = 4; /* units must appear in order h(3) > m(2) > s(1) */
    const char *p = s;

    if (*p == '\0')
        return -1;

    /* Plain integer: seconds. */
    {
        const char *q = p;
        while (*q >= '0' && *q <= '9')
            q++;
        if (*q == '\0') {
            uint64_t v = 0;
            for (q = p; *q; q++) {
                v = v * 10 + (uint64_t)(*q - '0');
                if (v > MAX_SECONDS)
                    return -1;
            }
            *out = v;
            return 0;
        }
    }

    while (*p) {
        uint64_t v = 0, mult;
        int digits = 0, unit;
        while (*p >= '0' && *p <= '9') {
            v = v * 10 + (uint64_t)(*p - '0');
            if (v > MAX_SECONDS)
                return -1;
            p++;
            digits++;
        }
        if (digits == 0)
            return -1;
        switch (*p) {
        case 'h': unit = 3; mult = 3600; break;
        case 'm': unit = 2; mult = 60; break;
        case 's': unit = 1; mult = 1; break;
        default: return -1; /* missing or unknown unit */
        }
        if (unit >= last_unit)
            return -1; /* repeated or out of order, e.g. 1m2h or 1h1h */
        last_unit = unit;
        p++;
        total += v * mult;
        if (total > MAX_SECONDS)
            return -1;
    }
    *out = total;
    return 0;
}

static void on_signal(int sig)
{
    (void)sig;
    _exit(0);
}

int main(int argc, char **argv)
{
    uint64_t seconds;
    struct sigaction sa;
    struct timespec ts;

    if (argc != 2)
        return usage(argc < 2 ? "missing DURATION" : "too many arguments", NULL);
    if (parse_duration(argv[1], &seconds) != 0)
        return usage("invalid DURATION", argv[1]);

    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);

    ts.tv_sec = (time_t)seconds;
    ts.tv_nsec = 0;
    /* nanosleep reports the time left when another signal interrupts it. */
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
    return 0;
}
