/* guard.c — see keel_guard.h. Only async-signal-safe calls in the handlers (write, _exit,
 * sigaction); the watchdog is an ordinary thread polling two atomics. */
#define _GNU_SOURCE
#include "keel_guard.h"
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

static _Atomic(const char *) current_label = NULL;
static _Atomic long long call_start_ns = 0;
static _Atomic long long stop_at_ns = 0;
static _Atomic int stop_count = 0;
static _Atomic long long timeout_ns = 0;
static _Atomic(const char *) hint = NULL;
static _Atomic int installed = 0;
static struct sigaction previous[65];

static long long now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static void put(const char *s) {
    if (!s) return;
    size_t n = strlen(s);
    while (n > 0) {
        ssize_t w = write(2, s, n);
        if (w <= 0) return;
        s += w; n -= (size_t)w;
    }
}

static void put_int(long long v) {
    char buf[32];
    int i = 31;
    buf[i] = 0;
    int neg = v < 0;
    unsigned long long u = neg ? (unsigned long long)(-v) : (unsigned long long)v;
    do { buf[--i] = (char)('0' + u % 10); u /= 10; } while (u && i > 1);
    if (neg) buf[--i] = '-';
    put(buf + i);
}

static const char *signal_name(int sig) {
    switch (sig) {
    case SIGSEGV: return "SIGSEGV (invalid memory access)";
    case SIGBUS: return "SIGBUS (bus error)";
    case SIGFPE: return "SIGFPE (arithmetic fault)";
    case SIGILL: return "SIGILL (illegal instruction or trap)";
    case SIGABRT: return "SIGABRT (abort)";
    default: return "a signal";
    }
}

static void finish_line(void) {
    const char *h = atomic_load(&hint);
    put("; what is on disk is intact");
    if (h) { put(" ("); put(h); put(")"); }
    put("\n");
}

static void on_fault(int sig, siginfo_t *info, void *uc) {
    (void)info; (void)uc;
    const char *label = atomic_load(&current_label);
    if (label) {
        put("keel: ");
        put(label);
        put(" crashed with ");
        put(signal_name(sig));
        finish_line();
        _exit(128 + sig);
    }
    /* not plugin code: the previous handler takes it (the fault repeats on return) */
    sigaction(sig, &previous[sig], NULL);
}

static void on_stop(int sig) {
    int n = atomic_fetch_add(&stop_count, 1) + 1;
    if (n >= 2) {
        put("keel: second ");
        put(sig == SIGINT ? "SIGINT" : "SIGTERM");
        put(": exiting at once");
        finish_line();
        _exit(130);
    }
    atomic_store(&stop_at_ns, now_ns());
}

static void *watchdog(void *arg) {
    (void)arg;
    for (;;) {
        struct timespec t = {0, 100 * 1000000L};
        nanosleep(&t, NULL);
        const char *label = atomic_load(&current_label);
        if (!label) continue;
        long long start = atomic_load(&call_start_ns), now = now_ns();
        long long limit = atomic_load(&timeout_ns);
        if (limit > 0 && now - start > limit) {
            put("keel: ");
            put(label);
            put(" has run for ");
            put_int((now - start) / 1000000000LL);
            put(" s, more than plugins.timeout (");
            put_int(limit / 1000000000LL);
            put(" s): stopped");
            finish_line();
            _exit(124);
        }
        /* a stop was asked for, and this call has run 3 s since the later of the request and
           its own start (a call that began after the signal gets its 3 s too) */
        long long stop = atomic_load(&stop_at_ns);
        long long since = stop > start ? stop : start;
        if (atomic_load(&stop_count) > 0 && stop > 0 && now - since > 3000000000LL) {
            put("keel: stopped by a signal while ");
            put(label);
            put(" did not return");
            finish_line();
            _exit(130);
        }
    }
    return NULL;
}

void keel_guard_install(void) {
    int expected = 0;
    if (!atomic_compare_exchange_strong(&installed, &expected, 1)) return;
    /* an alternate stack, so a plugin's stack overflow still reaches the handler */
    static char altstack[1 << 16];
    stack_t ss = {.ss_sp = altstack, .ss_size = sizeof altstack, .ss_flags = 0};
    sigaltstack(&ss, NULL);
    int faults[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT};
    for (unsigned i = 0; i < sizeof faults / sizeof faults[0]; i++) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_sigaction = on_fault;
        sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER;
        sigemptyset(&sa.sa_mask);
        sigaction(faults[i], &sa, &previous[faults[i]]);
    }
    pthread_t t;
    if (pthread_create(&t, NULL, watchdog, NULL) == 0) pthread_detach(t);
}

void keel_guard_install_stop_handlers(void) {
    struct sigaction st;
    memset(&st, 0, sizeof st);
    st.sa_handler = on_stop;
    sigemptyset(&st.sa_mask);
    sigaction(SIGINT, &st, NULL);
    sigaction(SIGTERM, &st, NULL);
}

void keel_guard_set_timeout(double seconds) {
    atomic_store(&timeout_ns, seconds > 0 ? (long long)(seconds * 1e9) : 0);
}

void keel_guard_enter(const char *label) {
    atomic_store(&call_start_ns, now_ns());
    atomic_store(&current_label, label);
}

void keel_guard_leave(void) { atomic_store(&current_label, NULL); }

int keel_guard_stop_requested(void) { return atomic_load(&stop_count) > 0; }

void keel_guard_request_stop(void) {
    atomic_fetch_add(&stop_count, 1);
    atomic_store(&stop_at_ns, now_ns());
}

void keel_guard_set_hint(const char *h) { atomic_store(&hint, h); }

void keel_guard_die_with_parent(void) {
#ifdef __linux__
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() == 1) _exit(1);
#endif
}
