"""executorctl: the operator's command for a running Executor stack (see __main__.py and the README)."""
