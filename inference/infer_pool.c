/*
 * infer_pool.c: the compute thread pool (ggml style). infer_pool_run()
 * publishes (fn, arg) under a new generation number; workers run
 * fn(arg, ith, nth) and count themselves done; the caller runs ith 0 and
 * waits for the count. infer_pool_barrier() is a sense-reversing counter
 * barrier.
 *
 * Every wait here (and the step waits of infer_forward, through
 * infer_pool_wait_ge) spins for a short, fixed time (SPIN_NS) and then
 * sleeps on a futex. Spinning alone is disastrous when the machine is
 * oversubscribed: a spinner burns the time slice that the thread it waits
 * for needs, and the scheduler charges that time against this process.
 * A sleeper costs nothing and is woken at once by whoever makes progress.
 */
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "infer_kernels.h"

#define SPIN_NS      30000L  /* spin this long before sleeping (step waits) */
#define IDLE_SPIN_NS 200000L /* workers between runs */

struct infer_pool {
    int n;              /* threads including the caller */
    pthread_t *threads; /* (n - 1) */
    atomic_int gen;     /* bumped by each run; workers sleep on it */
    atomic_int gen_sleepers;
    atomic_int n_done; /* workers finished with this generation */
    atomic_int done_sleepers;
    infer_pool_fn fn; /* written before gen is bumped */
    void *arg;
    atomic_bool stop;
    atomic_int bar_count; /* threads arrived at the barrier */
    atomic_int bar_gen;   /* bumped when all arrived */
    atomic_int bar_sleepers;
};

struct worker_arg {
    struct infer_pool *p;
    int ith;
};

static long now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000000000L + t.tv_nsec;
}

static inline void cpu_pause(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static void futex_wait(atomic_int *a, int expected)
{
    /* Returns at once if *a != expected; spurious wake-ups are fine. */
    syscall(SYS_futex, (int *)a, FUTEX_WAIT_PRIVATE, expected, NULL, NULL, 0);
}

static void futex_wake_all(atomic_int *a)
{
    syscall(SYS_futex, (int *)a, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
}

/* Waits until pred(*a) holds, spinning for spin_ns and then sleeping;
 * wakers call infer_pool_wake() after changing *a. */
static void wait_until(atomic_int *a, atomic_int *sleepers, long spin_ns,
                       bool (*pred)(int v, int arg), int arg)
{
    long t0 = 0;
    for (unsigned spins = 0;; spins++) {
        if (pred(atomic_load_explicit(a, memory_order_acquire), arg))
            return;
        cpu_pause();
        if (spins % 64 != 63)
            continue;
        long t = now_ns();
        if (t0 == 0)
            t0 = t;
        else if (t - t0 > spin_ns)
            break;
    }
    atomic_fetch_add(sleepers, 1); /* seq_cst: pairs with wake's load */
    int v;
    while (!pred(v = atomic_load(a), arg))
        futex_wait(a, v);
    atomic_fetch_sub(sleepers, 1);
}

static bool pred_ge(int v, int arg)
{
    return v >= arg;
}

static bool pred_ne(int v, int arg)
{
    return v != arg;
}

void infer_pool_wait_ge(atomic_int *a, int target, atomic_int *sleepers)
{
    wait_until(a, sleepers, SPIN_NS, pred_ge, target);
}

void infer_pool_wake(atomic_int *a, atomic_int *sleepers)
{
    if (atomic_load(sleepers) > 0)
        futex_wake_all(a);
}

static void *worker_main(void *v)
{
    struct worker_arg wa = *(struct worker_arg *)v;
    free(v);
    struct infer_pool *p = wa.p;
    int seen = 0;
    for (;;) {
        wait_until(&p->gen, &p->gen_sleepers, IDLE_SPIN_NS, pred_ne, seen);
        seen = atomic_load(&p->gen);
        if (atomic_load(&p->stop))
            return NULL;
        p->fn(p->arg, wa.ith, p->n);
        atomic_fetch_add(&p->n_done, 1);
        infer_pool_wake(&p->n_done, &p->done_sleepers);
    }
}

struct infer_pool *infer_pool_new(int n_threads)
{
    if (n_threads <= 0) {
        long c = sysconf(_SC_NPROCESSORS_ONLN);
        n_threads = c > 0 ? (int)c : 1;
    }
    if (n_threads > 256)
        n_threads = 256;
    struct infer_pool *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return NULL;
    p->n = n_threads;
    p->threads = calloc((size_t)n_threads, sizeof(pthread_t));
    if (p->threads == NULL) {
        free(p);
        return NULL;
    }
    for (int i = 1; i < n_threads; i++) {
        struct worker_arg *wa = malloc(sizeof(*wa));
        if (wa != NULL) {
            wa->p = p;
            wa->ith = i;
        }
        if (wa == NULL ||
            pthread_create(&p->threads[i - 1], NULL, worker_main, wa) != 0) {
            free(wa);
            p->n = i; /* keep the threads we have; nth shrinks */
            break;
        }
    }
    return p;
}

void infer_pool_free(struct infer_pool *p)
{
    if (p == NULL)
        return;
    atomic_store(&p->stop, true);
    atomic_fetch_add(&p->gen, 1);
    futex_wake_all(&p->gen);
    for (int i = 1; i < p->n; i++)
        pthread_join(p->threads[i - 1], NULL);
    free(p->threads);
    free(p);
}

int infer_pool_size(const struct infer_pool *p)
{
    return p->n;
}

void infer_pool_run(struct infer_pool *p, infer_pool_fn fn, void *arg)
{
    if (p->n == 1) {
        fn(arg, 0, 1);
        return;
    }
    p->fn = fn;
    p->arg = arg;
    atomic_store(&p->n_done, 0);
    atomic_fetch_add(&p->gen, 1); /* publishes fn, arg (seq_cst) */
    infer_pool_wake(&p->gen, &p->gen_sleepers);
    fn(arg, 0, p->n);
    infer_pool_wait_ge(&p->n_done, p->n - 1, &p->done_sleepers);
}

void infer_pool_barrier(struct infer_pool *p)
{
    if (p->n == 1)
        return;
    int g = atomic_load(&p->bar_gen);
    if (atomic_fetch_add(&p->bar_count, 1) == p->n - 1) {
        atomic_store(&p->bar_count, 0);
        atomic_fetch_add(&p->bar_gen, 1);
        infer_pool_wake(&p->bar_gen, &p->bar_sleepers);
        return;
    }
    wait_until(&p->bar_gen, &p->bar_sleepers, SPIN_NS, pred_ne, g);
}
