/* sandman-agent: the warm agent and its client in one static binary (docs/performance.md).
 *
 *   sandman-agent serve SOCK SIGFIFO NAME
 *       The main process of a warm container (under docker-init). Listens on the unix socket
 *       SOCK; each connection is one call, served by its own forked process. Only a peer with
 *       this process's uid may call (SO_PEERCRED). It also reads SIGFIFO, where lines "SIG PID"
 *       ask it to signal a tool started by `docker exec` (the exec path, shims/warm.bash).
 *       NAME is only there so that the shim can recognise the container's init in /proc.
 *
 *   sandman-agent reap -- CMD...
 *       A `docker exec` call's wrapper: the subreaper of what the call starts (see reap()).
 *
 *   sandman-agent pin WHO EXIT [DST DEV INO]... -- CMD...
 *       A cold container's entrypoint: checks that each mount point DST is the object the shim
 *       pinned (device, inode), then execs CMD; else one line and exit EXIT (see pin()).
 *
 *   sandman-agent call SOCK CALLFD SHIM NPREFIX [-e VAR[=VAL]]... [-w DIR] [-u U] [-t] -- CMD...
 *       Exec'd by a shim in warm mode. Sends the call (argv, cwd, env, umask) and its own
 *       fds 0/1/2 (SCM_RIGHTS) to the agent, forwards signals, and exits as the tool did (its
 *       status, or 128+N when signal N killed it, as the other paths report it). Writes
 *       "done" to the call file CALLFD when the call ends (sandman/warm.py waits for it). When the agent cannot be reached or never
 *       says "started", nothing has run: it execs SHIM again with SANDMAN_AGENT_SKIP=1 and
 *       the call's own arguments (argv after the NPREFIX command words), which takes the
 *       `docker exec` / cold path instead: the same result, a little slower.
 *
 *   sandman-agent route MEMO SHIM ARGS...
 *       Exec'd by a shim first, when a warm call may take the fast path: takes the route the
 *       runtime wrote down in MEMO when everything it depends on is the same (see route()),
 *       else runs SHIM again with SANDMAN_ROUTE_SKIP=1 (the full runtime).
 *
 * Wire format, client -> agent: a 4-byte length (host order) sent with the fds and a 1-byte
 * mask of which of 0/1/2 are open, then that many bytes of NUL-terminated strings, each
 * starting with a tag: 'U' umask (octal), 'C' cwd, 'E' NAME=value, 'A' one argv word. Then
 * lines "sig N". Agent -> client: "started PID", then "exit N" or "signal N".
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#ifndef TIOCGPTPEER
#define TIOCGPTPEER _IO('T', 0x41)
#endif

#define MAX_REQUEST (16 << 20)
#define FALLBACK_ENV "SANDMAN_AGENT_SKIP"
#define PTY_BIT(fd) (1 << (4 + (fd)))  /* in the mask: fd gets the call's pty, not an fd */
#define PTY_ANY (PTY_BIT(0) | PTY_BIT(1) | PTY_BIT(2))

extern char **environ;

static int self_pipe[2] = {-1, -1};

static void on_signal(int sig) {
    int saved = errno;
    unsigned char b = (unsigned char)sig;
    if (write(self_pipe[1], &b, 1) < 0) { /* full: a signal is pending anyway */ }
    errno = saved;
}

