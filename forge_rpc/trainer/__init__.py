"""forge's built-in trainer programs. They run as subprocesses of a job (the `local` runner) or on a Ray cluster,
and speak the progress protocol on stdout (docs/training-worker-protocol.md). The core never imports this
package: its heavy dependencies (torch, transformers, peft) are the optional `train` extra."""
