/**
 * @file
 * How many CPUs this process may really use: the affinity mask, capped by a
 * cgroup CPU quota (cgroup v2 cpu.max, cgroup v1 cpu.cfs_quota_us). In a
 * container the quota is what `docker run --cpus` or a Kubernetes CPU limit
 * sets; the host's CPU count says nothing about it, and a worker per host
 * CPU under a 2-CPU quota only adds throttling.
 */
#ifndef TERN_CPU_H
#define TERN_CPU_H

#include "export.h"

/** What tern_cpu_limit() found. */
struct tern_cpu_limit {
        int count;      /**< what to run on: min(affinity, quota_cpus), >= 1 */
        int affinity;   /**< CPUs in the affinity mask (online CPUs if unknown) */
        int quota_cpus; /**< ceil(quota / period) of the tightest quota; 0: none */
        char why[160];  /**< one line for the start-up log, e.g. "cgroup v2
                         * cpu.max 150000/100000 -> 2, affinity 8" */
};

/**
 * Fills @p out (borrowed, written only) from sched_getaffinity, /proc/self/cgroup,
 * /proc/self/mountinfo and the cgroup files of this process's cgroup and of
 * its ancestors up to the mount point (a quota set on a parent slice binds
 * too). Anything it cannot read counts as "no limit", so it never fails:
 * returns 0. [any]
 */
TERN_EXPORT int tern_cpu_limit(struct tern_cpu_limit *out);

#endif