static int write_all(int fd, const void *buf, size_t n) {
    const char *p = buf;
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int read_all(int fd, void *buf, size_t n) {
    char *p = buf;
    while (n > 0) {
        ssize_t r = read(fd, p, n);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return -1;
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

static void send_line(int fd, const char *word, long n) {
    char line[64];
    int len = snprintf(line, sizeof line, "%s %ld\n", word, n);
    (void)write_all(fd, line, (size_t)len);
}

static void make_self_pipe(void) {
    if (pipe2(self_pipe, O_CLOEXEC | O_NONBLOCK) < 0) _exit(125);
}

static void handle(int sig) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaction(sig, &sa, NULL);
}

/* ---------------------------------------------------------------------------------- agent */

/* Every descriptor from `low` up, so the tool gets only its three. One close_range (Linux 5.9)
 * instead of a close per possible number: that loop was ~0.2 ms of every call, and stopped at
 * 1024. Older kernels: the ones /proc/self/fd lists. (436 on every architecture: numbers from
 * 424 up are shared, and musl's headers may predate it.) */
#ifndef SYS_close_range
#define SYS_close_range 436
#endif
static void close_from(int low) {
    if (syscall(SYS_close_range, (unsigned)low, ~0U, 0) == 0) return;
    int open_fds[4096], n = 0;
    DIR *d = opendir("/proc/self/fd");
    if (!d) {
        for (int fd = low; fd < 1024; fd++) close(fd);
        return;
    }
    for (struct dirent *e; (e = readdir(d)) && n < 4096;) {
        int fd = atoi(e->d_name);
        if (fd >= low && fd != dirfd(d)) open_fds[n++] = fd;
    }
    closedir(d);
    for (int i = 0; i < n; i++) close(open_fds[i]);
}

/* The tool of one call: its own session (and so process group), the caller's fds or the call's
 * pty, umask, cwd and environment on top of the container's, then exec. With a pty it is the
 * session's controlling terminal, as under `docker exec -t`: ^C typed at the caller's terminal
 * is a byte the client relays, and the pty's line discipline turns it into SIGINT. */
static void run_tool(int fds[3], int mask, int slave, mode_t um, const char *cwd, char **env,
                     char **argv) {
    setsid();
    if (slave >= 0 && ioctl(slave, TIOCSCTTY, 0) < 0) _exit(125);
    for (int i = 0; i < 3; i++) {
        int from = (mask & PTY_BIT(i)) ? slave : (mask & (1 << i)) ? fds[i] : -1;
        if (from < 0) close(i);
        else if (from != i && dup2(from, i) < 0) _exit(125);
        else if (from == i) fcntl(i, F_SETFD, 0);
    }
    close_from(3);
    signal(SIGPIPE, SIG_DFL);
    signal(SIGCHLD, SIG_DFL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    umask(um);
    if (chdir(cwd) < 0) {
        dprintf(2, "sandman: cannot enter %s in the container: %s\n", cwd, strerror(errno));
        _exit(126);
    }
    for (char **e = env; *e; e++) putenv(*e);
    execvp(argv[0], argv);
    int err = errno;
    dprintf(2, "sandman: %s: %s\n", argv[0], strerror(err));
    _exit(err == ENOENT ? 127 : 126);
}

/* The pids of this process's children (it is their subreaper: the call's orphans are among
 * them). /proc/self/task/TID/children, or a scan of /proc where that file is missing. */
static int list_children(pid_t *out, int cap) {
    char path[300], buf[8192];
    snprintf(path, sizeof path, "/proc/self/task/%d/children", (int)getpid());
    int n = 0, fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        size_t have = 0;
        ssize_t r;
        while (have < sizeof buf - 1 && (r = read(fd, buf + have, sizeof buf - 1 - have)) > 0)
            have += (size_t)r;
        close(fd);
        buf[have] = '\0';
        for (char *p = buf, *end; *p && n < cap; p = end) {
            long v = strtol(p, &end, 10);
            if (end == p) break;
            if (v > 0) out[n++] = (pid_t)v;
        }
        return n;
    }
    DIR *d = opendir("/proc");
    if (!d) return 0;
    pid_t me = getpid();
    for (struct dirent *e; (e = readdir(d)) && n < cap;) {
        if (e->d_name[0] < '1' || e->d_name[0] > '9') continue;
        snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
        int sfd = open(path, O_RDONLY | O_CLOEXEC);
        if (sfd < 0) continue;
        ssize_t r = read(sfd, buf, sizeof buf - 1);
        close(sfd);
        if (r <= 0) continue;
        buf[r] = '\0';
        char *rp = strrchr(buf, ')');
        long ppid = 0;
        if (rp && sscanf(rp + 1, " %*c %ld", &ppid) == 1 && ppid == me) out[n++] = atoi(e->d_name);
    }
    closedir(d);
    return n;
}

/* The end of a call, as the end of a cold container: every process the call started is killed
 * and reaped, whatever session or group it made. This process is their subreaper: an orphan
 * (a daemon, a `setsid` child whose parent exited) is reparented to it, so killing its children
 * until none is left reaches every descendant, a generation per round. */
static void end_all(void) {
    for (;;) {
        pid_t kids[256];
        int n = list_children(kids, 256);
        for (int i = 0; i < n; i++) kill(kids[i], SIGKILL);
        pid_t w;
        while ((w = waitpid(-1, NULL, WNOHANG)) > 0) {}
        if (w < 0 && errno == ECHILD) return;
        if (n > 0) {
            while ((w = waitpid(-1, NULL, 0)) < 0 && errno == EINTR) {}  /* one dies: look again */
            if (w < 0 && errno == ECHILD) return;
        } else {
            struct timespec ms = {0, 1000000};  /* a child not listed yet: forked just now */
            nanosleep(&ms, NULL);
        }
    }
}

/* The call's pty: the master stays here until it is handed to the client, the slave goes to
 * the tool. -1 when the container has none (the client then takes another path). */
static int open_pty(int *slave, const char *winsize) {
    int m = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (m < 0) return -1;
    int unlock = 0;
    unsigned int n = 0;
    if (ioctl(m, TIOCSPTLCK, &unlock) < 0) goto fail;
    *slave = ioctl(m, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (*slave < 0) {  /* before Linux 4.13: by its name */
        char path[32];
        if (ioctl(m, TIOCGPTN, &n) < 0) goto fail;
        snprintf(path, sizeof path, "/dev/pts/%u", n);
        *slave = open(path, O_RDWR | O_NOCTTY | O_CLOEXEC);
        if (*slave < 0) goto fail;
    }
    struct winsize ws;
    memset(&ws, 0, sizeof ws);
    if (winsize && sscanf(winsize, "%hu %hu %hu %hu", &ws.ws_row, &ws.ws_col, &ws.ws_xpixel,
                          &ws.ws_ypixel) >= 2)
        (void)ioctl(m, TIOCSWINSZ, &ws);
    return m;
fail:
    close(m);
    return -1;
}

/* "started PID", with the pty's master when the call has one (SCM_RIGHTS). */
static void send_started(int conn, pid_t pid, int ptm) {
    char line[64];
    int len = snprintf(line, sizeof line, "started %ld\n", (long)pid);
    struct iovec iov = {line, (size_t)len};
    char cbuf[CMSG_SPACE(sizeof(int))];
    struct msghdr msg;
    memset(&msg, 0, sizeof msg);
    memset(cbuf, 0, sizeof cbuf);
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    if (ptm >= 0) {
        msg.msg_control = cbuf;
        msg.msg_controllen = sizeof cbuf;
        struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(c), &ptm, sizeof(int));
    }
    while (sendmsg(conn, &msg, MSG_NOSIGNAL) < 0 && errno == EINTR) {}
}

/* One connection: read the call, start the tool, relay signals, report how it ended. This
 * process is the subreaper of everything the call starts. The tool dies with its caller: a
 * connection that drops (the client was killed) kills it; and when the tool ends, so does
 * everything it left behind (end_all), before the status is sent: a call that returned has
 * no process left, as a cold container that stopped. */
static void serve_call(int conn) {
    uint32_t len = 0;
    char cbuf[CMSG_SPACE(3 * sizeof(int))];
    unsigned char mask = 0;
    struct iovec iov[2] = {{&len, sizeof len}, {&mask, 1}};
    struct msghdr msg;
    memset(&msg, 0, sizeof msg);
    msg.msg_iov = iov;
    msg.msg_iovlen = 2;
    msg.msg_control = cbuf;
    msg.msg_controllen = sizeof cbuf;
    ssize_t got;
    do got = recvmsg(conn, &msg, MSG_CMSG_CLOEXEC); while (got < 0 && errno == EINTR);
    if (got != (ssize_t)(sizeof len + 1) || len == 0 || len > MAX_REQUEST) _exit(0);
    int fds[3] = {-1, -1, -1}, nfds = 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
            nfds = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
            if (nfds > 3) _exit(0);
            int got_fds[3];
            memcpy(got_fds, CMSG_DATA(c), (size_t)nfds * sizeof(int));
            for (int i = 0, k = 0; i < 3; i++)
                if (mask & (1 << i)) fds[i] = k < nfds ? got_fds[k++] : -1;
        }
    }
    for (int i = 0; i < 3; i++)
        if ((mask & (1 << i)) && fds[i] < 0) _exit(0);
    char *req = malloc(len + 1);
    if (!req || read_all(conn, req, len) < 0) _exit(0);
    req[len] = '\0';
    size_t n_words = 0;
    for (uint32_t i = 0; i < len; i++) n_words += req[i] == '\0';
    char **env = calloc(n_words + 1, sizeof *env), **argv = calloc(n_words + 1, sizeof *argv);
    if (!env || !argv) _exit(0);
    size_t ne = 0, na = 0;
    mode_t um = 022;
    const char *cwd = "/", *winsize = NULL;
    for (char *p = req; p < req + len; p += strlen(p) + 1) {
        switch (p[0]) {
        case 'U': um = (mode_t)strtol(p + 1, NULL, 8) & 0777; break;
        case 'C': cwd = p + 1; break;
        case 'E': if (strchr(p + 1, '=')) env[ne++] = p + 1; break;
        case 'A': argv[na++] = p + 1; break;
        case 'W': winsize = p + 1; break;
        default: _exit(0);
        }
    }
    if (na == 0) _exit(0);
    if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) < 0) _exit(0);  /* not cold without it */
    int ptm = -1, slave = -1;
    if ((mask & PTY_ANY) && (ptm = open_pty(&slave, winsize)) < 0) _exit(0);

    make_self_pipe();
    handle(SIGCHLD);
    pid_t pid = fork();
    if (pid < 0) _exit(0);  /* the client sees no "started": it falls back */
    if (pid == 0) {
        close(conn);
        run_tool(fds, mask, slave, um, cwd, env, argv);
    }
    /* no setpgid(pid, pid) here: a group leader cannot setsid(), and the tool's session is
     * what makes the pty its terminal; until its setsid a signal goes to its pid alone */
    for (int i = 0; i < 3; i++)
        if (fds[i] >= 0) close(fds[i]);
    if (slave >= 0) close(slave);
    send_started(conn, pid, ptm);
    if (ptm >= 0) close(ptm);  /* the client holds it now (or is gone: the tool gets a hangup) */

    char buf[256];
    size_t have = 0;
    int conn_open = 1;
    for (;;) {
        siginfo_t info;
        memset(&info, 0, sizeof info);
        if (waitid(P_PID, (id_t)pid, &info, WEXITED | WNOHANG | WNOWAIT) == 0 && info.si_pid == pid) {
            kill(-pid, SIGKILL);  /* before the reap: the group's id cannot be reused yet */
            int status = 0;
            while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
            end_all();
            if (WIFSIGNALED(status))
                send_line(conn, "signal", WTERMSIG(status));
            else
                send_line(conn, "exit", WEXITSTATUS(status));
            _exit(0);
        }
        for (;;) {  /* reap the orphans that ended (not the tool: its status is read above) */
            memset(&info, 0, sizeof info);
            if (waitid(P_ALL, 0, &info, WEXITED | WNOHANG | WNOWAIT) < 0 || info.si_pid == 0 ||
                info.si_pid == pid)
                break;
            waitpid(info.si_pid, NULL, WNOHANG);
        }
        if (info.si_pid == pid) continue;
        struct pollfd p[2] = {{self_pipe[0], POLLIN, 0}, {conn, POLLIN, 0}};
        if (poll(p, conn_open ? 2 : 1, -1) < 0 && errno != EINTR) _exit(0);
        if (p[0].revents) {
            char drain[64];
            while (read(self_pipe[0], drain, sizeof drain) > 0) {}
        }
        if (conn_open && p[1].revents) {
            ssize_t r = read(conn, buf + have, sizeof buf - 1 - have);
            if (r <= 0) {  /* the client is gone: so is its tool */
                kill(-pid, SIGKILL);
                kill(pid, SIGKILL);
                conn_open = 0;
                continue;
            }
            have += (size_t)r;
            buf[have] = '\0';
            char *line = buf, *nl;
            while ((nl = strchr(line, '\n'))) {
                *nl = '\0';
                int sig = 0;
                if (sscanf(line, "sig %d", &sig) == 1 && sig > 0 && sig < 65) {
                    if (kill(-pid, sig) < 0) kill(pid, sig);
                }
                line = nl + 1;
            }
            have = strlen(line);
            memmove(buf, line, have);
            if (have >= sizeof buf - 1) have = 0;
        }
    }
}

