/*
 * sift-milter.c - the daemon: options, configuration, privileges, pid file,
 * then libmilter's loop (glue.c). Start-up is load (as invoked, errors on the
 * terminal) -> socket -> daemonize -> pid file -> privilege drop -> start
 * (threads, stores) -> publish. SIGHUP builds a new generation beside the
 * current one and publishes it only if it loaded and started without errors.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <malloc.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "conf.h"
#include "diag.h"
#include "glue.h"
#include "log.h"
#include "metrics.h"
#include "scan.h"
#include "xalloc.h"

struct options {
	const char *conf_path;
	const char *state_dir;
	const char *socket;
	bool foreground;
};

static struct options opts;
/* Set once in main() before any thread starts, then only read. */
static ev_env_t daemon_env = {.state_dir = NULL, .offline = false};

/*
 * Where start-up problems are told: the terminal, or when daemonizing the
 * pipe to the parent, which prints them and exits 1 (or 0 once the daemon
 * is ready), so an init script sees whether the daemon really started.
 */
static FILE *report;

static void usage(FILE *fp)
{
	fprintf(fp, "usage: sift-milter [-c FILE] [-d STATEDIR] [-p SOCKET] [-f]\n"
	            "  -c FILE      configuration file (default: built-in defaults)\n"
	            "  -d DIR       state directory (LMDB stores, pid file)\n"
	            "  -p SOCKET    unix:/path or inet:port@host\n"
	            "  -f           stay in the foreground, log to stderr\n"
	            "  -V           print the version\n");
}

/* Loads the configuration and applies the command-line flags over it. */
static scan_gen_t *load_generation(scan_gen_t *prev, diag_t *d)
{
	conf_t *c = opts.conf_path ? conf_load(opts.conf_path, d) : conf_new();
	if (c == NULL)
		return NULL;
	if (opts.state_dir)
		conf_override(c, "state_dir", opts.state_dir);
	if (opts.socket)
		conf_override(c, "socket", opts.socket);
	if (opts.foreground)
		conf_override(c, "foreground", "yes");
	scan_gen_t *g = scan_gen_load(c, prev, &daemon_env, d);
	/*
	 * Compiling the rules (PCRE2's JIT, Vectorscan's literal matcher) takes
	 * tens of MiB for a moment; malloc keeps what they freed as heap unless
	 * told to give it back, and a daemon that loaded SpamAssassin's rules
	 * then held 20-50 MiB it never used again.
	 */
	malloc_trim(0);
	return g;
}

static void log_diag(const diag_t *d)
{
	for (size_t i = 0; i < diag_count(d); i++)
		log_msg(diag_level(d, i) == DIAG_ERROR ? LOG_L_ERR : LOG_L_WARNING, "%s",
		        diag_text(d, i));
}

static uint64_t generation;

/*
 * Starts, moves or stops the metrics endpoint to match s. A failure is
 * logged and leaves the endpoint off (or where it was): metrics never
 * stop mail.
 */
static void metrics_follow(const scan_settings_t *s)
{
	if (metrics_serves(s->metrics_listen))
		return;
	metrics_stop();
	if (s->metrics_listen[0] == '\0')
		return;
	char err[512];
	if (metrics_start(s->metrics_listen, scan_metrics_collect, err, sizeof(err)) < 0)
		log_msg(LOG_L_ERR, "%s", err);
	else
		log_msg(LOG_L_NOTICE, "metrics: GET /metrics on %s", s->metrics_listen);
}

