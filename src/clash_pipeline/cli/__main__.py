"""``python -m clash_pipeline.cli``: the same as the ``clash-pipeline`` command."""

from clash_pipeline.cli import main

main()
