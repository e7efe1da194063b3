/*
 * CPU limit discovery. The cgroup a process is in is named by
 * /proc/self/cgroup relative to the root of its hierarchy; mountinfo says
 * where that hierarchy (or a sub-tree of it, in a container) is mounted.
 * Both are read rather than assuming /sys/fs/cgroup/cpu.max, because that
 * shortcut is wrong on hybrid hosts (v1 cpu controller, v2 mounted at
 * /sys/fs/cgroup/unified) and outside a cgroup namespace.
 */
#include <errno.h>
#include <limits.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cpu_internal.h"

struct mount_at {
        char root[PATH_MAX];  /* the hierarchy's directory shown at... */
        char point[PATH_MAX]; /* ...this mount point */
        bool found;
};

struct quota {
        long long quota, period;
        int cpus; /* ceil(quota / period); 0 when there is none */
        const char *file;
};

/* mountinfo escapes space, tab, newline and backslash as \ooo. */
static void unescape(char *s)
{
        char *w = s;
        for (char *r = s; *r; r++) {
                if (r[0] == '\\' && r[1] >= '0' && r[1] <= '3' && r[2] >= '0' && r[2] <= '7' &&
                    r[3] >= '0' && r[3] <= '7') {
                        *w++ = (char)((r[1] - '0') * 64 + (r[2] - '0') * 8 + (r[3] - '0'));
                        r += 3;
                } else {
                        *w++ = *r;
                }
        }
        *w = '\0';
}

static bool has_token(const char *list, const char *tok)
{
        size_t n = strlen(tok);
        for (const char *p = list; p && *p;) {
                const char *end = strchr(p, ',');
                size_t len = end ? (size_t)(end - p) : strlen(p);
                if (len == n && memcmp(p, tok, n) == 0)
                        return true;
                p = end ? end + 1 : NULL;
        }
        return false;
}

static void copy_str(char *dst, size_t cap, const char *src)
{
        snprintf(dst, cap, "%s", src);
}

/* The cgroup v2 path ("0::PATH") and the v1 cpu controller's path. */
static void read_proc_cgroup(const char *file, char *v2, char *v1, size_t cap)
{
        v2[0] = v1[0] = '\0';
        FILE *f = fopen(file, "re");
        if (!f)
                return;
        char *line = NULL;
        size_t len = 0;
        while (getline(&line, &len, f) > 0) {
                line[strcspn(line, "\n")] = '\0';
                char *c1 = strchr(line, ':');
                char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
                if (!c2)
                        continue;
                *c1 = *c2 = '\0';
                if (strcmp(line, "0") == 0 && c1 + 1 == c2)
                        copy_str(v2, cap, c2 + 1);
                else if (has_token(c1 + 1, "cpu"))
                        copy_str(v1, cap, c2 + 1);
        }
        free(line);
        fclose(f);
}

/* The first cgroup2 mount and the first v1 mount carrying the cpu controller. */
static void read_mountinfo(const char *file, struct mount_at *v2, struct mount_at *v1)
{
        v2->found = v1->found = false;
        FILE *f = fopen(file, "re");
        if (!f)
                return;
        char *line = NULL;
        size_t len = 0;
        while (getline(&line, &len, f) > 0) {
                line[strcspn(line, "\n")] = '\0';
                /* id parent maj:min root point options [optional...] - type source super */
                char *field[6] = {0};
                char *save = NULL, *tok = strtok_r(line, " ", &save);
                int i = 0;
                for (; tok && i < 6; i++, tok = strtok_r(NULL, " ", &save))
                        field[i] = tok;
                while (tok && strcmp(tok, "-") != 0)
                        tok = strtok_r(NULL, " ", &save);
                char *type = tok ? strtok_r(NULL, " ", &save) : NULL;
                char *source = type ? strtok_r(NULL, " ", &save) : NULL;
                char *super = source ? strtok_r(NULL, " ", &save) : NULL;
                if (i < 6 || !type)
                        continue;
                struct mount_at *m = NULL;
                if (strcmp(type, "cgroup2") == 0 && !v2->found)
                        m = v2;
                else if (strcmp(type, "cgroup") == 0 && !v1->found && super &&
                         has_token(super, "cpu"))
                        m = v1;
                if (!m)
                        continue;
                copy_str(m->root, sizeof(m->root), field[3]);
                copy_str(m->point, sizeof(m->point), field[4]);
                unescape(m->root);
                unescape(m->point);
                m->found = true;
        }
        free(line);
        fclose(f);
}

static bool read_line(const char *path, char *buf, size_t cap)
{
        FILE *f = fopen(path, "re");
        if (!f)
                return false;
        bool ok = fgets(buf, (int)cap, f) != NULL;
        fclose(f);
        return ok;
}

/* The first line of @dir/@name; false when it cannot be read. */
static bool read_file(const char *dir, const char *name, char *buf, size_t cap)
{
        char path[PATH_MAX];
        int n = snprintf(path, sizeof(path), "%s/%s", dir, name);
        return n > 0 && (size_t)n < sizeof(path) && read_line(path, buf, cap);
}

/* A decimal integer at *@s, which moves past it and any blanks after; false
 * for anything else ("max") or a value that does not fit. */