/* Called from libmilter's signal thread on SIGHUP. */
static void reload(void)
{
	scan_gen_t *cur = scan_gen_acquire();
	diag_t *d = diag_new();
	scan_gen_t *g = load_generation(cur, d);
	if (g != NULL && scan_gen_start(g, &daemon_env, d) != 0) {
		scan_gen_unref(g);
		g = NULL;
	}
	log_diag(d);
	metrics_reload(g != NULL);
	if (g == NULL) {
		log_msg(LOG_L_ERR,
		        "reload refused: %zu error(s); the previous configuration stays live",
		        diag_errors(d));
	} else {
		const scan_settings_t *s = scan_gen_settings(g);
		log_setup("sift-milter", s->log_sink, s->log_facility, s->log_level);
		if (strcmp(s->socket, scan_gen_settings(cur)->socket) != 0)
			log_msg(LOG_L_WARNING, "socket changed to %s: takes effect at restart",
			        s->socket);
		if (strcmp(s->pid_file, scan_gen_settings(cur)->pid_file) != 0)
			log_msg(LOG_L_WARNING, "pid_file changed to %s: takes effect at restart",
			        s->pid_file);
		scan_gen_publish(g);
		metrics_generation(++generation);
		metrics_follow(s);
		scan_gen_unref(g);
		log_msg(LOG_L_NOTICE, "configuration reloaded");
	}
	diag_free(d);
	scan_gen_unref(cur);
}

static int make_dir(const char *path)
{
	if (mkdir(path, 0750) == 0 || errno == EEXIST)
		return 0;
	return -1;
}

/* The parent of a daemon: relays what the daemon reports, exits 0 once it is ready. */
static void await_daemon(int fd, pid_t child)
{
	sigset_t all;
	sigemptyset(&all);
	sigaddset(&all, SIGINT);
	sigaddset(&all, SIGTERM);
	sigaddset(&all, SIGHUP);
	pthread_sigmask(SIG_UNBLOCK, &all, NULL); /* Ctrl-C still works here */
	bool ready = false;
	char buf[512];
	ssize_t n;
	while ((n = read(fd, buf, sizeof(buf))) != 0) {
		if (n < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		for (ssize_t i = 0; i < n; i++)
			if (buf[i] == '\0')
				ready = true;
			else
				fputc(buf[i], stderr);
	}
	waitpid(child, NULL, 0); /* the intermediate child, gone at once */
	if (!ready)
		fprintf(stderr, "sift-milter: the daemon did not start\n");
	/*
	 * _exit: the generation and every library's state now belong to the
	 * daemon; exit handlers (and a leak checker's) have nothing to do here.
	 */
	fflush(stderr);
	_exit(ready ? 0 : 1);
}

static int daemonize(void)
{
	int p[2];
	if (pipe(p) < 0)
		return -1;
	fflush(stderr);
	pid_t pid = fork();
	if (pid < 0)
		return -1;
	if (pid > 0) {
		close(p[1]);
		await_daemon(p[0], pid);
	}
	close(p[0]);
	if (setsid() < 0)
		return -1;
	pid = fork();
	if (pid < 0)
		return -1;
	if (pid > 0)
		_exit(0);
	FILE *fp = fdopen(p[1], "w");
	if (fp == NULL)
		return -1;
	/*
	 * Unbuffered: whatever way the daemon ends (an exit that skips stdio's
	 * flush included), every line it wrote has reached the waiting parent.
	 */
	setvbuf(fp, NULL, _IONBF, 0);
	report = fp;
	int fd = open("/dev/null", O_RDWR);
	if (fd >= 0) {
		dup2(fd, 0);
		dup2(fd, 1);
		dup2(fd, 2);
		if (fd > 2)
			close(fd);
	}
	return chdir("/");
}

/* Start-up is over: a daemon's parent may exit 0. */
static void report_ready(void)
{
	if (report != stderr) {
		fputc('\0', report);
		fclose(report);
		report = stderr;
	}
}

/*
 * Stores opened (and perhaps created) while still root - the Bayes store,
 * the block-list mirror - must stay writable by the user the daemon turns
 * into, so everything under the state directory is handed over to it.
 * That directory belongs to the user already, who could swap one of its
 * directories for a link to /etc between a walk by path names and a chown
 * of "dir/shadow"; so the walk goes through descriptors, each directory
 * opened without following links and each entry changed relative to its
 * directory (a link is changed itself, never what it names). It stays on
 * the state directory's file system and goes SIFT_CHOWN_MAX_DEPTH deep.
 */
#define SIFT_CHOWN_MAX_DEPTH 16

static void chown_tree(int dirfd, const char *path, uid_t uid, gid_t gid, dev_t dev, int depth)
{
	DIR *d = fdopendir(dirfd);
	if (d == NULL) {
		close(dirfd);
		return;
	}
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		struct stat st;
		if (fstatat(dirfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
		    S_ISLNK(st.st_mode) || st.st_dev != dev)
			continue;
		char sub[4096];
		snprintf(sub, sizeof(sub), "%s/%s", path, e->d_name);
		if (S_ISDIR(st.st_mode) && depth < SIFT_CHOWN_MAX_DEPTH) {
			int fd = openat(dirfd, e->d_name,
			                O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (fd >= 0)
				chown_tree(fd, sub, uid, gid, dev, depth + 1);
		}
		if (fchownat(dirfd, e->d_name, uid, gid, AT_SYMLINK_NOFOLLOW) < 0)
			fprintf(report, "sift-milter: chown %s: %s\n", sub, strerror(errno));
	}
	closedir(d);
}

/* The state directory (a link to it is followed: its path is the administrator's) and all under it.
 */
static void chown_state_dir(const char *dir, uid_t uid, gid_t gid)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0) {
		fprintf(report, "sift-milter: chown %s: %s\n", dir, strerror(errno));
		if (fd >= 0)
			close(fd);
		return;
	}
	if (fchown(fd, uid, gid) < 0)
		fprintf(report, "sift-milter: chown %s: %s\n", dir, strerror(errno));
	chown_tree(fd, dir, uid, gid, st.st_dev, 0);
}

