/*
 * infer_pool.c: the compute thread pool (ggml style). infer_pool_run()
 * publishes (fn, arg) under a new generation number; workers, which spin
 * briefly and then sleep on a condition variable, run fn(arg, ith, nth) and
 * count themselves done; the caller runs ith 0 and waits for the count.
 * infer_pool_barrier() is a sense-reversing counter barrier.
 *
 * Waiting spins with a pause and then yields: the machines this runs on are
 * often shared, and a spinning thread that never yields can starve the
 * thread it waits for.
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <unistd.h>

#include "infer_kernels.h"

#define SPIN_BEFORE_YIELD 2000   /* pauses before sched_yield() */
#define SPIN_BEFORE_SLEEP 200000 /* idle pauses before a worker sleeps */

struct infer_pool {
    int n; /* threads including the caller */
    pthread_t *threads; /* (n - 1) */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    atomic_uint gen;      /* bumped by each run */
    atomic_int n_done;    /* workers finished with this generation */
    infer_pool_fn fn;     /* written before gen is bumped */
    void *arg;
    atomic_bool stop;
    atomic_int bar_count; /* threads arrived at the barrier */
    atomic_uint bar_gen;  /* bumped when all arrived */
};

struct worker_arg {
    struct infer_pool *p;
    int ith;
};

static inline void cpu_relax(unsigned *spins)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
    if (++*spins % SPIN_BEFORE_YIELD == 0)
        sched_yield();
}

static void *worker_main(void *v)
{
    struct worker_arg wa = *(struct worker_arg *)v;
    free(v);
    struct infer_pool *p = wa.p;
    unsigned seen = 0;
    for (;;) {
        unsigned spins = 0;
        while (atomic_load_explicit(&p->gen, memory_order_acquire) == seen &&
               !atomic_load(&p->stop)) {
            if (spins < SPIN_BEFORE_SLEEP) {
                cpu_relax(&spins);
                continue;
            }
            pthread_mutex_lock(&p->mu);
            while (atomic_load(&p->gen) == seen && !atomic_load(&p->stop))
                pthread_cond_wait(&p->cv, &p->mu);
            pthread_mutex_unlock(&p->mu);
        }
        if (atomic_load(&p->stop))
            return NULL;
        seen = atomic_load(&p->gen);
        p->fn(p->arg, wa.ith, p->n);
        atomic_fetch_add_explicit(&p->n_done, 1, memory_order_release);
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
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
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
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->stop, true);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 1; i < p->n; i++)
        pthread_join(p->threads[i - 1], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
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
    pthread_mutex_lock(&p->mu);
    atomic_fetch_add_explicit(&p->gen, 1, memory_order_release);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    fn(arg, 0, p->n);
    unsigned spins = 0;
    while (atomic_load_explicit(&p->n_done, memory_order_acquire) < p->n - 1)
        cpu_relax(&spins);
}

void infer_pool_barrier(struct infer_pool *p)
{
    if (p->n == 1)
        return;
    unsigned g = atomic_load_explicit(&p->bar_gen, memory_order_acquire);
    if (atomic_fetch_add_explicit(&p->bar_count, 1, memory_order_acq_rel) ==
        p->n - 1) {
        atomic_store_explicit(&p->bar_count, 0, memory_order_relaxed);
        atomic_fetch_add_explicit(&p->bar_gen, 1, memory_order_release);
        return;
    }
    unsigned spins = 0;
    while (atomic_load_explicit(&p->bar_gen, memory_order_acquire) == g)
        cpu_relax(&spins);
}
