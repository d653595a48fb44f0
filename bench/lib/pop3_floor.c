/*
 * pop3_floor.c -- the least a POP3 server can spend on a fetchmail pull.
 *
 * Serves one Maildir's messages over POP3 on 127.0.0.1:PORT from memory:
 * every file is read, converted to CRLF and dot-stuffed once at start-up, so
 * a session costs only the protocol itself -- one blocking read(2) per
 * command and one write(2) per reply, no file system work, no per-message
 * formatting beyond a number. What a real server spends above this per pull
 * is its own work (files, index, flags, its event loop); the rest is the
 * kernel's per-command cost (the switch to and from the client, loopback
 * TCP), which every server pays. bench/pop3/run.sh (FLOOR=1) runs the same
 * fetchmail pulls against it in the same run as the servers.
 *
 * Accepts any USER/PASS; DELE is acknowledged and forgotten (the maildrop
 * is the same for every session). One connection at a time. After each
 * session it prints one line to stdout:
 *   pop3_floor: commands=N cpu_ns=C
 * (C: this process's CPU time for the session, CLOCK_PROCESS_CPUTIME_ID).
 *
 * With --fileops MAILDIR it instead makes, alone, the file operations both
 * servers make in a delete pull of a fresh maildrop -- every new/ file
 * renamed to cur/ (":2," added, as a session's first look does) and then
 * unlinked (the DELEs at QUIT) -- and prints their CPU time:
 *   pop3_floor: files=N renames_ns=R unlinks_ns=U
 *
 * Build: cc -O2 -o pop3_floor pop3_floor.c
 * Usage: pop3_floor PORT MAILDIR [SESSIONS]   (SESSIONS: exit after that many, default 1000)
 *        pop3_floor --fileops MAILDIR         (empties MAILDIR's new/)
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

struct msg { char *wire; size_t len; size_t octets; char uidl[32]; };
static struct msg *msgs;
static size_t nmsgs, cap;

static int by_name(const struct dirent **a, const struct dirent **b) { return strcmp((*a)->d_name, (*b)->d_name); }

/* The file as RETR sends it: "+OK n octets", CRLF lines, dot-stuffed, ".". */
static void load(const char *path, const char *name) {
    FILE *f = fopen(path, "rb");
    if (!f) { perror(path); exit(1); }
    struct stat st; fstat(fileno(f), &st);
    char *raw = malloc(st.st_size + 1);
    size_t n = fread(raw, 1, st.st_size, f); fclose(f);
    char *body = malloc(2 * n + 8); size_t b = 0; int bol = 1;
    for (size_t i = 0; i < n; i++) {
        if (bol && raw[i] == '.') body[b++] = '.';
        if (raw[i] == '\n') { if (!(i && raw[i - 1] == '\r')) body[b++] = '\r'; body[b++] = '\n'; bol = 1; continue; }
        body[b++] = raw[i]; bol = 0;
    }
    if (!bol) { body[b++] = '\r'; body[b++] = '\n'; }
    if (nmsgs == cap) { cap = cap ? 2 * cap : 1024; msgs = realloc(msgs, cap * sizeof *msgs); }
    struct msg *m = &msgs[nmsgs++];
    m->octets = b;
    m->wire = malloc(b + 64);
    int h = sprintf(m->wire, "+OK %zu octets\r\n", b);
    memcpy(m->wire + h, body, b); memcpy(m->wire + h + b, ".\r\n", 3);
    m->len = h + b + 3;
    snprintf(m->uidl, sizeof m->uidl, "%08zx%08x", nmsgs, 1u);
    (void)name; free(raw); free(body);
}

static void load_dir(const char *maildir, const char *sub) {
    char dir[4096]; snprintf(dir, sizeof dir, "%s/%s", maildir, sub);
    struct dirent **ents; int n = scandir(dir, &ents, NULL, by_name);
    if (n < 0) { perror(dir); exit(1); }
    for (int i = 0; i < n; i++) {
        if (ents[i]->d_name[0] != '.') {
            char p[8192]; snprintf(p, sizeof p, "%s/%s", dir, ents[i]->d_name);
            load(p, ents[i]->d_name);
        }
        free(ents[i]);
    }
    free(ents);
}

static long long cpu_ns(void) {
    struct timespec t; clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return t.tv_sec * 1000000000LL + t.tv_nsec;
}

static int say(int fd, const char *s, size_t n) { return write(fd, s, n) == (ssize_t)n ? 0 : -1; }
#define SAY(fd, lit) say(fd, lit, sizeof lit - 1)

static int list(int fd, int uidl) {
    size_t cap2 = nmsgs * 48 + 64, o = 0; char *out = malloc(cap2);
    o += sprintf(out, "+OK\r\n");
    for (size_t i = 0; i < nmsgs; i++)
        o += uidl ? sprintf(out + o, "%zu %s\r\n", i + 1, msgs[i].uidl) : sprintf(out + o, "%zu %zu\r\n", i + 1, msgs[i].octets);
    o += sprintf(out + o, ".\r\n");
    int r = say(fd, out, o); free(out); return r;
}

