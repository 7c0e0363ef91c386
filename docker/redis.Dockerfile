# Redis 7 with the ratelimit module loaded.
# Build from the repository root:
#   docker build -f docker/redis.Dockerfile -t redis-ratelimit .

# --- build the module (bindgen in redis-module needs libclang) -------------
FROM rust:1-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends libclang-dev clang \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release -p redis-ratelimit \
 && cp target/release/libredis_ratelimit.so /libredis_ratelimit.so

# --- runtime: the official image (same Debian release as the builder) ------
FROM redis:7-bookworm
COPY --from=build /libredis_ratelimit.so /usr/local/lib/redis/modules/libredis_ratelimit.so
# A config file, so that `command:` overrides (cluster flags) keep the module.
RUN mkdir -p /usr/local/etc/redis \
 && printf 'loadmodule /usr/local/lib/redis/modules/libredis_ratelimit.so\n' \
      > /usr/local/etc/redis/redis.conf
EXPOSE 6379
CMD ["redis-server", "/usr/local/etc/redis/redis.conf"]