static bool next_ll(const char **s, long long *out)
{
        char *end;
        errno = 0;
        long long v = strtoll(*s, &end, 10);
        if (end == *s || errno)
                return false;
        while (*end == ' ' || *end == '\t' || *end == '\n')
                end++;
        *s = end;
        *out = v;
        return true;
}

/* @dir/@name holds one integer, or two when @second is not NULL. */
static bool read_ll(const char *dir, const char *name, long long *first, long long *second)
{
        char buf[64];
        const char *p = buf;
        return read_file(dir, name, buf, sizeof(buf)) && next_ll(&p, first) &&
               (!second || next_ll(&p, second)) && *p == '\0';
}

/* One directory's quota; false when it sets none. */
static bool dir_quota(const char *dir, bool v2, struct quota *q)
{
        long long quota, period;
        if (v2) {
                if (!read_ll(dir, "cpu.max", &quota, &period))
                        return false; /* also "max 100000": no quota */
        } else {
                if (!read_ll(dir, "cpu.cfs_quota_us", &quota, NULL) ||
                    !read_ll(dir, "cpu.cfs_period_us", &period, NULL))
                        return false;
        }
        if (quota <= 0 || period <= 0)
                return false; /* v1 writes -1 for none */
        long long cpus = (quota + period - 1) / period;
        q->quota = quota;
        q->period = period;
        q->cpus = cpus > INT_MAX ? INT_MAX : (int)cpus;
        q->file = v2 ? "cgroup v2 cpu.max" : "cgroup v1 cpu.cfs_quota_us";
        return true;
}

/*
 * The tightest quota on the way from the process's cgroup up to the top of
 * what the mount shows. @cg is the path from /proc/self/cgroup, relative to
 * the hierarchy's root; the mount shows the sub-tree m->root of it.
 */
static void hierarchy_quota(const char *root, const struct mount_at *m, const char *cg, bool v2,
                            struct quota *best)
{
        if (!m->found || !cg[0])
                return;
        const char *rel = "";
        size_t rlen = strlen(m->root);
        if (strcmp(m->root, "/") == 0)
                rel = cg;
        else if (strncmp(cg, m->root, rlen) == 0 && (cg[rlen] == '/' || cg[rlen] == '\0'))
                rel = cg + rlen;
        /* Otherwise (or "/.." after a move out of the namespace's root) the
         * cgroup is not under the mount: the mount's top is the best guess. */
        if (strstr(rel, "/.."))
                rel = "";

        char top[PATH_MAX * 2], dir[PATH_MAX * 3];
        snprintf(top, sizeof(top), "%s%s", root, strcmp(m->point, "/") == 0 ? "" : m->point);
        snprintf(dir, sizeof(dir), "%s%s", top, strcmp(rel, "/") == 0 ? "" : rel);
        size_t toplen = strlen(top);
        for (;;) {
                struct quota q;
                if (dir_quota(dir[0] ? dir : "/", v2, &q) && (!best->cpus || q.cpus < best->cpus))
                        *best = q;
                if (strlen(dir) <= toplen)
                        break;
                char *slash = strrchr(dir, '/');
                if (!slash || (size_t)(slash - dir) < toplen)
                        break;
                *slash = '\0';
        }
}

int tern__cpu_limit_at(const struct tern__cpu_paths *p, int affinity, struct tern_cpu_limit *out)
{
        memset(out, 0, sizeof(*out));
        const char *mask = "affinity";
        if (affinity <= 0) {
                long n = sysconf(_SC_NPROCESSORS_ONLN);
                affinity = n > 0 ? (int)n : 1;
                mask = "online CPUs";
        }

        char cg2[PATH_MAX], cg1[PATH_MAX];
        struct mount_at m2, m1;
        read_proc_cgroup(p->proc_cgroup, cg2, cg1, sizeof(cg2));
        read_mountinfo(p->mountinfo, &m2, &m1);
        struct quota best = {0};
        hierarchy_quota(p->root, &m2, cg2, true, &best);
        hierarchy_quota(p->root, &m1, cg1, false, &best);

        out->affinity = affinity;
        out->quota_cpus = best.cpus;
        out->count = affinity;
        if (best.cpus && best.cpus < out->count)
                out->count = best.cpus;
        if (out->count < 1)
                out->count = 1;
        if (best.cpus)
                snprintf(out->why, sizeof(out->why), "%s %lld/%lld = %d CPU(s), %s %d", best.file,
                         best.quota, best.period, best.cpus, mask, affinity);
        else
                snprintf(out->why, sizeof(out->why), "%s %d, no cgroup CPU quota", mask, affinity);
        return 0;
}

int tern_cpu_limit(struct tern_cpu_limit *out)
{
        static const struct tern__cpu_paths sys = {
            .proc_cgroup = "/proc/self/cgroup",
            .mountinfo = "/proc/self/mountinfo",
            .root = "",
        };
        cpu_set_t set;
        int affinity = 0;
        if (sched_getaffinity(0, sizeof(set), &set) == 0)
                affinity = CPU_COUNT(&set);
        return tern__cpu_limit_at(&sys, affinity, out);
}