static int signal_number(const char *name) {
    static const struct { const char *n; int s; } table[] = {
        {"HUP", SIGHUP}, {"INT", SIGINT}, {"QUIT", SIGQUIT}, {"KILL", SIGKILL}, {"TERM", SIGTERM},
        {"USR1", SIGUSR1}, {"USR2", SIGUSR2}, {"PIPE", SIGPIPE}, {"ALRM", SIGALRM},
        {"CONT", SIGCONT}, {"STOP", SIGSTOP}, {"TSTP", SIGTSTP}, {"WINCH", SIGWINCH},
    };
    if (!strncmp(name, "SIG", 3)) name += 3;
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if (!strcmp(name, table[i].n)) return table[i].s;
    return atoi(name);
}

/* SIGKILL for pid and everything below it: a call through `reap` (the `docker exec` path) has
 * its pid in the call file, and the reaper kills a call whose shim was killed hard by that pid;
 * `reap` cannot pass SIGKILL on, and its orphans would go to the container's init. Stopped
 * first, then killed, a few rounds (a fork in between is found in the next). */
static void kill_tree(pid_t root) {
    for (int round = 0; round < 4; round++) {
        static pid_t pids[2048], ppids[2048];
        int n = 0;
        DIR *d = opendir("/proc");
        if (!d) break;
        for (struct dirent *e; (e = readdir(d)) && n < 2048;) {
            if (e->d_name[0] < '1' || e->d_name[0] > '9') continue;
            char path[300], buf[512];
            snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
            int fd = open(path, O_RDONLY | O_CLOEXEC);
            if (fd < 0) continue;
            ssize_t r = read(fd, buf, sizeof buf - 1);
            close(fd);
            if (r <= 0) continue;
            buf[r] = '\0';
            char *rp = strrchr(buf, ')');
            long ppid = 0;
            if (!rp || sscanf(rp + 1, " %*c %ld", &ppid) != 1) continue;
            pids[n] = (pid_t)atoi(e->d_name);
            ppids[n++] = (pid_t)ppid;
        }
        closedir(d);
        int found = 0;
        for (int i = 0; i < n; i++) {
            pid_t up = ppids[i];
            for (int depth = 0; depth < 64 && up > 1 && up != root; depth++) {
                int j = 0;
                while (j < n && pids[j] != up) j++;
                up = j < n ? ppids[j] : 0;
            }
            if (up == root && pids[i] != root) {
                kill(pids[i], SIGSTOP);
                pids[found++] = pids[i];  /* below i: the slots before it are read already */
            }
        }
        for (int i = 0; i < found; i++) kill(pids[i], SIGKILL);
        if (!found) break;
    }
    kill(root, SIGKILL);
}

/* "SIG PID" lines from the signal FIFO (the `docker exec` path and the reaper). */
static void relay_fifo(int fd, char *buf, size_t *have, size_t cap) {
    ssize_t r = read(fd, buf + *have, cap - 1 - *have);
    if (r <= 0) return;
    *have += (size_t)r;
    buf[*have] = '\0';
    char *line = buf, *nl;
    while ((nl = strchr(line, '\n'))) {
        *nl = '\0';
        char name[16];
        long pid = 0;
        if (sscanf(line, "%15s %ld", name, &pid) == 2 && pid > 1) {
            int sig = signal_number(name);
            if (sig == SIGKILL) kill_tree((pid_t)pid);
            else kill((pid_t)pid, sig);
        }
        line = nl + 1;
    }
    *have = strlen(line);
    memmove(buf, line, *have);
    if (*have >= cap - 1) *have = 0;
}

