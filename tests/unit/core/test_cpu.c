/*
 * CPU limit discovery against fake /proc and cgroup trees in a temp dir:
 * cgroup v2 and v1 quotas, "no quota" spellings, rounding, the affinity
 * mask as the tighter bound, quotas on ancestors, container mount views.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <limits.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cpu_internal.h"

static char tmp[PATH_MAX];
static char proc_cgroup[PATH_MAX + 32], mountinfo[PATH_MAX + 32];

static void mkdir_p(const char *path)
{
        char buf[PATH_MAX];
        snprintf(buf, sizeof(buf), "%s", path);
        for (char *p = buf + 1; *p; p++) {
                if (*p != '/')
                        continue;
                *p = '\0';
                cr_assert(mkdir(buf, 0755) == 0 || errno == EEXIST, "mkdir %s", buf);
                *p = '/';
        }
        cr_assert(mkdir(buf, 0755) == 0 || errno == EEXIST, "mkdir %s", buf);
}

/* Writes @text to tmp/@rel, creating the directories on the way. */
static void put(const char *rel, const char *text)
{
        char path[PATH_MAX * 2];
        snprintf(path, sizeof(path), "%s/%s", tmp, rel);
        char *slash = strrchr(path, '/');
        *slash = '\0';
        mkdir_p(path);
        *slash = '/';
        FILE *f = fopen(path, "w");
        cr_assert_not_null(f, "open %s", path);
        fputs(text, f);
        fclose(f);
}

static void setup(void)
{
        snprintf(tmp, sizeof(tmp), "%s/tern-cpu-XXXXXX",
                 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
        cr_assert_not_null(mkdtemp(tmp));
        snprintf(proc_cgroup, sizeof(proc_cgroup), "%s/proc/self/cgroup", tmp);
        snprintf(mountinfo, sizeof(mountinfo), "%s/proc/self/mountinfo", tmp);
}

static void teardown(void)
{
        char cmd[PATH_MAX + 16];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmp);
        cr_assert_eq(system(cmd), 0);
}

#define V2_MOUNT "30 25 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw\n"
#define V1_MOUNT                                                                                   \
        "35 25 0:31 / /sys/fs/cgroup/cpu,cpuacct rw shared:9 - cgroup cgroup rw,cpu,cpuacct\n"

static struct tern_cpu_limit limit(int affinity)
{
        struct tern__cpu_paths p = {
            .proc_cgroup = proc_cgroup, .mountinfo = mountinfo, .root = tmp};
        struct tern_cpu_limit out;
        cr_assert_eq(tern__cpu_limit_at(&p, affinity, &out), 0);
        return out;
}

/* A pure cgroup v2 host, the process in /app. */
static void v2_with(const char *cpu_max)
{
        put("proc/self/cgroup", "0::/app\n");
        put("proc/self/mountinfo", "22 1 8:1 / / rw - ext4 /dev/sda1 rw\n" V2_MOUNT);
        put("sys/fs/cgroup/cpu.max", "max 100000\n");
        put("sys/fs/cgroup/app/cpu.max", cpu_max);
}

TestSuite(cpu, .init = setup, .fini = teardown);

Test(cpu, v2_quota_caps_affinity)
{
        v2_with("150000 100000\n");
        struct tern_cpu_limit l = limit(8);
        cr_assert_eq(l.count, 2);
        cr_assert_eq(l.quota_cpus, 2);
        cr_assert_eq(l.affinity, 8);
        cr_assert_str_eq(l.why, "cgroup v2 cpu.max 150000/100000 = 2 CPU(s), affinity 8");
}

Test(cpu, v2_max_means_no_quota)
{
        v2_with("max 100000\n");
        struct tern_cpu_limit l = limit(4);
        cr_assert_eq(l.count, 4);
        cr_assert_eq(l.quota_cpus, 0);
        cr_assert_str_eq(l.why, "affinity 4, no cgroup CPU quota");
}

Test(cpu, quota_rounds_up)
{
        v2_with("100001 100000\n");
        cr_assert_eq(limit(8).count, 2);
        v2_with("50000 100000\n"); /* half a CPU still needs one worker */
        cr_assert_eq(limit(8).count, 1);
        v2_with("300000 100000\n");
        cr_assert_eq(limit(8).count, 3);
}

Test(cpu, affinity_smaller_than_quota_wins)
{
        v2_with("400000 100000\n");
        struct tern_cpu_limit l = limit(2);
        cr_assert_eq(l.count, 2);
        cr_assert_eq(l.quota_cpus, 4);
}

