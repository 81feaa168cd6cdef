"""user_stream: the exchange's user data stream -> the `orders` stream."""
