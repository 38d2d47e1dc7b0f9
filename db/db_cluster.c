/*
 * db_cluster.c: the managed PostgreSQL of the embedded default.
 *
 * Layout of a data directory D:
 *   D/arena.lock   flock()ed by the arena process that owns the cluster
 *   D/pg/          the cluster (PGDATA) and its Unix socket .s.PGSQL.5432
 *   D/pg.log       initdb's and postgres's output
 *
 * Lifecycle: initdb on first use (into D/pg.init, renamed to D/pg once
 * complete, so a crash during initdb never leaves a half cluster), then
 * `postgres` as our child, in its own process group (a terminal's Ctrl-C
 * reaches Arena only; Arena stops postgres after its own requests end),
 * with listen_addresses='' (no TCP). As root the child drops to the
 * `postgres` account before exec.
 *
 * Crash safety: the child sets PR_SET_PDEATHSIG=SIGINT after dropping
 * privileges (a credential change clears it), so if Arena dies, even by
 * SIGKILL, postgres gets a fast shutdown. The signal follows the *thread*
 * that forked: start the cluster from a thread that lives as long as the
 * process (main). On the next start, a postmaster.pid naming a live
 * postgres is a leftover of ours (the arena.lock proves no other arena owns
 * the directory): it is stopped first; a stale one is removed.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "db_internal.h"

#define CLUSTER_USER "arena" /* the superuser role initdb creates */
#define CLUSTER_DB   "arena"

struct db_cluster {
    pid_t pid;               /* the postmaster, our child */
    int lock_fd;             /* D/arena.lock, flock()ed */
    char dir[PATH_MAX];      /* D/pg, absolute */
    char log_path[PATH_MAX]; /* D/pg.log */
    char conninfo[PATH_MAX + 96];
};

/* Who runs initdb and postgres: ourselves, or (as root) `postgres`. */
struct run_as {
    bool drop;
    uid_t uid;
    gid_t gid;
};

/* ---------------------------------------------------------------------- */
/* Small helpers                                                          */

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int mkdir_p(const char *path, mode_t mode)
{
    char buf[PATH_MAX];
    if (snprintf(buf, sizeof(buf), "%s", path) >= (int)sizeof(buf)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    for (char *p = buf + 1; *p != '\0'; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, mode) != 0 && errno != EEXIST)
            return -1;
        *p = '/';
    }
    if (mkdir(buf, mode) != 0 && errno != EEXIST)
        return -1;
    return 0;
}

static int rm_entry(const char *path, const struct stat *st, int flag,
                    struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path) != 0 && errno != ENOENT ? -1 : 0;
}

static int rm_rf(const char *path)
{
    int rc = nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    return rc != 0 && errno != ENOENT ? -1 : 0;
}

/* out = a + b (b starts with '/'); false if it does not fit. */
static bool path_join(char *out, size_t n, const char *a, const char *b)
{
    int len = snprintf(out, n, "%s%s", a, b);
    return len >= 0 && (size_t)len < n;
}

static bool file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* Whether dir holds nothing but "." and "..". */
static bool dir_empty(const char *path)
{
    DIR *d = opendir(path);
    if (d == NULL)
        return false;
    bool empty = true;
    struct dirent *e;
    while (empty && (e = readdir(d)) != NULL)
        empty = strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0;
    closedir(d);
    return empty;
}

/* PostgreSQL's bin directory: `pg_config --bindir`, else the newest
 * /usr/lib/postgresql/N/bin. */
static int find_bindir(char *out, size_t n, struct db_err *err)
{
    FILE *f = popen("pg_config --bindir 2>/dev/null", "r");
    if (f != NULL) {
        char line[PATH_MAX] = "";
        if (fgets(line, sizeof(line), f) != NULL)
            line[strcspn(line, "\n")] = '\0';
        pclose(f);
        char probe[PATH_MAX + 16];
        snprintf(probe, sizeof(probe), "%s/initdb", line);
        if (line[0] != '\0' && access(probe, X_OK) == 0) {
            snprintf(out, n, "%s", line);
            return DB_OK;
        }
    }
    int best = -1;
    DIR *d = opendir("/usr/lib/postgresql");
    struct dirent *e;
    while (d != NULL && (e = readdir(d)) != NULL) {
        char probe[PATH_MAX];
        int v = atoi(e->d_name);
        snprintf(probe, sizeof(probe), "/usr/lib/postgresql/%s/bin/initdb",
                 e->d_name);
        if (v > best && access(probe, X_OK) == 0)
            best = v;
    }
    if (d != NULL)
        closedir(d);
    if (best < 0) {
        db__err_set(err, "PostgreSQL server programs not found (no initdb "
                         "via pg_config or in /usr/lib/postgresql/*/bin); "
                         "install the postgresql package or set "
                         "DATABASE_URL");
        return DB_ERR_CLUSTER;
    }
    snprintf(out, n, "/usr/lib/postgresql/%d/bin", best);
    return DB_OK;
}

