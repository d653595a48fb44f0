/* Adapted copy of the project reference harness's fsync_limit.c (unchanged
 * apart from this note): bench/smtp/run.sh measures the disk's ceiling with it
 * in the same run as the servers (CEILING=1). */
/*
 * fsync_limit.c -- physical durability ceiling for Maildir-style delivery.
 *
 * One "op" = open(tmp/<unique>, O_CREAT|O_EXCL) + write SIZE bytes + fsync +
 * close + rename(tmp/<unique>, new/<unique>)   [+ fsync(new/) with -D]
 * which is what a durable Maildir delivery costs at minimum (Postfix virtual(8)
 * and Dovecot LDA/LMTP both do write+fsync+link/rename; neither fsyncs the
 * directory by default).  A full MTA pays at least one more fsync per message
 * for its queue file, so end-to-end SMTP->Maildir is bounded by ~rate/2.
 *
 * Build: cc -O2 -pthread -o fsync_limit fsync_limit.c
 * Usage: fsync_limit [-d dir] [-t threads] [-s seconds] [-n max_ops_per_thread]
 *                    [-b bytes] [-D] [-k]
 *   -d dir      work directory (default /tmp/pp-reference/fsync_test); tmp/ and new/
 *               are created inside, everything created is removed afterwards
 *   -t threads  parallel writers (default 1)
 *   -s seconds  time bound (default 10)
 *   -n ops      max ops per thread (default 200000) -> bounded in count too
 *   -b bytes    file size (default 5120)
 *   -D          also fsync the new/ directory after each rename
 *   -k          keep the files (default: delete them at the end)
 * Prints one summary line:
 *   fsync_limit: threads=T bytes=B dirsync=0 ops=N secs=S rate=R ops/s p50=.. p99=.. ms
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

static const char *g_dir = "/tmp/pp-reference/fsync_test";
static int g_threads = 1, g_dirsync = 0, g_keep = 0;
static double g_secs = 10.0;
static long g_maxops = 200000, g_bytes = 5120;
static char *g_buf;
static double g_t0, g_deadline;

typedef struct { int id; long ops; double *lat; } worker_t;

static double now(void) {
    struct timespec ts; clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}
static void die(const char *what, const char *p) {
    fprintf(stderr, "fsync_limit: %s %s: %s\n", what, p ? p : "", strerror(errno)); exit(1);
}

static void *run(void *arg) {
    worker_t *w = arg;
    char tmp[4096], dst[4096], newdir[4096];
    snprintf(newdir, sizeof newdir, "%s/new", g_dir);
    int dfd = -1;
    if (g_dirsync && (dfd = open(newdir, O_RDONLY | O_DIRECTORY)) < 0) die("open", newdir);
    for (long i = 0; i < g_maxops; i++) {
        double t = now();
        if (t >= g_deadline) break;
        snprintf(tmp, sizeof tmp, "%s/tmp/%d.%ld.%d", g_dir, w->id, i, (int)getpid());
        snprintf(dst, sizeof dst, "%s/new/%d.%ld.%d", g_dir, w->id, i, (int)getpid());
        int fd = open(tmp, O_CREAT | O_EXCL | O_WRONLY, 0600);
        if (fd < 0) die("open", tmp);
        long off = 0;
        while (off < g_bytes) {
            ssize_t n = write(fd, g_buf + off, g_bytes - off);
            if (n < 0) { if (errno == EINTR) continue; die("write", tmp); }
            off += n;
        }
        if (fsync(fd) < 0) die("fsync", tmp);
        if (close(fd) < 0) die("close", tmp);
        if (rename(tmp, dst) < 0) die("rename", tmp);
        if (dfd >= 0 && fsync(dfd) < 0) die("fsync", newdir);
        w->lat[i] = now() - t;
        w->ops = i + 1;
    }
    if (dfd >= 0) close(dfd);
    return NULL;
}

static int cmpd(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    int c;
    while ((c = getopt(argc, argv, "d:t:s:n:b:Dk")) != -1) {
        switch (c) {
        case 'd': g_dir = optarg; break;
        case 't': g_threads = atoi(optarg); break;
        case 's': g_secs = atof(optarg); break;
        case 'n': g_maxops = atol(optarg); break;
        case 'b': g_bytes = atol(optarg); break;
        case 'D': g_dirsync = 1; break;
        case 'k': g_keep = 1; break;
        default:
            fprintf(stderr, "usage: %s [-d dir] [-t threads] [-s seconds] [-n max_ops_per_thread] [-b bytes] [-D] [-k]\n", argv[0]);
            return 2;
        }
    }
    if (g_threads < 1 || g_threads > 1024 || g_secs <= 0 || g_secs > 600 || g_maxops < 1 || g_bytes < 0) {
        fprintf(stderr, "fsync_limit: bad arguments (threads 1..1024, seconds 0..600)\n"); return 2;
    }
    char p[4096];
    snprintf(p, sizeof p, "%s", g_dir);                  /* mkdir -p g_dir */
    for (char *q = p + 1; *q; q++)
        if (*q == '/') { *q = 0; mkdir(p, 0755); *q = '/'; }
    if (mkdir(g_dir, 0700) < 0 && errno != EEXIST) die("mkdir", g_dir);
    snprintf(p, sizeof p, "%s/tmp", g_dir); if (mkdir(p, 0700) < 0 && errno != EEXIST) die("mkdir", p);
    snprintf(p, sizeof p, "%s/new", g_dir); if (mkdir(p, 0700) < 0 && errno != EEXIST) die("mkdir", p);
    g_buf = malloc(g_bytes + 1);
    for (long i = 0; i < g_bytes; i++) g_buf[i] = (i % 78 == 77) ? '\n' : 'a' + (i % 26);

    worker_t *w = calloc(g_threads, sizeof *w);
    pthread_t *th = calloc(g_threads, sizeof *th);
    g_t0 = now(); g_deadline = g_t0 + g_secs;
    for (int i = 0; i < g_threads; i++) {
        w[i].id = i; w[i].lat = calloc(g_maxops, sizeof(double));
        if (!w[i].lat) die("calloc", NULL);
        pthread_create(&th[i], NULL, run, &w[i]);
    }
    long total = 0;
    for (int i = 0; i < g_threads; i++) { pthread_join(th[i], NULL); total += w[i].ops; }
    double el = now() - g_t0;

    double *all = malloc(sizeof(double) * (total ? total : 1));
    long k = 0;
    for (int i = 0; i < g_threads; i++) for (long j = 0; j < w[i].ops; j++) all[k++] = w[i].lat[j];
    qsort(all, total, sizeof(double), cmpd);
    double p50 = total ? all[(long)(0.50 * (total - 1))] * 1e3 : 0;
    double p99 = total ? all[(long)(0.99 * (total - 1))] * 1e3 : 0;

    if (!g_keep) {
        for (int i = 0; i < g_threads; i++) for (long j = 0; j < w[i].ops; j++) {
            snprintf(p, sizeof p, "%s/new/%d.%ld.%d", g_dir, i, j, (int)getpid()); unlink(p);
        }
    }
    printf("fsync_limit: threads=%d bytes=%ld dirsync=%d ops=%ld secs=%.2f rate=%.0f ops/s p50=%.3f ms p99=%.3f ms\n",
           g_threads, g_bytes, g_dirsync, total, el, total / el, p50, p99);
    return 0;
}
