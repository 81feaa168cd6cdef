"""signal_ingest: tails deltascout.log and publishes each line exactly once as a Signal or a Reject."""