static int drop_privileges(const scan_settings_t *s)
{
	if (s->user[0] == '\0')
		return 0;
	struct passwd *pw = getpwnam(s->user);
	if (pw == NULL) {
		fprintf(report, "sift-milter: unknown user '%s'\n", s->user);
		return -1;
	}
	gid_t gid = pw->pw_gid;
	if (s->group[0] != '\0') {
		struct group *gr = getgrnam(s->group);
		if (gr == NULL) {
			fprintf(report, "sift-milter: unknown group '%s'\n", s->group);
			return -1;
		}
		gid = gr->gr_gid;
	}
	/*
	 * Everything under the state directory is handed to the user: in a
	 * directory anyone can write to (/tmp, say) that would be other
	 * people's files, and links anyone can plant.
	 */
	struct stat sd;
	if (stat(s->state_dir, &sd) == 0 && (sd.st_mode & S_IWOTH) != 0) {
		fprintf(report,
		        "sift-milter: state_dir %s is writable by everyone: what is in it would be "
		        "handed to user %s; give the daemon a directory of its own\n",
		        s->state_dir, s->user);
		return -1;
	}
	/* The state dir, its stores and the pid file stay writable after the switch. */
	chown_state_dir(s->state_dir, pw->pw_uid, gid);
	/* lchown: what stands at these paths could have been swapped for a link */
	if (lchown(s->pid_file, pw->pw_uid, gid) < 0 && errno != ENOENT)
		fprintf(report, "sift-milter: chown %s: %s\n", s->pid_file, strerror(errno));
	if (strncmp(s->socket, "unix:", 5) == 0 || strncmp(s->socket, "local:", 6) == 0) {
		const char *path = strchr(s->socket, ':') + 1;
		/* socket_group, when set, was given to the socket by glue_open() */
		if (lchown(path, pw->pw_uid, s->socket_group[0] ? (gid_t)-1 : gid) < 0)
			fprintf(report, "sift-milter: chown %s: %s\n", path, strerror(errno));
	}
	if (setgroups(1, &gid) < 0 || setgid(gid) < 0 || setuid(pw->pw_uid) < 0) {
		fprintf(report, "sift-milter: cannot switch to %s: %s\n", s->user, strerror(errno));
		return -1;
	}
	return 0;
}

