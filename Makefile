# Shortcuts; run.sh does the work (and installs what is missing).
.PHONY: demo test lint
demo:
	./run.sh demo
test:
	./run.sh test
lint:
	./run.sh lint