/* Quotes v for a libpq conninfo value: 'v' with ' and \ escaped. */
static void conninfo_quote(char *out, size_t n, const char *v)
{
    size_t o = 0;
    if (n < 3)
        return;
    out[o++] = '\'';
    for (; *v != '\0' && o + 3 < n; v++) {
        if (*v == '\'' || *v == '\\')
            out[o++] = '\\';
        out[o++] = *v;
    }
    out[o++] = '\'';
    out[o] = '\0';
}

/* ---------------------------------------------------------------------- */
/* Child processes                                                        */

/* In a forked child: the state a server process should start from, then
 * the account switch. Only async-signal-safe calls: the parent may have
 * threads. Returns -1 if the switch failed. */
static int child_setup(const struct run_as *as, int out_fd)
{
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    const int sigs[] = {SIGPIPE, SIGCHLD, SIGINT, SIGTERM, SIGQUIT, SIGHUP};
    for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
        signal(sigs[i], SIG_DFL);
    int devnull = open("/dev/null", O_RDONLY);
    if (devnull >= 0) {
        dup2(devnull, 0);
        close(devnull);
    }
    if (out_fd >= 0) {
        dup2(out_fd, 1);
        dup2(out_fd, 2);
    }
    if (as->drop) {
        if (setgroups(1, &as->gid) != 0 || setgid(as->gid) != 0 ||
            setuid(as->uid) != 0)
            return -1;
    }
    return 0;
}

/* Runs argv (prepared by the caller) as `as`, output to out_fd, and waits.
 * Returns the exit status, or -1 if it could not run. */
static int run_wait(const struct run_as *as, char *const argv[], int out_fd)
{
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        if (child_setup(as, out_fd) != 0)
            _exit(126);
        execv(argv[0], argv);
        _exit(127);
    }
    int st;
    while (waitpid(pid, &st, 0) < 0) {
        if (errno != EINTR)
            return -1;
    }
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* As root: checks that `postgres` can reach dir (search permission on dir
 * and every parent). On failure names the first path it cannot enter. */
static int check_reachable(const struct run_as *as, const char *dir,
                           struct db_err *err)
{
    /* Prefixes of dir, prepared before fork: "/a", "/a/b", ... */
    char prefixes[32][PATH_MAX];
    int n = 0;
    for (const char *p = dir + 1; n < 32; p++) {
        if (*p == '/' || *p == '\0') {
            size_t len = (size_t)(p - dir);
            memcpy(prefixes[n], dir, len);
            prefixes[n][len] = '\0';
            n++;
        }
        if (*p == '\0')
            break;
    }
    int fds[2];
    if (pipe(fds) != 0) {
        db__err_set(err, "pipe: %s", strerror(errno));
        return DB_ERR_CLUSTER;
    }
    pid_t pid = fork();
    if (pid == 0) {
        close(fds[0]);
        if (child_setup(as, -1) != 0)
            _exit(126);
        for (int i = 0; i < n; i++) {
            if (access(prefixes[i], X_OK) != 0) {
                unsigned char idx = (unsigned char)i;
                ssize_t w = write(fds[1], &idx, 1);
                (void)w;
                _exit(1);
            }
        }
        _exit(0);
    }
    close(fds[1]);
    unsigned char idx = 0;
    ssize_t got = pid > 0 ? read(fds[0], &idx, 1) : 0;
    close(fds[0]);
    int st = 0;
    if (pid > 0)
        waitpid(pid, &st, 0);
    if (pid < 0 || !WIFEXITED(st) || WEXITSTATUS(st) == 126) {
        db__err_set(err,
                    "cannot switch to the postgres account to check "
                    "%s",
                    dir);
        return DB_ERR_CLUSTER;
    }
    if (got == 1 && idx < n) {
        db__err_set(err,
                    "the postgres account cannot enter %s (needed to "
                    "reach %s); run chmod o+x on it or choose another "
                    "--data-dir",
                    prefixes[idx], dir);
        return DB_ERR_CLUSTER;
    }
    return DB_OK;
}

/* ---------------------------------------------------------------------- */
/* Steps of a start                                                       */