/* One session; returns the number of commands. */
static long session(int fd) {
    char in[4096]; size_t have = 0; long cmds = 0; char rep[128];
    if (SAY(fd, "+OK floor ready\r\n")) return 0;
    for (;;) {
        char *nl;
        while (!(nl = memchr(in, '\n', have))) {
            if (have == sizeof in) return cmds;
            ssize_t r = read(fd, in + have, sizeof in - have);
            if (r <= 0) return cmds;
            have += r;
        }
        *nl = 0; if (nl > in && nl[-1] == '\r') nl[-1] = 0;
        cmds++;
        char *arg = strchr(in, ' '); if (arg) *arg++ = 0;
        size_t n = arg ? strtoul(arg, NULL, 10) : 0;
        int numbered = !strcasecmp(in, "RETR") || !strcasecmp(in, "LIST") || !strcasecmp(in, "UIDL") || !strcasecmp(in, "DELE");
        int bad = numbered && arg && (n < 1 || n > nmsgs), r = 0;
        if (!strcasecmp(in, "QUIT")) { SAY(fd, "+OK bye\r\n"); return cmds; }
        else if (!strcasecmp(in, "RETR") && !bad && arg) r = say(fd, msgs[n - 1].wire, msgs[n - 1].len);
        else if (!strcasecmp(in, "LIST") && !bad) r = arg ? say(fd, rep, sprintf(rep, "+OK %zu %zu\r\n", n, msgs[n - 1].octets)) : list(fd, 0);
        else if (!strcasecmp(in, "UIDL") && !bad) r = arg ? say(fd, rep, sprintf(rep, "+OK %zu %s\r\n", n, msgs[n - 1].uidl)) : list(fd, 1);
        else if (!strcasecmp(in, "STAT")) {
            size_t tot = 0; for (size_t i = 0; i < nmsgs; i++) tot += msgs[i].octets;
            r = say(fd, rep, sprintf(rep, "+OK %zu %zu\r\n", nmsgs, tot));
        } else if (!strcasecmp(in, "CAPA")) r = SAY(fd, "+OK\r\nUSER\r\nUIDL\r\n.\r\n");
        else if (!bad && (!strcasecmp(in, "USER") || !strcasecmp(in, "PASS") || !strcasecmp(in, "DELE") || !strcasecmp(in, "NOOP") || !strcasecmp(in, "RSET")))
            r = SAY(fd, "+OK\r\n");
        else r = SAY(fd, "-ERR\r\n");
        if (r) return cmds;
        size_t used = nl + 1 - in; memmove(in, in + used, have - used); have -= used;
    }
}

/* --fileops: rename every new/ file into cur/, then unlink them, timed apart. */
static int fileops(const char *maildir) {
    char dir[4096]; snprintf(dir, sizeof dir, "%s/new", maildir);
    struct dirent **ents; int n = scandir(dir, &ents, NULL, by_name);
    if (n < 0) { perror(dir); return 1; }
    char from[8192], to[8192];
    long long t0 = cpu_ns(); int files = 0;
    for (int i = 0; i < n; i++) {
        if (ents[i]->d_name[0] == '.') continue;
        snprintf(from, sizeof from, "%s/new/%s", maildir, ents[i]->d_name);
        snprintf(to, sizeof to, "%s/cur/%s:2,", maildir, ents[i]->d_name);
        if (rename(from, to)) { perror(from); return 1; }
        files++;
    }
    long long t1 = cpu_ns();
    for (int i = 0; i < n; i++) {
        if (ents[i]->d_name[0] == '.') continue;
        snprintf(to, sizeof to, "%s/cur/%s:2,", maildir, ents[i]->d_name);
        if (unlink(to)) { perror(to); return 1; }
    }
    long long t2 = cpu_ns();
    printf("pop3_floor: files=%d renames_ns=%lld unlinks_ns=%lld\n", files, t1 - t0, t2 - t1);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 3 && !strcmp(argv[1], "--fileops")) return fileops(argv[2]);
    if (argc < 3) { fprintf(stderr, "usage: pop3_floor PORT MAILDIR [SESSIONS] | --fileops MAILDIR\n"); return 2; }
    load_dir(argv[2], "cur"); load_dir(argv[2], "new");
    long sessions = argc > 3 ? atol(argv[3]) : 1000;
    int s = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(atoi(argv[1])) };
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(s, (struct sockaddr *)&a, sizeof a) || listen(s, 16)) { perror("bind"); return 1; }
    fprintf(stderr, "pop3_floor: %zu messages on 127.0.0.1:%s\n", nmsgs, argv[1]);
    for (long i = 0; i < sessions; i++) {
        int c = accept(s, NULL, NULL);
        if (c < 0) continue;
        setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        long long t0 = cpu_ns();
        long cmds = session(c);
        close(c);
        printf("pop3_floor: commands=%ld cpu_ns=%lld\n", cmds, cpu_ns() - t0);
        fflush(stdout);
    }
    return 0;
}