/*
 * Written while still root, in the state directory, which belongs to the
 * daemon's user: whoever runs as that user could leave a symbolic link at
 * the temporary name, and root opening it for writing would truncate and
 * write the file it names (/etc/shadow, say). So the temporary file is
 * made anew, never through a link (O_EXCL | O_NOFOLLOW), then renamed over
 * the pid file, which replaces a link rather than following it.
 */
static int write_pid_file(const char *path)
{
	char tmp[4200];
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	unlink(tmp); /* a leftover, or a link: removed, not followed */
	int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
	if (fd < 0)
		return -1;
	char buf[32];
	int n = snprintf(buf, sizeof(buf), "%ld\n", (long)getpid());
	bool ok = write(fd, buf, (size_t)n) == n;
	if (close(fd) != 0 || !ok || rename(tmp, path) != 0) {
		unlink(tmp);
		return -1;
	}
	return 0;
}

/*
 * Removes the pid file only while it names this process: a second instance
 * started with the same pid file (and socket, which libmilter hands over)
 * has written its own pid there, and removing that one would leave the
 * running daemon without a pid file for its init script or systemd.
 */
static void remove_pid_file(const char *path)
{
	FILE *fp = fopen(path, "r");
	if (fp == NULL)
		return;
	long pid = 0;
	int n = fscanf(fp, "%ld", &pid);
	fclose(fp);
	if (n == 1 && pid == (long)getpid())
		unlink(path);
}

/* A failure after the pid file was written: say so, tidy up, exit 1. */
static int startup_failed(const scan_settings_t *s)
{
	glue_unbind();
	remove_pid_file(s->pid_file);
	fflush(report);
	return 1;
}

