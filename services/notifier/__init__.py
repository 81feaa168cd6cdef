"""notifier: an rq worker on the `{EXEC_PREFIX}notifications` queue that delivers webhooks with retries."""