static int serve(const char *path, const char *fifo) {
    struct sockaddr_un addr;
    memset(&addr, 0, sizeof addr);
    addr.sun_family = AF_UNIX;
    if (strlen(path) >= sizeof addr.sun_path) {
        fprintf(stderr, "sandman-agent: socket path too long: %s\n", path);
        return 2;
    }
    strcpy(addr.sun_path, path);
    signal(SIGPIPE, SIG_IGN);
    signal(SIGCHLD, SIG_IGN);  /* the calls' processes reap themselves */
    umask(077);
    int ls = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    unlink(path);
    if (ls < 0 || bind(ls, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(ls, 128) < 0) {
        perror("sandman-agent: listen");
        return 2;
    }
    int ff = fifo[0] ? open(fifo, O_RDWR | O_NONBLOCK | O_CLOEXEC) : -1;
    char fbuf[512];
    size_t fhave = 0;
    uid_t me = getuid();
    for (;;) {
        struct pollfd p[2] = {{ls, POLLIN, 0}, {ff, POLLIN, 0}};
        if (poll(p, ff >= 0 ? 2 : 1, -1) < 0) continue;
        if (ff >= 0 && p[1].revents) relay_fifo(ff, fbuf, &fhave, sizeof fbuf);
        if (!p[0].revents) continue;
        int conn = accept4(ls, NULL, NULL, SOCK_CLOEXEC);
        if (conn < 0) continue;
        struct ucred cred;
        socklen_t cl = sizeof cred;
        if (getsockopt(conn, SOL_SOCKET, SO_PEERCRED, &cred, &cl) < 0 || cred.uid != me) {
            close(conn);  /* only the owner may run things here */
            continue;
        }
        pid_t pid = fork();
        if (pid == 0) {
            close(ls);
            if (ff >= 0) close(ff);
            signal(SIGCHLD, SIG_DFL);
            serve_call(conn);
            _exit(0);
        }
        close(conn);
    }
}

/* --------------------------------------------------------------------------------- client */

static char **fallback_argv;  /* SHIM and the call's own arguments: the path when no agent */

/* Nothing has run: hand the call back to the shim's other paths. The call file is marked done:
 * the shim run again registers a call file of its own (its name has a random part, never
 * reused). With SANDMAN_AGENT_LOG set, the reason is appended to that file (tests count
 * fallbacks). */
static void fall_back(int callfd, const char *why) {
    int err = errno;
    const char *log = getenv("SANDMAN_AGENT_LOG");
    if (log && *log) {
        int fd = open(log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
        if (fd >= 0) {
            dprintf(fd, "fallback: %s: %s\n", why, strerror(err));
            close(fd);
        }
    }
    if (callfd >= 0) {
        if (ftruncate(callfd, 0) == 0) (void)!pwrite(callfd, "done\n", 5, 0);
        close(callfd);
    }
    signal(SIGPIPE, SIG_DFL);
    setenv(FALLBACK_ENV, "1", 1);
    execv(fallback_argv[0], fallback_argv);
    dprintf(2, "sandman: cannot run %s: %s\n", fallback_argv[0], strerror(errno));
    _exit(125);
}

static void add(char **buf, size_t *len, size_t *cap, char tag, const char *s) {
    size_t n = strlen(s) + 2;
    if (*len + n > *cap) {
        *cap = (*len + n) * 2;
        *buf = realloc(*buf, *cap);
        if (!*buf) _exit(125);
    }
    (*buf)[*len] = tag;
    memcpy(*buf + *len + 1, s, n - 1);
    *len += n;
}

/* ---- relays: a terminal of the caller's <-> a pipe or the pty's master (docs/performance.md) */

enum { OUT, IN_PIPE, IN_PTY };  /* to the caller's fd 1/2; from its fd 0 to a pipe, to the pty */

struct relay {
    int from, to, kind, eof, polled;
    size_t off, len;
    char buf[16384];
};

static void relay_init(struct relay *r, int from, int to, int kind) {
    memset(r, 0, sizeof *r);
    r->from = from;
    r->to = to;
    r->kind = kind;
}

static void relay_stop(struct relay *r) {
    r->eof = 1;
    r->len = r->off = 0;
    if (r->kind == IN_PIPE && r->to >= 0) {  /* the tool reads end-of-file */
        close(r->to);
        r->to = -1;
    }
}

static void relay_flush(struct relay *r) {
    while (r->len > r->off) {
        ssize_t w = write(r->to, r->buf + r->off, r->len - r->off);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0 && errno == EAGAIN) return;  /* the pty or pipe is full: poll says when */
        if (w <= 0) {  /* nobody reads it any more */
            relay_stop(r);
            return;
        }
        r->off += (size_t)w;
    }
    r->len = r->off = 0;
}

static int relay_poll(struct relay *r, struct pollfd *p) {
    r->polled = 0;
    if (r->len > r->off) {
        *p = (struct pollfd){r->to, POLLOUT, 0};
        r->polled = POLLOUT;
    } else if (!r->eof) {
        *p = (struct pollfd){r->from, POLLIN, 0};
        r->polled = POLLIN;
    }
    return r->polled != 0;
}

static int relay_step(struct relay *r, struct pollfd *p) {
    if (!r->polled) return 0;
    if (!p->revents) return 1;
    if (r->polled == POLLOUT) {
        relay_flush(r);
        return 1;
    }
    ssize_t n = read(r->from, r->buf, sizeof r->buf);
    if (n > 0) {
        r->off = 0;
        r->len = (size_t)n;
        relay_flush(r);
    } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
        relay_stop(r);  /* end of file, or EIO: the pty's last writer closed it */
    }
    return 1;
}

/* After the call: what the tool wrote before it ended, up to end of file (every writer is gone,
 * the agent saw to it) or ms without a byte. */
static void relay_drain(struct relay *rl, int n, int ms) {
    for (;;) {
        struct pollfd p[3];
        int np = 0;
        for (int k = 0; k < n; k++) {
            if (rl[k].kind != OUT) {
                rl[k].polled = 0;
                continue;
            }
            np += relay_poll(&rl[k], &p[np]);
        }
        if (np == 0) return;
        int r = poll(p, (nfds_t)np, ms);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return;
        for (int k = 0, at = 0; k < n; k++) at += relay_step(&rl[k], &p[at]);
    }
}

/* The caller's terminal in raw mode while it is relayed to the pty (as `docker exec -t` does):
 * every key, ^C included, goes to the pty, whose own line discipline does the rest. Only when
 * this process is in the terminal's foreground; restored at the end and while stopped. */
static struct termios saved_tio;
static int raw_wanted, raw_on;

static void raw_terminal(void) {
    if (!raw_wanted || raw_on || tcgetpgrp(0) != getpgrp() || tcgetattr(0, &saved_tio) < 0) return;
    struct termios t = saved_tio;
    cfmakeraw(&t);
    if (tcsetattr(0, TCSANOW, &t) == 0) raw_on = 1;
}

static void restore_terminal(void) {
    if (raw_on && tcsetattr(0, TCSADRAIN, &saved_tio) == 0) raw_on = 0;
}

/* read() on the agent's socket, taking the fd that "started" may carry (the pty's master). */
static ssize_t recv_some(int s, char *buf, size_t n, int *fd) {
    char cbuf[CMSG_SPACE(sizeof(int) * 2)];
    struct iovec iov = {buf, n};
    struct msghdr msg;
    memset(&msg, 0, sizeof msg);
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf;
    msg.msg_controllen = sizeof cbuf;
    ssize_t r = recvmsg(s, &msg, MSG_CMSG_CLOEXEC);
    if (r < 0) return r;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
        int k = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
        for (int i = 0; i < k; i++) {
            int got;
            memcpy(&got, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
            if (*fd < 0) *fd = got;
            else close(got);
        }
    }
    return r;
}

/* ^C typed at a terminal is SIGINT from the kernel to the terminal's foreground process group,
 * and a terminal has one only while it is some session's controlling terminal. An agent call's
 * tool has no terminal of its own (a cold or `docker exec` call's has the container's pty, where
 * ^C is a byte the engine's client forwards): the caller's session must hold the terminal, so
 * that this client gets the SIGINT and relays it. A login shell holds it; and bash, started as
 * a session leader without one, takes its stdin's terminal by reopening ttyname(0) (bash's
 * check_dev_tty). That reopen needs access to the device node: when the terminal belongs to
 * another user (a pty made by root, the shim run through setpriv or `su -c` as a rootless
 * Podman user), it fails with EACCES, the session has no controlling terminal, ^C is sent to
 * nobody and the call never ends. TIOCSCTTY on stdin, already open, needs no access to the
 * node. With 0 it never takes a terminal from another session, and it changes nothing (EPERM)
 * when this process is no session leader or already has a controlling terminal. */
static void claim_terminal(void) {
    if (isatty(0)) (void)ioctl(0, TIOCSCTTY, 0);
}

