# tern-chat (with tern-echo, tern-kv and tern-proxy) as a container. See docs/deploy.md.
#
#   docker build -t tern-chat .
#   docker run --rm -p 7000:7000 --cpus 2 tern-chat
#
# Base images are arguments so that a machine without a registry can build
# from bases it made itself (tests/container/run.sh imports a debootstrap
# tree and passes --build-arg BASE_BUILD=...). A prepared base that already
# has the build packages installs nothing; plain debian:bookworm gets them
# from apt through tools/install-deps.sh.
ARG BASE_BUILD=debian:bookworm

FROM ${BASE_BUILD} AS build
WORKDIR /src
COPY . .
RUN TERN_DEPS_NO_TESTS=1 bash tools/install-deps.sh \
 && cmake -S . -B /build -DCMAKE_BUILD_TYPE=Release \
          -DTERN_BUILD_TESTS=OFF -DTERN_BUILD_TOOLS=OFF -DTERN_BUILD_EXAMPLES=OFF \
 && cmake --build /build -j "$(nproc)" --target tern-chat tern-echo tern-kv tern-proxy
# The runtime tree: the three programs, exactly the shared objects they load
# (found by ldd, so a new dependency comes along by itself) and a passwd
# entry for the unprivileged user. glibc >= 2.34 has the files and dns NSS
# modules built in, so name resolution needs no further library.
RUN set -eu; \
    mkdir -p /rootfs/usr/local/bin /rootfs/etc /rootfs/tmp; \
    chmod 1777 /rootfs/tmp; \
    for p in tern-chat tern-echo tern-kv tern-proxy; do \
      strip -o /rootfs/usr/local/bin/$p /build/bin/$p; \
    done; \
    for p in tern-chat tern-echo tern-kv tern-proxy; do \
      for lib in $(ldd /rootfs/usr/local/bin/$p | grep -o '/[^ ]*'); do \
        cp -L --parents "$lib" /rootfs/; \
      done; \
    done; \
    echo 'tern:x:10001:10001:tern:/nonexistent:/usr/sbin/nologin' > /rootfs/etc/passwd; \
    echo 'tern:x:10001:' > /rootfs/etc/group

# Distroless-style: no shell, no package manager, no compiler; ~5 MB.
FROM scratch
COPY --from=build /rootfs/ /
USER 10001:10001
ENV TERN_PORT=7000
# The admin endpoint of whichever program runs, on loopback only: the health
# check asks its /healthz, so every program has a working health check
# (--entrypoint /usr/local/bin/tern-kv included). Set TERN_ADMIN=0.0.0.0:9100
# to let Prometheus or Kubernetes probes reach it, TERN_ADMIN= to turn it off
# (then the check joins the chat as a client, which only tern-chat answers).
ENV TERN_ADMIN=127.0.0.1:9100
EXPOSE 7000
# tern-chat drains on SIGTERM: clients read "* server shutting down", output
# is flushed for at most 5 s, exit 0. Give `docker stop -t` more than that.
STOPSIGNAL SIGTERM
# GET /healthz from the admin endpoint (TERN_ADMIN): answered by a worker
# loop, so it proves the workers run, not just an open port; the lobby sees
# no probe. Without TERN_ADMIN, 'self' joins the chat at TERN_BIND/TERN_PORT
# and expects the welcome line instead.
HEALTHCHECK --interval=10s --timeout=5s --start-period=5s --retries=3 \
  CMD ["/usr/local/bin/tern-chat", "--check", "self"]
ENTRYPOINT ["/usr/local/bin/tern-chat"]
