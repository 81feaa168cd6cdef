"""notifier: an rq worker on the `notifications` queue that delivers webhooks with retries."""
