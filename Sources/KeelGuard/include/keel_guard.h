/*
 * keel_guard.h — the host's guard around plugin code (C, because signal handlers must be
 * async-signal-safe). A plugin call is bracketed by keel_guard_enter(label) / keel_guard_leave().
 *   - A fault inside a call (SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT, a stack overflow) ends
 *     the process with ONE line naming the plugin, its path, the function and the signal, and
 *     exit status 128 + signal. A fault outside plugin code goes to the handler that was there
 *     before (Swift's backtrace, or the default).
 *   - A watchdog thread ends a call that runs longer than the timeout (exit status 124), and a
 *     call still running 3 s after SIGINT / SIGTERM asked the run to stop (exit status 130).
 *   - SIGINT / SIGTERM set the stop flag (the run checkpoints and stops at the end of the
 *     step); a second one exits at once (status 130).
 * Every exit leaves what is on disk as it was: checkpoints are written atomically.
 */
#ifndef KEEL_GUARD_H
#define KEEL_GUARD_H

/* Install the fault handlers and start the watchdog (idempotent). */
void keel_guard_install(void);
/* Install the SIGINT / SIGTERM handlers (the commands that stop at a step boundary). */
void keel_guard_install_stop_handlers(void);
/* Seconds a single plugin call may run (0 = no limit). */
void keel_guard_set_timeout(double seconds);
/* A plugin call begins / ends. `label` must stay valid for the process's life. */
void keel_guard_enter(const char *label);
void keel_guard_leave(void);
/* 1 once SIGINT or SIGTERM arrived (or keel_guard_request_stop was called). */
int keel_guard_stop_requested(void);
void keel_guard_request_stop(void);
/* Appended to the one-line messages, e.g. "resume with keel train --resume runs/x". */
void keel_guard_set_hint(const char *hint);
/* A child process: die when the parent dies (Linux PR_SET_PDEATHSIG). */
void keel_guard_die_with_parent(void);

#endif
