# Two commands on a fresh Debian machine:
#   make run    build, then start Redis with the module (and the HTTP shim)
#   make test   install prerequisites and run the whole test suite
.PHONY: run stop test deps bench fuzz

run: deps
	bash scripts/run.sh

stop:
	bash scripts/stop.sh

test:
	bash scripts/test.sh

deps:
	bash scripts/install-deps.sh

# Throughput and memory (bench/run.sh), then instructions per call under
# callgrind (bench/profile.sh) without and with AOF and a replica. With
# REDIS_CELL_SO=/path/to/libredis_cell.so both put redis-cell beside us.
bench: deps
	bash bench/run.sh
	PROFILE_SETUPS="$${PROFILE_SETUPS:-plain aof replica}" \
	PROFILE_WORKLOADS="$${PROFILE_WORKLOADS:-tokenbucket fixedwindow limits-2 cell incr}" \
	BENCH_BUILD=0 bash bench/profile.sh

fuzz:
	bash fuzz/run.sh
