/*
 * new_client_request_id(): a version 4 UUID string for the client-request-id header.
 *
 * It correlates a request with Graph's logs and guards no secret, so a fast generator seeded
 * from the kernel does: building it in Python (os.urandom or getrandbits plus formatting) cost
 * more than any other step of the Python send path. State is per thread (no lock, no sharing)
 * and is reseeded in a forked child, which would otherwise repeat its parent's ids.
 */
#include "native.h"

#include <stdint.h>
#include <sys/random.h>
#include <time.h>

static _Thread_local struct {
    uint64_t s[2];
    pid_t pid;
    int seeded;
} rng;

static void rng_seed(void)
{
    if (getrandom(rng.s, sizeof(rng.s), 0) != (ssize_t)sizeof(rng.s)) {
        /* No entropy source (seccomp, very old kernel): time and addresses still differ. */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        rng.s[0] = (uint64_t)ts.tv_nsec * 0x9E3779B97F4A7C15u ^ (uint64_t)(uintptr_t)&rng;
        rng.s[1] = (uint64_t)ts.tv_sec ^ ((uint64_t)gs_pid << 32) ^ 0xD1B54A32D192ED03u;
    }
    if ((rng.s[0] | rng.s[1]) == 0)
        rng.s[1] = 1; /* the one state xorshift never leaves */
    rng.pid = gs_pid;
    rng.seeded = 1;
}

/* xorshift128+ */
static uint64_t rng_next(void)
{
    uint64_t s1 = rng.s[0];
    const uint64_t s0 = rng.s[1];
    rng.s[0] = s0;
    s1 ^= s1 << 23;
    rng.s[1] = s1 ^ s0 ^ (s1 >> 17) ^ (s0 >> 26);
    return rng.s[1] + s0;
}

void gs_request_id(char text[GS_REQUEST_ID_LEN])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char b[16];
    uint64_t hi, lo;

    if (!rng.seeded || rng.pid != gs_pid)
        rng_seed();
    hi = rng_next();
    lo = rng_next();
    for (int i = 0; i < 8; i++) {
        b[i] = (unsigned char)(hi >> (56 - 8 * i));
        b[8 + i] = (unsigned char)(lo >> (56 - 8 * i));
    }
    b[6] = (unsigned char)((b[6] & 0x0F) | 0x40); /* version 4 */
    b[8] = (unsigned char)((b[8] & 0x3F) | 0x80); /* RFC 4122 variant */
    for (int i = 0, o = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            text[o++] = '-';
        text[o++] = hex[b[i] >> 4];
        text[o++] = hex[b[i] & 0x0F];
    }
}

PyObject *gs_new_client_request_id(PyObject *module, PyObject *unused)
{
    char text[GS_REQUEST_ID_LEN];
    (void)module, (void)unused;
    gs_request_id(text);
    return PyUnicode_FromStringAndSize(text, sizeof(text));
}
