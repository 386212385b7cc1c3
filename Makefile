run:
	bash scripts/bootstrap.sh
	.venv/bin/python scripts/stack.py run

test:
	bash scripts/test.sh $(ARGS)

prod:
	bash scripts/bootstrap.sh
	.venv/bin/python -m scripts.prod run

chat:
	.venv/bin/python scripts/chat.py

menu:
	.venv/bin/python -m scripts.wechat_menu $(ARGS)

bench:
	bash scripts/bootstrap.sh
	.venv/bin/python bench/wechat_latency.py $(ARGS)

bench-channels:
	bash scripts/bootstrap.sh
	.venv/bin/python bench/channel_latency.py $(ARGS)

bench-nlu:
	bash scripts/bootstrap.sh
	.venv/bin/python bench/nlu_quality.py $(ARGS)

bench-load:
	bash scripts/bootstrap.sh
	.venv/bin/python bench/inbound_load.py $(ARGS)

# ARGS="--postgres postgresql://postgres@127.0.0.1:5432/test --violations 1000000"
bench-records:
	bash scripts/bootstrap.sh
	.venv/bin/python bench/records_lookup.py $(ARGS)

.PHONY: run prod test chat menu bench bench-channels bench-nlu bench-records bench-load
