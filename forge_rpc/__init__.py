"""forge's core: the async gRPC server and everything behind it."""