static int call(int argc, char **argv) {
    if (argc < 6) return 125;
    const char *path = argv[2];
    int callfd = atoi(argv[3]);
    int nprefix = atoi(argv[5]);
    int i = 6;
    char *req = NULL;
    size_t len = 0, cap = 0;
    const char *cwd = NULL;
    int want_pty = 0;
    for (; i < argc && strcmp(argv[i], "--"); i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-t")) {  /* stdin and stdout are terminals: the call gets a pty */
            want_pty = 1;
            continue;
        }
        if (i + 1 >= argc) return 125;
        const char *v = argv[++i];
        if (!strcmp(a, "-e")) {
            if (strchr(v, '=')) {
                add(&req, &len, &cap, 'E', v);
            } else {
                const char *val = getenv(v);  /* `docker exec -e NAME`: only when it is set */
                if (!val) continue;
                char *kv = malloc(strlen(v) + strlen(val) + 2);
                if (!kv) return 125;
                sprintf(kv, "%s=%s", v, val);
                add(&req, &len, &cap, 'E', kv);
                free(kv);
            }
        } else if (!strcmp(a, "-w")) {
            cwd = v;
        } /* -u: the agent already runs as the user the container was made for */
    }
    if (i >= argc) return 125;
    i++;
    int nargs = argc - i;
    if (nargs <= nprefix && nargs == 0) return 125;
    /* the fallback: SHIM, then the words after the prefix */
    fallback_argv = calloc((size_t)(nargs - nprefix) + 2, sizeof *fallback_argv);
    if (!fallback_argv) return 125;
    fallback_argv[0] = argv[4];
    for (int k = i + nprefix, j = 1; k < argc; k++, j++) fallback_argv[j] = argv[k];

    mode_t um = umask(0);
    umask(um);
    char ubuf[16];
    snprintf(ubuf, sizeof ubuf, "%o", (unsigned)um);
    add(&req, &len, &cap, 'U', ubuf);
    char here[4096];
    if (!cwd) cwd = getcwd(here, sizeof here) ? here : "/";
    add(&req, &len, &cap, 'C', cwd);
    for (int k = i; k < argc; k++) add(&req, &len, &cap, 'A', argv[k]);

    struct sockaddr_un addr;
    memset(&addr, 0, sizeof addr);
    addr.sun_family = AF_UNIX;
    if (strlen(path) >= sizeof addr.sun_path) {  /* too long for a socket address: reach it */
        char dir[4096];                          /* through its folder's fd instead */
        const char *slash = strrchr(path, '/');
        if (!slash || (size_t)(slash - path) >= sizeof dir) fall_back(callfd, "socket path");
        memcpy(dir, path, (size_t)(slash - path));
        dir[slash - path] = '\0';
        int dfd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0) fall_back(callfd, "socket folder");
        snprintf(addr.sun_path, sizeof addr.sun_path, "/proc/self/fd/%d/%s", dfd, slash + 1);
    } else {
        strcpy(addr.sun_path, path);
    }
    /* The agent's socket is in a folder the tool can write (sock/, mounted in its container):
     * only a socket, not a link to one, and only a peer with this uid (the agent always runs
     * as the caller's uid): the call's fds and environment go to nothing else. */
    struct stat sst;
    if (fstatat(AT_FDCWD, path, &sst, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISSOCK(sst.st_mode))
        fall_back(callfd, "not a socket");
    int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s < 0 || connect(s, (struct sockaddr *)&addr, sizeof addr) < 0) fall_back(callfd, "connect");
    struct ucred cred;
    socklen_t cl = sizeof cred;
    if (getsockopt(s, SOL_SOCKET, SO_PEERCRED, &cred, &cl) < 0 || cred.uid != geteuid())
        fall_back(callfd, "peer");

    /* Signals are caught before anything can start, and relayed from then on. */
    make_self_pipe();
    static const int relayed[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGWINCH, SIGUSR1, SIGUSR2,
                                  SIGALRM, SIGTSTP, SIGCONT, SIGTTIN, SIGTTOU};
    for (size_t k = 0; k < sizeof relayed / sizeof relayed[0]; k++) handle(relayed[k]);
    signal(SIGPIPE, SIG_IGN);
    claim_terminal();  /* after the handlers: from here ^C is a SIGINT this process relays */

    /* The caller's fds 0/1/2 go to the tool as they are, except terminals: a terminal is never
     * handed to the tool (what it keeps, or gives a child of its own, could read the user's
     * typing after the call). With -t (stdin and stdout are terminals: the shim's rule for
     * `docker run -t`) the tool gets a pty of the agent's, whose master comes back with
     * "started" and is relayed here; any other terminal becomes a pipe relayed here, as the
     * engine's client relays it for a cold call without -t. */
    unsigned char mask = 0;
    int fds[3], nfds = 0, mine[3] = {-1, -1, -1};
    for (int fd = 0; fd < 3; fd++) {
        if (fcntl(fd, F_GETFD) < 0) continue;
        if (!isatty(fd)) {
            mask |= (unsigned char)(1 << fd);
            fds[nfds++] = fd;
        } else if (want_pty) {
            mask |= (unsigned char)PTY_BIT(fd);
        } else {
            int pp[2];
            if (pipe2(pp, O_CLOEXEC) < 0) fall_back(callfd, "pipe");
            int theirs = fd == 0 ? pp[0] : pp[1];
            mine[fd] = fd == 0 ? pp[1] : pp[0];
            fcntl(mine[fd], F_SETFL, O_NONBLOCK);
            mask |= (unsigned char)(1 << fd);
            fds[nfds++] = theirs;
        }
    }
    if (mask & PTY_ANY) {
        struct winsize ws;
        char wbuf[64];
        if (ioctl(0, TIOCGWINSZ, &ws) == 0 || ioctl(1, TIOCGWINSZ, &ws) == 0) {
            snprintf(wbuf, sizeof wbuf, "%u %u %u %u", ws.ws_row, ws.ws_col, ws.ws_xpixel,
                     ws.ws_ypixel);
            add(&req, &len, &cap, 'W', wbuf);
        } else {
            add(&req, &len, &cap, 'W', "0 0 0 0");
        }
    }
    uint32_t len32 = (uint32_t)len;
    char cbuf[CMSG_SPACE(3 * sizeof(int))];
    memset(cbuf, 0, sizeof cbuf);
    struct iovec iov[2] = {{&len32, sizeof len32}, {&mask, 1}};
    struct msghdr msg;
    memset(&msg, 0, sizeof msg);
    msg.msg_iov = iov;
    msg.msg_iovlen = 2;
    if (nfds) {
        msg.msg_control = cbuf;
        msg.msg_controllen = CMSG_SPACE((size_t)nfds * sizeof(int));
        struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN((size_t)nfds * sizeof(int));
        memcpy(CMSG_DATA(c), fds, (size_t)nfds * sizeof(int));
    }
    ssize_t sent;
    do sent = sendmsg(s, &msg, MSG_NOSIGNAL); while (sent < 0 && errno == EINTR);
    if (sent != (ssize_t)(sizeof len32 + 1) || write_all(s, req, len) < 0) fall_back(callfd, "send");
    for (int k = 0, fd = 0; fd < 3; fd++)  /* the pipes' other ends are the agent's now */
        if (mask & (1 << fd)) {
            if (mine[fd] >= 0) close(fds[k]);
            k++;
        }

    /* The relays: a terminal of the caller's and its pipe, or the pty's master. */
    struct relay rl[3];
    int nrl = 0, ptm = -1;
    if (mine[0] >= 0) relay_init(&rl[nrl++], 0, mine[0], IN_PIPE);
    if (mine[1] >= 0) relay_init(&rl[nrl++], mine[1], 1, OUT);
    if (mine[2] >= 0) relay_init(&rl[nrl++], mine[2], 2, OUT);

    char buf[256];
    size_t have = 0;
    long pid = 0;
    int started = 0, status = -1;
    while (status < 0) {
        struct pollfd p[2 + 3];
        p[0] = (struct pollfd){s, POLLIN, 0};
        p[1] = (struct pollfd){self_pipe[0], POLLIN, 0};
        int np = 2;
        for (int k = 0; k < nrl && started; k++) np += relay_poll(&rl[k], &p[np]);
        if (poll(p, (nfds_t)np, -1) < 0 && errno != EINTR) break;
        for (int k = 0, at = 2; k < nrl; k++) at += relay_step(&rl[k], &p[at]);
        if (p[1].revents) {
            unsigned char sigs[32];
            ssize_t n = read(self_pipe[0], sigs, sizeof sigs);
            for (ssize_t k = 0; k < n; k++) {
                int sig = sigs[k];
                if (sig == SIGTSTP || sig == SIGTTIN || sig == SIGTTOU) {
                    /* the tool's group has no terminal of the caller's to stop it: stop it, then
                     * ourselves, the caller's terminal as it was while stopped */
                    send_line(s, "sig", SIGSTOP);
                    restore_terminal();
                    raise(SIGSTOP);
                    raw_terminal();
                    continue;
                }
                if (sig == SIGWINCH && ptm >= 0) {  /* the pty's size: the kernel signals the tool */
                    struct winsize ws;
                    if (ioctl(0, TIOCGWINSZ, &ws) == 0 || ioctl(1, TIOCGWINSZ, &ws) == 0)
                        (void)ioctl(ptm, TIOCSWINSZ, &ws);
                    continue;
                }
                send_line(s, "sig", sig);
            }
        }
        if (!p[0].revents) continue;
        int got_fd = -1;
        ssize_t r = recv_some(s, buf + have, sizeof buf - 1 - have, &got_fd);
        if (got_fd >= 0) {
            if (ptm < 0 && (mask & PTY_ANY)) ptm = got_fd;
            else close(got_fd);
        }
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        have += (size_t)r;
        buf[have] = '\0';
        char *line = buf, *nl;
        while (status < 0 && (nl = strchr(line, '\n'))) {
            *nl = '\0';
            long v;
            if (sscanf(line, "started %ld", &v) == 1) {
                started = 1;
                pid = v;
                if (callfd >= 0) {  /* the call file says the tool runs (sandman/warm.py), */
                    char pb[40];      /* not as a bare pid: the agent, not the reaper, kills it */
                    int pl = snprintf(pb, sizeof pb, "agent %ld\n", pid);
                    (void)!pwrite(callfd, pb, (size_t)pl, 0);
                }
                if ((mask & PTY_ANY) && ptm < 0) {  /* no pty came: nothing can be relayed */
                    send_line(s, "sig", SIGKILL);
                } else if (ptm >= 0) {
                    fcntl(ptm, F_SETFL, O_NONBLOCK);
                    if (mask & PTY_BIT(0)) relay_init(&rl[nrl++], 0, ptm, IN_PTY);
                    if (mask & (PTY_BIT(1) | PTY_BIT(2)))
                        relay_init(&rl[nrl++], ptm, (mask & PTY_BIT(1)) ? 1 : 2, OUT);
                    if (mask & PTY_BIT(0)) {
                        raw_wanted = 1;
                        raw_terminal();
                    }
                }
            } else if (sscanf(line, "exit %ld", &v) == 1 || sscanf(line, "signal %ld", &v) == 1) {
                /* killed by signal N: 128+N, as `docker run` and `docker exec` report it */
                status = line[0] == 's' ? 128 + (int)v : (int)v;
            }
            line = nl + 1;
        }
        have = strlen(line);
        memmove(buf, line, have);
        if (have >= sizeof buf - 1) have = 0;
    }
    if (!started) fall_back(callfd, "no start");  /* nothing ran: the other path runs it */
    /* The call's processes are gone (the agent ends them all before it reports): what they
     * wrote is still in the pipes or the pty; pass it on, then give the terminal back. */
    relay_drain(rl, nrl, status < 0 ? 200 : 2000);
    restore_terminal();
    if (callfd >= 0 && ftruncate(callfd, 0) == 0) (void)!pwrite(callfd, "done\n", 5, 0);
    /* status < 0: the agent went away under a running tool (its container was removed) */
    return status < 0 ? 128 + SIGKILL : status;
}

