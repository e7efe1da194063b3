#ifndef TERN_CPU_INTERNAL_H
#define TERN_CPU_INTERNAL_H

#include "cpu.h"

/* Where tern__cpu_limit_at looks; tests point these at a fake tree. */
struct tern__cpu_paths {
        const char *proc_cgroup; /* normally "/proc/self/cgroup" */
        const char *mountinfo;   /* normally "/proc/self/mountinfo" */
        const char *root;        /* prefixed to every mount point; "" normally */
};

/* tern_cpu_limit with @affinity CPUs in the mask (<= 0: unknown, use the
 * online count) and the cgroup files found through @p (borrowed). Returns 0. */
int tern__cpu_limit_at(const struct tern__cpu_paths *p, int affinity, struct tern_cpu_limit *out);

#endif