static int do_initdb(const struct run_as *as, const char *bindir,
                     const char *data_dir, const char *pgdir, int log_fd,
                     struct db_err *err)
{
    char tmp[PATH_MAX];
    if (!path_join(tmp, sizeof(tmp), data_dir, "/pg.init") || rm_rf(tmp) != 0 ||
        mkdir(tmp, 0700) != 0) {
        db__err_set(err, "cannot create %s: %s", tmp, strerror(errno));
        return DB_ERR_CLUSTER;
    }
    if (as->drop && chown(tmp, as->uid, as->gid) != 0) {
        db__err_set(err, "chown %s: %s", tmp, strerror(errno));
        return DB_ERR_CLUSTER;
    }
    char prog[PATH_MAX + 16];
    snprintf(prog, sizeof(prog), "%s/initdb", bindir);
    char *argv[] = {prog,    "-D", tmp,    "-U",         CLUSTER_USER, "-A",
                    "trust", "-E", "UTF8", "--locale=C", NULL};
    db__log(DB_LOG_INFO, "db: creating PostgreSQL cluster in %s", pgdir);
    int st = run_wait(as, argv, log_fd);
    if (st != 0) {
        db__err_set(err, "initdb failed (exit %d); see %s/pg.log", st,
                    data_dir);
        return DB_ERR_CLUSTER;
    }
    if (rename(tmp, pgdir) != 0) {
        db__err_set(err, "rename %s: %s", tmp, strerror(errno));
        return DB_ERR_CLUSTER;
    }
    return DB_OK;
}

/* The state letter of process pid (R, S, Z...) and its name, from
 * /proc/PID/stat; 0 if there is no such process. */
static char proc_state(pid_t pid, char *comm, size_t n)
{
    char path[64], line[512];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return 0;
    size_t got = fread(line, 1, sizeof(line) - 1, f);
    fclose(f);
    line[got] = '\0';
    /* "pid (comm) S ...": comm may hold spaces and parentheses. */
    char *open = strchr(line, '('), *close = strrchr(line, ')');
    if (open == NULL || close == NULL || close[1] != ' ')
        return 0;
    if (comm != NULL)
        snprintf(comm, n, "%.*s", (int)(close - open - 1), open + 1);
    return close[2];
}

/* Whether pid is a process that has not exited yet. A zombie has: only
 * its parent's wait is missing, and for an orphan that parent is init,
 * which in a container may never come. */
static bool is_running(pid_t pid)
{
    char st = proc_state(pid, NULL, 0);
    return st != 0 && st != 'Z' && st != 'X';
}

/* Whether pid is a running process named postgres. */
static bool is_live_postgres(pid_t pid)
{
    char comm[64] = "";
    if (pid <= 0)
        return false;
    char st = proc_state(pid, comm, sizeof(comm));
    return st != 0 && st != 'Z' && st != 'X' && strcmp(comm, "postgres") == 0;
}

/* Signals pid and waits up to wait_s for it to go. Returns true if gone.
 * Works for our child (reaps it) and for a stranger (polls). */
static bool signal_wait(pid_t pid, int sig, double wait_s)
{
    if (kill(pid, sig) != 0 && errno == ESRCH)
        return true;
    double end = now_s() + wait_s;
    do {
        int st;
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid)
            return true;
        if (r < 0 && errno == ECHILD && !is_running(pid))
            return true; /* not our child: gone, or a zombie of init's */
        sleep_ms(20);
    } while (now_s() < end);
    return false;
}

static bool stop_pid(pid_t pid)
{
    if (signal_wait(pid, SIGINT, 30))
        return true;
    db__log(DB_LOG_WARN, "db: postgres %d ignored fast shutdown; quitting",
            (int)pid);
    if (signal_wait(pid, SIGQUIT, 5))
        return true;
    return signal_wait(pid, SIGKILL, 5);
}

/* Handles a postmaster.pid left by an earlier run: stops a live server
 * (ours: we hold the directory's lock), removes a stale file. */
static int clear_leftover(const char *pgdir, struct db_err *err)
{
    char path[PATH_MAX + 32];
    snprintf(path, sizeof(path), "%s/postmaster.pid", pgdir);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return DB_OK;
    char line[32] = "";
    if (fgets(line, sizeof(line), f) == NULL)
        line[0] = '\0';
    fclose(f);
    pid_t pid = (pid_t)atoi(line);
    if (is_live_postgres(pid)) {
        db__log(DB_LOG_WARN,
                "db: stopping PostgreSQL %d left running by an earlier "
                "arena",
                (int)pid);
        if (!stop_pid(pid)) {
            db__err_set(err, "PostgreSQL %d (from %s) does not stop", (int)pid,
                        pgdir);
            return DB_ERR_CLUSTER;
        }
    }
    /* Gone now, or never ours to begin with: a pid reused by another
     * process would make postgres refuse to start. */
    if (file_exists(path)) {
        db__log(DB_LOG_INFO, "db: removing stale %s", path);
        unlink(path);
    }
    return DB_OK;
}