/* pin WHO EXIT [DST DEV INO]... -- CMD ARGS...: a cold container's entrypoint (shims/shim.bash).
 * The engine mounts each source by its path, which it resolves again at mount time: a folder
 * swapped for a symlink in between would bring in something that was never checked (issue 19
 * item 2). The shim pinned each source (an fd) and passes the device and inode it had; here,
 * before anything of the tool runs, each mount point must be that object, or nothing runs
 * (exit EXIT, the shim's mount refusal code, one line naming WHO = tool@version). Then CMD
 * replaces this process (same pid, argv, fds, signals), or 127 / 126 as a shell says them. */
static int pin(int argc, char **argv) {
    const char *who = argv[2];
    int code = atoi(argv[3]), i = 4;
    for (; i + 2 < argc && strcmp(argv[i], "--"); i += 3) {
        struct stat st;
        char *e1, *e2;
        unsigned long long dev = strtoull(argv[i + 1], &e1, 10), ino = strtoull(argv[i + 2], &e2, 10);
        if (*e1 || *e2 || stat(argv[i], &st) || (unsigned long long)st.st_dev != dev
            || (unsigned long long)st.st_ino != ino) {
            fprintf(stderr, "sandman: %s: the mount at %s is not the one that was checked (it was "
                    "swapped after the check): nothing was run\n", who, argv[i]);
            return code;
        }
    }
    if (i >= argc || strcmp(argv[i], "--") || i + 1 >= argc) {
        fprintf(stderr, "usage: sandman-agent pin WHO EXIT [DST DEV INO]... -- CMD [ARGS]...\n");
        return 2;
    }
    /* `docker run -t` (20.10) sizes the pty only after the process started: a tool that reads
     * its size first (stty, less, psql) would see 0 x 0. A terminal still without a size is
     * given up to 200 ms to get the caller's, as a native tool has it from the start. */
    struct winsize ws;
    for (int n = 0; n < 40 && isatty(0) && ioctl(0, TIOCGWINSZ, &ws) == 0 && ws.ws_row == 0
                    && ws.ws_col == 0; n++) {
        struct timespec t = {0, 5000000};
        nanosleep(&t, NULL);
    }
    execvp(argv[i + 1], argv + i + 1);
    int err = errno;
    fprintf(stderr, "sandman-agent: %s: %s\n", argv[i + 1],
            err == ENOENT ? "not found" : strerror(err));
    return err == ENOENT || err == ENOTDIR ? 127 : 126;
}

/* reap -- CMD ARGS...: a `docker exec` call's wrapper in a kept container that runs the agent
 * (shims/warm.bash, the warm path with SANDMAN_AGENT=0 or a call handed back): the subreaper of
 * everything the call starts. The tool is its child; when the tool ends, whatever it left
 * (a `setsid` daemon, another group) is killed and reaped (end_all) before this exits as the
 * tool did: a call that returned leaves no process, as a cold container that stopped (promise
 * 14). Its pid is the one the call file names, so a signal sent to it by kill(2) (the signal
 * FIFO) is passed on to the tool; one a terminal sent to the whole group (^C) is not: the tool
 * got it already. */
static pid_t reap_child = -1;

static void reap_forward(int sig, siginfo_t *info, void *ctx) {
    (void)ctx;
    int saved = errno;
    if (reap_child > 0 && (info->si_code == SI_USER || info->si_code == SI_QUEUE)) kill(reap_child, sig);
    errno = saved;
}

static int reap(int argc, char **argv) {
    if (argc < 4 || strcmp(argv[2], "--")) {
        fprintf(stderr, "usage: sandman-agent reap -- CMD [ARGS]...\n");
        return 2;
    }
    if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) < 0) execvp(argv[3], argv + 3);  /* as before */
    static const int forwarded[] = {SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2,
                                    SIGWINCH, SIGALRM, SIGCONT};
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = reap_forward;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigemptyset(&sa.sa_mask);
    pid_t pid = fork();
    if (pid == 0) {
        execvp(argv[3], argv + 3);
        int err = errno;
        fprintf(stderr, "sandman-agent: %s: %s\n", argv[3], err == ENOENT ? "not found" : strerror(err));
        _exit(err == ENOENT || err == ENOTDIR ? 127 : 126);
    }
    if (pid < 0) execvp(argv[3], argv + 3);
    reap_child = pid;
    for (size_t i = 0; i < sizeof forwarded / sizeof forwarded[0]; i++) sigaction(forwarded[i], &sa, NULL);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
    reap_child = -1;
    end_all();
    return WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status);
}

