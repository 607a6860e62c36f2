# The treecache node image: two static binaries on an empty base.
#
# Two ways to build the same runtime image (docs/deployment.md, "Running in containers"):
#
#   docker build -t treecache .
#       compiles both binaries inside the official Rust image (stage
#       "builder") and copies them into the final stage "runtime".
#
#   RUSTFLAGS="-C target-feature=+crt-static" \
#     cargo build --release --workspace --target x86_64-unknown-linux-gnu
#   docker build --target runtime-prebuilt -t treecache .
#       copies binaries already built on the host (scripts/build-image.sh).
#
# The classic (non-BuildKit) builder builds every stage up to the target
# one, even stages the target does not use. Hence "runtime-prebuilt" comes
# before "builder", so that it needs no Rust image, and it still builds when
# the host binaries are absent, so that the default target "runtime" needs
# none. BuildKit builds only the stages the target uses.

# Settings shared by both runtime images. The defaults are those of the
# configuration table in README.md; NODE_ID has no default and is given per container. The image
# has no shell, so the CLI is run directly:
#   docker exec NODE-1 /treecache-cli health NODE-1
FROM scratch AS runtime-base
# The version in Cargo.toml (scripts/check-deploy-files.sh checks they agree).
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="treecache" \
      org.opencontainers.image.description="A distributed key-value cache whose nodes form a binary tree: the node (/treecache) and its command-line client (/treecache-cli)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.base.name="scratch"
# /data holds the root's log and snapshots (cache nodes ignore DATA_DIR).
# It is made here, owned by the node's user, so that a volume mounted there
# starts out writable by it; keep it on a volume, or a new container of the
# root starts empty.
COPY --chown=10001:10001 deploy/image/data /data
VOLUME /data
# /keys holds the cluster key in the container setups (`treecache keygen`
# writes it there on a volume); made here, owned by the node's user, for the
# same reason.
COPY --chown=10001:10001 deploy/image/keys /keys
ENV DATA_DIR=/data \
    TREE_DEPTH=3 \
    API_PORT=5000 \
    ROOT_NODE_ID=1 \
    STARTUP_DELAY=5 \
    ZOOKEEPER=zookeeper:2181 \
    ZK_PREFIX=/treecache \
    LOG_LEVEL=info \
    TREECACHE_MODE=docker
USER 10001:10001
EXPOSE 5000
# Healthy once the node serves its part of the tree (GET /ready: joined,
# or on the root its data and tree loaded). No shell, so the CLI runs
# directly; in docker mode (above) the NODE "self" is this container's node
# on 127.0.0.1 and its API_PORT. (--start-interval, for quicker probes while
# starting, is unknown to the classic builder and to Docker Engines before
# 25; Compose probes every 2 s instead.)
HEALTHCHECK --interval=5s --timeout=3s --start-period=60s --retries=3 \
    CMD ["/treecache-cli", "--timeout", "2", "ready", "self"]
ENTRYPOINT ["/treecache", "node"]

# Runtime image from binaries built on the host; BIN_DIR is relative to the
# build context. Both images carry the Cargo.lock of their build, the exact
# dependency versions inside the binaries. Cargo.lock is always there, and
# the bracket patterns match the binaries or nothing, so this stage builds
# without them (giving an image that lacks them) instead of failing.
FROM runtime-base AS runtime-prebuilt
ARG BIN_DIR=target/x86_64-unknown-linux-gnu/release
COPY Cargo.lock ${BIN_DIR}/treecach[e] ${BIN_DIR}/treecache-cl[i] /

# Static binaries built from source. glibc's static libc resolves names
# through /etc/hosts and DNS on its own, which is all the nodes need.
FROM rust:1.95.0-slim-bookworm AS builder
WORKDIR /src
COPY . .
ENV RUSTFLAGS="-C target-feature=+crt-static"
RUN cargo build --release --locked --workspace --target x86_64-unknown-linux-gnu

# The default image: the binaries of the builder stage.
FROM runtime-base AS runtime
COPY --from=builder \
     /src/Cargo.lock \
     /src/target/x86_64-unknown-linux-gnu/release/treecache \
     /src/target/x86_64-unknown-linux-gnu/release/treecache-cli \
     /
