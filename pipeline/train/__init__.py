"""Training on megatron-core: the one place in taggant that imports megatron for training.

Modules:

- ``schedule``: which steps are checkpointed (pure; ``run_checkpoint_steps(spec, train_tokens)``)
  and which of them are full (``full_checkpoint_steps``).
- ``disk``: the disk a spec's checkpoints will take (``plan_disk``) and its budget check (pure).
- ``model``: a named preset as a Llama-style megatron ``GPTModel`` (``ModelConfig``,
  ``build_model``) and the process groups it needs (``init_parallel``).
- ``loop``: one rank's training loop (``TrainConfig``, ``Trainer`` with the idempotent
  ``train_until(step)``); megatron DDP, optimizer, LR scheduler and forward-backward schedule.
- ``checkpoint``: the run folder's checkpoints, full or weights-only, committed atomically
  (``Saver``, ``committed_steps``, ``resume_step``, ``read_commit``), the train log
  (``read_train_log``), and ``load_model`` for probes.
- ``cpu_shim``: what megatron-core 0.16 needs to run on a CPU-only torch (installed only then).
- ``prefetch``: the next steps' samples read on a background thread (``Prefetcher``).
- ``local_copy``: the base dataset copied once per node to local disk (``copy_dataset``).

``schedule``, ``disk``, ``prefetch``, ``local_copy`` and the record readers of ``checkpoint`` import
neither torch nor megatron, so drivers and watchers can use them cheaply; this package imports
nothing on its own.
"""
