# syntax=docker/dockerfile:1
# ringway in a container: built in the Rust image, run from Debian slim as an unprivileged user.
# The configuration is mounted at /etc/ringway/ (nothing is baked in); see docs/containers.md.
#
#   docker build -t ringway:0.1.0 .
#   docker run --rm -p 8080:8080 -v "$PWD/ringway.toml:/etc/ringway/ringway.toml:ro" ringway:0.1.0
#
# Docker's default seccomp profile denies io_uring, and ringway then runs on epoll; to allow it:
#   --security-opt seccomp=deploy/seccomp/ringway-io_uring.json   (read docs/containers.md first)

FROM rust:1-bookworm AS build
WORKDIR /src
# Manifests, sources and the bench files Cargo.toml names; tests, fuzz and docs stay out.
COPY Cargo.toml Cargo.lock ./
COPY src src
COPY benches benches
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked \
    && strip --strip-debug target/release/ringway \
    && cp target/release/ringway /ringway

# Debian slim rather than distroless: the same glibc as the build stage, CA roots for https://
# upstreams, and a /bin/sh for the Kubernetes start script (deploy/kubernetes/). ~80 MB.
FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 ringway \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin ringway \
    && install -d -o ringway -g ringway -m 0750 /run/ringway
COPY --from=build /ringway /usr/bin/ringway
USER 10001:10001
# Unprivileged: listen on 8080 (or set net.ipv4.ip_unprivileged_port_start, as Docker does).
EXPOSE 8080
# SIGTERM drains for up to [server] shutdown_timeout (30s by default): give `docker stop -t 40`.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/bin/ringway"]
CMD ["--config", "/etc/ringway/ringway.toml"]