/* --------------------------------------------------------------------------------- route */
/* route MEMO SHIM ARGS...: a warm call's fast path (docs/performance.md, "The fast path").
 * The shim's full runtime, when it hands a call to the agent, writes down what that call's
 * route depended on and where it went (MEMO, in the user's own warm folder: see warm.bash
 * sm_route_write). A later call execs this instead of sourcing the runtime; it takes the route
 * only when everything the runtime would have looked at is the same (uid, gid, groups, the
 * cwd's real path, a terminal or not, every environment variable the runtime reads, the shim
 * not rewritten since) and the arguments are ones the runtime would mount nothing for. It then
 * checks what the runtime checks on every warm call (the reaper runs, the container runs the
 * same agent and mounts this very cwd, the call is registered in a folder that still holds
 * that container) and makes the call as `call` does. Anything else: nothing has run, so it
 * runs SHIM again with SANDMAN_ROUTE_SKIP=1, the full runtime, which decides as always. */
#define ROUTE_SKIP_ENV "SANDMAN_ROUTE_SKIP"
#define ROUTE_MAGIC "sandman-route-2"

static char **route_shim_argv;

static void route_miss(const char *why) {
    const char *log = getenv("SANDMAN_AGENT_LOG");
    if (log && *log) {
        int fd = open(log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
        if (fd >= 0) {
            dprintf(fd, "route: %s\n", why);
            close(fd);
        }
    }
    setenv(ROUTE_SKIP_ENV, "1", 1);
    execv(route_shim_argv[0], route_shim_argv);
    dprintf(2, "sandman: cannot run %s: %s\n", route_shim_argv[0], strerror(errno));
    _exit(125);
}

/* the whole of a small file (the memo, a cmdline, an id) into buf; its length, or -1 */
static ssize_t read_small(int dirfd, const char *path, char *buf, size_t cap, int nofollow) {
    int fd = openat(dirfd, path, O_RDONLY | O_CLOEXEC | (nofollow ? O_NOFOLLOW : 0));
    if (fd < 0) return -1;
    size_t n = 0;
    for (;;) {
        ssize_t r = read(fd, buf + n, cap - n);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        n += (size_t)r;
        if (n == cap) { close(fd); return -1; }
    }
    close(fd);
    return (ssize_t)n;
}

/* is the relative argument a path the runtime would mount nothing for? It is inside the cwd
 * (no ".." part), and every folder on its way is a real folder there (no link that could lead
 * elsewhere), so the cwd's mount already shows it, as the runtime's sm_covered finds. Or a
 * folder on its way does not exist: then it names nothing on this host (`select a/b from t`,
 * a date, a URL), and the runtime passes it on untouched (sm_map_path: every test it makes
 * fails at that folder, whatever follows it). */
static int route_inert(const char *a) {
    if (a[0] == '/') return 0;
    if (a[0] == '-') return !(strchr(a, '=') && strchr(a, '=')[1] == '/');
    if (!strchr(a, '/')) return 1;
    char part[4096];
    size_t n = strlen(a);
    if (n >= sizeof part) return 0;
    for (size_t k = 0; k <= n; k++) {
        if (a[k] != '/' && a[k] != '\0') continue;
        size_t st = k;
        while (st > 0 && a[st - 1] != '/') st--;
        if (k - st == 2 && a[st] == '.' && a[st + 1] == '.') return 0;
        if (a[k] == '\0') break;  /* the last part may be anything (or nothing yet) */
        memcpy(part, a, k);
        part[k] = '\0';
        struct stat st2;
        if (k && lstat(part, &st2) < 0) return errno == ENOENT;
        if (k && !S_ISDIR(st2.st_mode)) return 0;
    }
    return 1;
}

static int route(int argc, char **argv) {
    if (argc < 4) return 125;
    const char *memo = argv[2];
    route_shim_argv = calloc((size_t)argc, sizeof *route_shim_argv);
    if (!route_shim_argv) return 125;
    for (int k = 3; k < argc; k++) route_shim_argv[k - 3] = argv[k];

    static char m[1 << 16];
    struct stat ms, ss;
    int mfd = open(memo, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (mfd < 0) route_miss("no memo");
    /* the user's own file in a folder only the user can change (state/warm, 0700) */
    char dir[4096];
    const char *sl = strrchr(memo, '/');
    struct stat ds;
    if (!sl || (size_t)(sl - memo) >= sizeof dir) route_miss("memo path");
    memcpy(dir, memo, (size_t)(sl - memo));
    dir[sl - memo] = '\0';
    if (fstat(mfd, &ms) < 0 || !S_ISREG(ms.st_mode) || ms.st_uid != geteuid() ||
        (ms.st_mode & 022) || stat(dir, &ds) < 0 || ds.st_uid != geteuid() || (ds.st_mode & 022))
        route_miss("memo not the user's");
    ssize_t mn = read(mfd, m, sizeof m - 1);
    close(mfd);
    if (mn <= 0 || mn == (ssize_t)sizeof m - 1 || m[mn - 1] != '\0') route_miss("memo unread");
    /* a shim rewritten (reshim, upgrade) after the memo: its values may have changed */
    if (stat(argv[3], &ss) < 0 || ss.st_mtim.tv_sec > ms.st_mtim.tv_sec ||
        (ss.st_mtim.tv_sec == ms.st_mtim.tv_sec && ss.st_mtim.tv_nsec >= ms.st_mtim.tv_nsec))
        route_miss("shim newer");
    char *w[4096];
    int nw = 0;
    for (char *p = m; p < m + mn && nw < 4096; p += strlen(p) + 1) w[nw++] = p;
    int i = 0;
#define WORD() (i < nw ? w[i++] : (route_miss("memo short"), ""))
    if (strcmp(WORD(), ROUTE_MAGIC)) route_miss("memo version");
    const char *uid = WORD(), *gid = WORD(), *groups = WORD(), *cwd = WORD(), *tty = WORD(),
               *pathargs = WORD(), *wd = WORD(), *wid = WORD(), *wname = WORD(), *pid = WORD(),
               *agent = WORD(), *rpf = WORD(), *dhost = WORD();
    char b[8192];
    /* who calls: uid, gid and groups as the runtime read them from /proc/self/status */
    snprintf(b, sizeof b, "%u", (unsigned)geteuid());
    if (strcmp(b, uid)) route_miss("uid");
    snprintf(b, sizeof b, "%u", (unsigned)getegid());
    if (strcmp(b, gid)) route_miss("gid");
    gid_t gl[1024];
    int ng = getgroups(1024, gl);
    size_t bl = 0;
    b[0] = '\0';
    for (int k = 0; k < ng && bl < sizeof b - 16; k++)
        bl += (size_t)snprintf(b + bl, sizeof b - bl, "%s%u", k ? " " : "", (unsigned)gl[k]);
    if (ng < 0 || strcmp(b, groups)) route_miss("groups");
    /* where: the cwd's real path, not sticky (a shared folder is refused), not / */
    struct stat cs;
    if (!getcwd(b, sizeof b) || strcmp(b, cwd) || !strcmp(cwd, "/") || stat(".", &cs) < 0 ||
        (cs.st_mode & S_ISVTX))
        route_miss("cwd");
    if ((isatty(0) && isatty(1)) != (tty[0] == '1')) route_miss("tty");
    /* every variable the runtime reads, set or not, with the same value */
    long ne = atol(WORD());
    for (long k = 0; k < ne; k++) {
        const char *name = WORD(), *val = WORD(), *now = getenv(name);
        if (val[0] == '-' ? now != NULL : (!now || strcmp(now, val + 1))) route_miss(name);
    }
    long nx = atol(WORD());
    int xat = i;
    for (long k = 0; k < nx; k++) (void)WORD();
    long np = atol(WORD());
    int pat = i;
    for (long k = 0; k < np; k++) (void)WORD();
    if (strcmp(WORD(), "end") || i != nw || nx < 0 || np < 0) route_miss("memo end");
    if (strcmp(pathargs, "off"))
        for (int k = 4; k < argc; k++)
            if (!route_inert(argv[k])) route_miss("path argument");

    /* the reaper of this home and daemon runs (its command line names its pidfile and daemon) */
    if (*rpf) {
        ssize_t n = read_small(AT_FDCWD, rpf, b, 64, 0);
        if (n <= 0) route_miss("reaper");
        b[n] = '\0';
        char cl[8192], want[8192];
        snprintf(cl, sizeof cl, "/proc/%ld/cmdline", atol(b));
        n = read_small(AT_FDCWD, cl, cl, sizeof cl - 1, 0);
        if (n <= 0) route_miss("reaper");
        for (ssize_t k = 0; k < n; k++) if (!cl[k]) cl[k] = ' ';
        cl[n] = '\0';
        snprintf(want, sizeof want, " sandman.reaper %s %s ", rpf, dhost);
        memmove(cl + 1, cl, (size_t)n + 1);
        cl[0] = ' ';
        if (!strstr(cl, want)) route_miss("reaper");
    }
    /* the container: its init's command line names it; it runs this very agent binary, and
     * mounts this very cwd (the objects, compared by device and inode) */
    int wdfd = open(wd, O_PATH | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    if (wdfd < 0) route_miss("warm folder");
    struct stat ws;
    if (fstat(wdfd, &ws) < 0 || ws.st_uid != geteuid()) route_miss("warm folder");
    {
        char cl[8192], want[1024];
        snprintf(cl, sizeof cl, "/proc/%s/cmdline", pid);
        ssize_t n = read_small(AT_FDCWD, cl, cl, sizeof cl - 1, 0);
        if (n <= 0) route_miss("container");
        for (ssize_t k = 0; k < n; k++) if (!cl[k]) cl[k] = ' ';
        cl[n] = '\0';
        memmove(cl + 1, cl, (size_t)n + 1);
        cl[0] = ' ';
        snprintf(want, sizeof want, " %s ", wname);
        if (!strstr(cl, want) || !strstr(cl, " /run/sandman-agent/agent serve ")) route_miss("container");
        struct stat rs, a1, a2, m1;
        snprintf(cl, sizeof cl, "/proc/%s/root/", pid);
        if (stat(cl, &rs) == 0 && S_ISDIR(rs.st_mode)) {  /* not ours to look at: the key decides */
            snprintf(cl, sizeof cl, "/proc/%s/root/run/sandman-agent/agent", pid);
            if (stat(cl, &a1) < 0 || stat(agent, &a2) < 0 || a1.st_dev != a2.st_dev || a1.st_ino != a2.st_ino)
                route_miss("agent");
            snprintf(cl, sizeof cl, "/proc/%s/root%s", pid, cwd);
            if (stat(cl, &m1) < 0 || m1.st_dev != cs.st_dev || m1.st_ino != cs.st_ino)
                route_miss("mount");
        }
    }
    /* register the call (the runtime's sm_warm_exec: a new name with 128 random bits, made
     * with O_EXCL, never through a link), then check the folder still holds the container */
    char tok[256], u[33];
    {
        unsigned char rnd[16];
        int rf = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
        if (rf < 0 || read_all(rf, rnd, sizeof rnd) < 0) route_miss("random");
        close(rf);
        for (int k = 0; k < 16; k++) sprintf(u + 2 * k, "%02x", rnd[k]);
        char st[1024];
        ssize_t n = read_small(AT_FDCWD, "/proc/self/stat", st, sizeof st - 1, 0);
        if (n <= 0) route_miss("stat");
        st[n] = '\0';
        char *p = strrchr(st, ')');
        unsigned long long start = 0;
        /* after "pid (comm)": field 3 is the state; the start time is field 22 */
        if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d %*d %*d %*d %*d %llu", &start) != 1)
            route_miss("stat");
        snprintf(tok, sizeof tok, "calls/%d-%llu-%s", (int)getpid(), start, u);
    }
    int callfd = openat(wdfd, tok, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (callfd < 0) route_miss("call file");
    struct stat fs;
    char idb[64];
    ssize_t idn = read_small(wdfd, "id", idb, sizeof idb - 1, 1);
    if (idn > 0 && idb[idn - 1] == '\n') idn--;
    if (fstat(callfd, &fs) < 0 || !S_ISREG(fs.st_mode) || idn <= 0 ||
        (size_t)idn != strlen(wid) || memcmp(idb, wid, (size_t)idn)) {
        (void)!write(callfd, "done\n", 5);
        close(callfd);
        route_miss("moved");
    }
    int uf = openat(wdfd, "used", O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (uf >= 0) close(uf);
    fcntl(callfd, F_SETFD, 0);
    close(wdfd);
    unsetenv(ROUTE_SKIP_ENV);

    /* the call, as the runtime would have exec'd it */
    int cargc = 6 + (int)nx + 1 + (int)np + (argc - 4);
    char **cargv = calloc((size_t)cargc + 1, sizeof *cargv);
    char sock[4200], fdb[16], npb[16];
    if (!cargv) return 125;
    snprintf(sock, sizeof sock, "%s/sock/agent.sock", wd);
    snprintf(fdb, sizeof fdb, "%d", callfd);
    snprintf(npb, sizeof npb, "%ld", np);
    int c = 0;
    cargv[c++] = argv[0];
    cargv[c++] = "call";
    cargv[c++] = sock;
    cargv[c++] = fdb;
    cargv[c++] = argv[3];
    cargv[c++] = npb;
    for (long k = 0; k < nx; k++) cargv[c++] = w[xat + k];
    cargv[c++] = "--";
    for (long k = 0; k < np; k++) cargv[c++] = w[pat + k];
    for (int k = 4; k < argc; k++) cargv[c++] = argv[k];
#undef WORD
    return call(c, cargv);
}

int main(int argc, char **argv) {
    if (argc >= 4 && !strcmp(argv[1], "reap")) return reap(argc, argv);
    if (argc >= 4 && !strcmp(argv[1], "pin")) return pin(argc, argv);
    if (argc >= 3 && !strcmp(argv[1], "serve")) return serve(argv[2], argc >= 4 ? argv[3] : "");
    if (argc >= 2 && !strcmp(argv[1], "call")) return call(argc, argv);
    if (argc >= 2 && !strcmp(argv[1], "route")) return route(argc, argv);
    if (argc >= 2 && !strcmp(argv[1], "version")) {
        puts("sandman-agent 1");
        return 0;
    }
    fprintf(stderr, "usage: sandman-agent serve SOCK FIFO NAME | call SOCK CALLFD SHIM NPREFIX [OPTS] -- CMD..."
            " | pin WHO EXIT [DST DEV INO]... -- CMD... | reap -- CMD...\n");
    return 2;
}