static pid_t spawn_postgres(const struct run_as *as, const char *bindir,
                            const char *pgdir, int log_fd, struct db_err *err)
{
    char prog[PATH_MAX + 16], sockdir[PATH_MAX + 32];
    snprintf(prog, sizeof(prog), "%s/postgres", bindir);
    snprintf(sockdir, sizeof(sockdir), "unix_socket_directories=%s", pgdir);
    char *argv[] = {prog, "-D",    (char *)pgdir, "-c", "listen_addresses=",
                    "-c", sockdir, NULL};
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        db__err_set(err, "fork: %s", strerror(errno));
        return -1;
    }
    if (pid == 0) {
        setpgid(0, 0);
        if (child_setup(as, log_fd) != 0)
            _exit(126);
        /* After the credential change, which clears it. */
        prctl(PR_SET_PDEATHSIG, SIGINT);
        if (getppid() != parent)
            _exit(0); /* Arena died before prctl */
        close_range(3, ~0U, 0);
        execv(argv[0], argv);
        _exit(127);
    }
    return pid;
}

/* Waits until the server answers, or fails if it exits. */
static int wait_ready(struct db_cluster *c, const char *admin_conninfo,
                      int wait_s, struct db_err *err)
{
    double end = now_s() + wait_s;
    for (;;) {
        int st;
        if (waitpid(c->pid, &st, WNOHANG) == c->pid) {
            c->pid = -1;
            db__err_set(err, "postgres exited at start (%s %d); see %s",
                        WIFEXITED(st) ? "exit" : "signal",
                        WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st),
                        c->log_path);
            return DB_ERR_CLUSTER;
        }
        if (PQping(admin_conninfo) == PQPING_OK)
            return DB_OK;
        if (now_s() > end) {
            db__err_set(err,
                        "postgres did not accept connections within "
                        "%d s; see %s",
                        wait_s, c->log_path);
            return DB_ERR_CLUSTER;
        }
        sleep_ms(50);
    }
}

static int create_database(const char *admin_conninfo, struct db_err *err)
{
    PGconn *pg = PQconnectdb(admin_conninfo);
    int rc = DB_OK;
    if (PQstatus(pg) != CONNECTION_OK) {
        db__err_set(err, "%s", PQerrorMessage(pg));
        PQfinish(pg);
        return DB_ERR_CLUSTER;
    }
    const char *params[] = {CLUSTER_DB};
    PGresult *r =
        PQexecParams(pg, "SELECT 1 FROM pg_database WHERE datname = $1", 1,
                     NULL, params, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        db__err_set(err, "%s", PQresultErrorMessage(r));
        rc = DB_ERR_CLUSTER;
    } else if (PQntuples(r) == 0) {
        PQclear(r);
        r = PQexec(pg, "CREATE DATABASE " CLUSTER_DB);
        if (PQresultStatus(r) != PGRES_COMMAND_OK) {
            db__err_set(err, "CREATE DATABASE: %s", PQresultErrorMessage(r));
            rc = DB_ERR_CLUSTER;
        }
    }
    PQclear(r);
    PQfinish(pg);
    return rc;
}

/* ---------------------------------------------------------------------- */
/* API                                                                    */

