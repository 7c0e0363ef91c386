# The api-shim HTTP service.
# Build from the repository root:
#   docker build -f docker/shim.Dockerfile -t api-shim .

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
# Only the shim is compiled; the module crate is just parsed as a workspace member.
RUN cargo build --release -p api-shim \
 && cp target/release/api-shim /api-shim

FROM debian:bookworm-slim
RUN useradd --system --no-create-home --shell /usr/sbin/nologin shim
COPY --from=build /api-shim /usr/local/bin/api-shim
COPY api-shim/config.example.toml /etc/api-shim/config.toml
USER shim
ENV SHIM_LISTEN=0.0.0.0:8080 \
    SHIM_CONFIG=/etc/api-shim/config.toml
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/api-shim"]
