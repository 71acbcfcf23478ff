"""forge's core: the async gRPC server and everything behind it."""

import os

# forge forks only to exec at once (PostgreSQL's tools, trainers, git), the case gRPC says to run without its fork
# handlers: they can only add risk (they wait on gRPC's threads), and they log "skipping fork() handlers" at every
# shutdown. gRPC reads this when it is imported, so it is set here, before any module of forge imports it.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
