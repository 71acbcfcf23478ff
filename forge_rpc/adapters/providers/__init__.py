"""Provider adapters: the only code that talks to LLM providers."""