Test(cpu, ancestor_quota_binds)
{
        /* Kubernetes puts the pod's limit on the pod cgroup, the container
         * below it may carry a looser one or none. */
        put("proc/self/cgroup", "0::/kubepods/pod1/ctr\n");
        put("proc/self/mountinfo", V2_MOUNT);
        put("sys/fs/cgroup/kubepods/cpu.max", "max 100000\n");
        put("sys/fs/cgroup/kubepods/pod1/cpu.max", "200000 100000\n");
        put("sys/fs/cgroup/kubepods/pod1/ctr/cpu.max", "max 100000\n");
        cr_assert_eq(limit(16).count, 2);
        put("sys/fs/cgroup/kubepods/pod1/ctr/cpu.max", "500000 100000\n");
        cr_assert_eq(limit(16).count, 2);
        put("sys/fs/cgroup/kubepods/pod1/ctr/cpu.max", "100000 100000\n");
        cr_assert_eq(limit(16).count, 1);
}

Test(cpu, v1_no_quota)
{
        put("proc/self/cgroup", "4:cpu,cpuacct:/app\n1:name=systemd:/app\n");
        put("proc/self/mountinfo", V1_MOUNT);
        put("sys/fs/cgroup/cpu,cpuacct/app/cpu.cfs_quota_us", "-1\n");
        put("sys/fs/cgroup/cpu,cpuacct/app/cpu.cfs_period_us", "100000\n");
        struct tern_cpu_limit l = limit(6);
        cr_assert_eq(l.count, 6);
        cr_assert_eq(l.quota_cpus, 0);
}

Test(cpu, v1_quota)
{
        put("proc/self/cgroup", "4:cpu,cpuacct:/app\n");
        put("proc/self/mountinfo", V1_MOUNT);
        put("sys/fs/cgroup/cpu,cpuacct/app/cpu.cfs_quota_us", "250000\n");
        put("sys/fs/cgroup/cpu,cpuacct/app/cpu.cfs_period_us", "100000\n");
        struct tern_cpu_limit l = limit(8);
        cr_assert_eq(l.count, 3);
        cr_assert_str_eq(l.why, "cgroup v1 cpu.cfs_quota_us 250000/100000 = 3 CPU(s), affinity 8");
}

Test(cpu, v1_container_view_without_cgroupns)
{
        /* Docker on v1: /proc/self/cgroup names the host path, and the
         * container's mount shows just that cgroup at the mount point. */
        put("proc/self/cgroup", "4:cpu,cpuacct:/docker/abc\n");
        put("proc/self/mountinfo", "35 25 0:31 /docker/abc /sys/fs/cgroup/cpu,cpuacct ro - cgroup "
                                   "cgroup ro,cpu,cpuacct\n");
        put("sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us", "100000\n");
        put("sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us", "100000\n");
        cr_assert_eq(limit(4).count, 1);
}

Test(cpu, hybrid_host_uses_v1_cpu_controller)
{
        /* v2 mounted at /sys/fs/cgroup/unified without the cpu controller,
         * cpu on v1: the v1 quota is the one that binds. */
        put("proc/self/cgroup", "3:cpu:/svc\n0::/svc\n");
        put("proc/self/mountinfo", "30 25 0:26 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n"
                                   "35 25 0:31 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n");
        mkdir_p(tmp); /* the unified tree has no cpu.max at all */
        put("sys/fs/cgroup/unified/svc/cgroup.procs", "1\n");
        put("sys/fs/cgroup/cpu/svc/cpu.cfs_quota_us", "150000\n");
        put("sys/fs/cgroup/cpu/svc/cpu.cfs_period_us", "100000\n");
        cr_assert_eq(limit(8).count, 2);
}

Test(cpu, escaped_mount_point)
{
        put("proc/self/cgroup", "0::/\n");
        put("proc/self/mountinfo", "30 25 0:26 / /cg\\040root rw - cgroup2 cgroup2 rw\n");
        put("cg root/cpu.max", "100000 100000\n");
        cr_assert_eq(limit(4).count, 1);
}

Test(cpu, nothing_readable_falls_back)
{
        /* No proc files at all: the affinity count, or the online CPUs when
         * that is unknown too; never 0. */
        struct tern_cpu_limit l = limit(3);
        cr_assert_eq(l.count, 3);
        cr_assert_str_eq(l.why, "affinity 3, no cgroup CPU quota");
        l = limit(0);
        cr_assert_geq(l.count, 1);
        cr_assert(strstr(l.why, "online CPUs") != NULL);
}

Test(cpu, garbage_is_no_quota)
{
        v2_with("lots\n");
        cr_assert_eq(limit(4).count, 4);
        v2_with("0 100000\n");
        cr_assert_eq(limit(4).count, 4);
}

Test(cpu, this_process)
{
        cpu_set_t set;
        cr_assert_eq(sched_getaffinity(0, sizeof(set), &set), 0);
        struct tern_cpu_limit l;
        cr_assert_eq(tern_cpu_limit(&l), 0);
        cr_assert_eq(l.affinity, CPU_COUNT(&set));
        cr_assert_geq(l.count, 1);
        cr_assert_leq(l.count, l.affinity);
        cr_assert(l.why[0]);
}
