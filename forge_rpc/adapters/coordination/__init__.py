"""State that replicas must share — rate-limit counters, budgets, the response cache, circuit breakers — in two
implementations each: in process (one replica, exact on its event loop) and Redis (shared, atomic scripts).

Import the module you need (`limiter_memory`, `limiter_redis`, `cache_memory`, `cache_redis`…): this package
imports nothing, so using one backend never loads the other's dependencies.
"""