static int prepare(struct db_cluster *c, const char *data_dir, char *abs,
                   struct run_as *as, struct db_err *err)
{
    if (mkdir_p(data_dir, 0755) != 0 || realpath(data_dir, abs) == NULL) {
        db__err_set(err, "cannot create data directory %s: %s", data_dir,
                    strerror(errno));
        return DB_ERR_CLUSTER;
    }
    char lock[PATH_MAX + 16];
    snprintf(lock, sizeof(lock), "%s/arena.lock", abs);
    c->lock_fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (c->lock_fd < 0) {
        db__err_set(err, "cannot open %s: %s", lock, strerror(errno));
        return DB_ERR_CLUSTER;
    }
    if (flock(c->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        db__err_set(err,
                    "data directory %s is in use by another arena "
                    "process",
                    abs);
        return DB_ERR_BUSY;
    }
    struct sockaddr_un sun;
    if (!path_join(c->dir, sizeof(c->dir), abs, "/pg") ||
        !path_join(c->log_path, sizeof(c->log_path), abs, "/pg.log") ||
        strlen(c->dir) + strlen("/.s.PGSQL.5432") >= sizeof(sun.sun_path)) {
        db__err_set(err,
                    "data directory path %s is too long for a Unix "
                    "socket (at most %zu bytes); choose a shorter "
                    "--data-dir",
                    abs, sizeof(sun.sun_path) - 18);
        return DB_ERR_CLUSTER;
    }
    as->drop = geteuid() == 0;
    if (as->drop) {
        struct passwd *pw = getpwnam("postgres");
        if (pw == NULL) {
            db__err_set(err, "running as root, but there is no `postgres` "
                             "account to run PostgreSQL as");
            return DB_ERR_CLUSTER;
        }
        as->uid = pw->pw_uid;
        as->gid = pw->pw_gid;
        return check_reachable(as, abs, err);
    }
    return DB_OK;
}

int db_cluster_start(const char *data_dir, int wait_s, struct db_cluster **out,
                     struct db_err *err)
{
    *out = NULL;
    struct db_cluster *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        db__err_set(err, "out of memory");
        return DB_ERR_NOMEM;
    }
    c->pid = -1;
    c->lock_fd = -1;
    char abs[PATH_MAX], bindir[PATH_MAX];
    struct run_as as = {0};
    int log_fd = -1;
    int rc = prepare(c, data_dir, abs, &as, err);
    if (rc == DB_OK)
        rc = find_bindir(bindir, sizeof(bindir), err);
    if (rc != DB_OK)
        goto fail;
    log_fd = open(c->log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (log_fd < 0) {
        db__err_set(err, "cannot open %s: %s", c->log_path, strerror(errno));
        rc = DB_ERR_CLUSTER;
        goto fail;
    }
    char version[PATH_MAX + 16];
    snprintf(version, sizeof(version), "%s/PG_VERSION", c->dir);
    if (!file_exists(version)) {
        if (file_exists(c->dir) && !dir_empty(c->dir)) {
            db__err_set(err,
                        "%s exists but is not a PostgreSQL cluster; "
                        "move it away",
                        c->dir);
            rc = DB_ERR_CLUSTER;
            goto fail;
        }
        rmdir(c->dir);
        rc = do_initdb(&as, bindir, abs, c->dir, log_fd, err);
        if (rc != DB_OK)
            goto fail;
    }
    rc = clear_leftover(c->dir, err);
    if (rc != DB_OK)
        goto fail;

    char host[PATH_MAX + 8];
    conninfo_quote(host, sizeof(host), c->dir);
    char admin[sizeof(c->conninfo)];
    snprintf(admin, sizeof(admin),
             "host=%s port=5432 user=" CLUSTER_USER " dbname=postgres", host);
    snprintf(c->conninfo, sizeof(c->conninfo),
             "host=%s port=5432 user=" CLUSTER_USER " dbname=" CLUSTER_DB,
             host);
    c->pid = spawn_postgres(&as, bindir, c->dir, log_fd, err);
    if (c->pid < 0) {
        rc = DB_ERR_CLUSTER;
        goto fail;
    }
    rc = wait_ready(c, admin, wait_s, err);
    if (rc == DB_OK)
        rc = create_database(admin, err);
    if (rc != DB_OK)
        goto fail;
    close(log_fd);
    db__log(DB_LOG_INFO, "db: PostgreSQL %d running on socket %s", (int)c->pid,
            c->dir);
    *out = c;
    return DB_OK;

fail:
    if (log_fd >= 0)
        close(log_fd);
    db_cluster_stop(c, NULL);
    return rc;
}

const char *db_cluster_conninfo(const struct db_cluster *c)
{
    return c->conninfo;
}

int db_cluster_pid(const struct db_cluster *c)
{
    return (int)c->pid;
}

int db_cluster_stop(struct db_cluster *c, struct db_err *err)
{
    if (c == NULL)
        return DB_OK;
    int rc = DB_OK;
    if (c->pid > 0) {
        db__log(DB_LOG_INFO, "db: stopping PostgreSQL %d", (int)c->pid);
        if (!stop_pid(c->pid)) {
            db__err_set(err, "PostgreSQL %d does not stop", (int)c->pid);
            rc = DB_ERR_CLUSTER;
        }
    }
    if (c->lock_fd >= 0)
        close(c->lock_fd); /* releases the flock */
    free(c);
    return rc;
}
