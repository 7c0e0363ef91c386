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

bench: deps
	bash bench/run.sh

fuzz:
	bash fuzz/run.sh
