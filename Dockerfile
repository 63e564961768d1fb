# The three images, one target each (podman build takes the same arguments):
#   docker build --target operator           -t exactlyonce/operator:0.1.0 .
#   docker build --target order-service      -t exactlyonce/order-service:0.1.0 .
#   docker build --target inventory-consumer -t exactlyonce/inventory-consumer:0.1.0 .
# All three binaries come out of one cached build stage, so the second and third image cost a
# copy. Without an engine, scripts/build-images.sh packs the same layout from target/release.

# The workspace's rust-version; any later 1.x works too.
ARG RUST_VERSION=1.89

# Builder and runtime are both Debian 12 (bookworm): the binaries link the builder's glibc
# and must find the same or a newer one at run time.
FROM docker.io/library/rust:${RUST_VERSION}-slim-bookworm AS chef
# Dependency caching with cargo-chef rather than the copy-manifests-plus-dummy-src trick: the
# workspace has six members with explicit [[bin]] and [[bench]] targets, and the trick needs a
# stub per target, a touch so cargo rebuilds the real sources, and an edit to this file for
# every new member or target. cargo-chef derives the skeleton from the manifests and Cargo.lock
# (our own version masked), so the cooked layer is reused until a dependency changes.
ARG CARGO_CHEF_VERSION=0.1.78
RUN cargo install cargo-chef --locked --version "${CARGO_CHEF_VERSION}" \
    && rm -rf "${CARGO_HOME}/registry"
WORKDIR /src

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
COPY --from=planner /src/recipe.json recipe.json
# The same packages and targets as the real build below: Cargo unifies features over the
# selected packages (with the test crate in the set, hyper-util and tower get more), so any
# other selection would compile some dependencies again in the last step.
RUN cargo chef cook --release --locked -p operator -p order -p consumer --bins \
    --recipe-path recipe.json
COPY . .
RUN cargo build --release --locked -p operator -p order -p consumer --bins

# Distroless cc: glibc, libgcc_s, CA certificates and /etc/passwd with nonroot (65532); no shell
# and no package manager. Files copied in stay root-owned, so the process cannot change them.
FROM gcr.io/distroless/cc-debian12:nonroot AS runtime
USER 65532:65532

FROM runtime AS operator
COPY --from=builder /src/target/release/exactly-once-operator /usr/local/bin/exactly-once-operator
ENTRYPOINT ["/usr/local/bin/exactly-once-operator"]

FROM runtime AS order-service
COPY --from=builder /src/target/release/order-service /usr/local/bin/order-service
ENTRYPOINT ["/usr/local/bin/order-service"]

FROM runtime AS inventory-consumer
COPY --from=builder /src/target/release/inventory-consumer /usr/local/bin/inventory-consumer
ENTRYPOINT ["/usr/local/bin/inventory-consumer"]