int main(int argc, char **argv)
{
	/*
	 * Before any thread exists: every thread created from here on inherits
	 * these blocked, so only libmilter's signal thread (sigwait) sees them,
	 * and a write to a closed socket is an error, not the end.
	 */
	sigset_t sigs;
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGHUP);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);
	report = stderr;

	int ch;
	while ((ch = getopt(argc, argv, "c:d:p:fhV")) != -1) {
		switch (ch) {
		case 'c': opts.conf_path = optarg; break;
		case 'd': opts.state_dir = optarg; break;
		case 'p': opts.socket = optarg; break;
		case 'f': opts.foreground = true; break;
		case 'V': printf("sift-milter %s\n", PACKAGE_VERSION); return 0;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}
	/*
	 * The daemon moves to "/" when it detaches, and a reload reads the
	 * configuration again: a relative -c, -d or state_dir is taken from the
	 * directory it was started in, at every load.
	 */
	char cwd[4096];
	if (getcwd(cwd, sizeof(cwd)) != NULL) {
		daemon_env.base_dir = xalloc_strdup(cwd);
		if (opts.conf_path != NULL && opts.conf_path[0] != '/') {
			char *abs = xalloc_malloc(strlen(cwd) + strlen(opts.conf_path) + 2);
			sprintf(abs, "%s/%s", cwd, opts.conf_path);
			opts.conf_path = abs;
		}
	}
	log_setup("sift-milter", "stderr", "mail", LOG_L_INFO);
	diag_t *d = diag_new();
	/* The state dir must exist before stores under it are opened. */
	if (opts.state_dir && make_dir(opts.state_dir) < 0) {
		fprintf(stderr, "sift-milter: cannot create %s: %s\n", opts.state_dir,
		        strerror(errno));
		return 1;
	}
	scan_gen_t *g = load_generation(NULL, d);
	diag_print(d, stderr, 1);
	if (g == NULL) {
		fprintf(stderr, "sift-milter: %zu configuration error(s), not starting\n",
		        diag_errors(d));
		return 1;
	}
	diag_free(d);
	const scan_settings_t *s = scan_gen_settings(g);
	if (make_dir(s->state_dir) < 0) {
		fprintf(stderr, "sift-milter: cannot create %s: %s\n", s->state_dir,
		        strerror(errno));
		return 1;
	}
	/*
	 * A daemon's standard error is /dev/null (daemonize()): log = stderr
	 * there would log nothing at all, per-message lines included.
	 */
	if (!s->foreground && strcmp(s->log_sink, "stderr") == 0)
		fprintf(stderr, "sift-milter: warning: log = stderr without -f: the daemon's "
		                "standard error is /dev/null and nothing will be logged; run it "
		                "with -f or set log = syslog\n");
	char err[512];
	if (glue_open(s, err, sizeof(err)) < 0) {
		fprintf(stderr, "sift-milter: %s\n", err);
		return 1;
	}
	if (!s->foreground && daemonize() < 0) {
		fprintf(report, "sift-milter: cannot become a daemon: %s\n", strerror(errno));
		glue_unbind();
		return 1;
	}
	/* An init script or systemd (PIDFile=) needs it to stop the daemon. */
	if (write_pid_file(s->pid_file) < 0) {
		fprintf(report, "sift-milter: cannot write pid file %s: %s\n", s->pid_file,
		        strerror(errno));
		glue_unbind();
		return 1;
	}
	if (drop_privileges(s) < 0)
		return startup_failed(s);
	log_setup("sift-milter", s->log_sink, s->log_facility, s->log_level);
	if (s->user[0] == '\0' && geteuid() == 0) {
		const char *w = "running as root: set user = in the configuration";
		log_msg(LOG_L_WARNING, "%s", w);
		if (report != stderr)
			fprintf(report, "sift-milter: warning: %s\n", w);
	}
	/* Threads, connections and stores now belong to this process and user. */
	d = diag_new();
	int started = scan_gen_start(g, &daemon_env, d);
	if (report != stderr)
		log_diag(d);
	diag_print(d, report, 1);
	if (started != 0) {
		fprintf(report, "sift-milter: %zu start-up error(s), not starting\n",
		        diag_errors(d));
		log_msg(LOG_L_ERR, "%zu start-up error(s), not starting", diag_errors(d));
		diag_free(d);
		int rc = startup_failed(s); /* s lives in g */
		scan_gen_unref(g);
		return rc;
	}
	diag_free(d);
	scan_gen_publish(g);
	metrics_generation(++generation);
	metrics_follow(s);
	log_msg(LOG_L_NOTICE, "sift-milter %s listening on %s", PACKAGE_VERSION, glue_listening());
	/*
	 * The pid file written at start-up, where the daemon's pid is: a reload
	 * that names another path does not move it (see reload()).
	 */
	char pid_file[4096];
	snprintf(pid_file, sizeof(pid_file), "%s", s->pid_file);
	/*
	 * Published, the generation holds its own reference. Kept until the
	 * stop, this one would keep the first generation alive past every
	 * reload, its modules running beside the live ones: its Redis threads
	 * on a server the configuration no longer names, with the updates
	 * queued for it, its DNS service, its compiled rules' memory.
	 */
	scan_gen_unref(g); /* s lives in g: not used below */
	report_ready();
	int rc = glue_run(reload);
	/*
	 * Release the modules before saying "stopped": their threads stop and
	 * what they hold for the next start (unconfirmed reputation updates,
	 * say) is saved. A connection still in flight after stop_timeout keeps
	 * its generation, and the process exits without waiting for it.
	 */
	metrics_stop();
	scan_gen_publish(NULL);
	remove_pid_file(pid_file);
	log_msg(LOG_L_NOTICE, "sift-milter stopped");
	return rc == 0 ? 0 : 1;
}
