"""taggant's library: the experiment spec, I/O, stages and the record-level logic of every stage.

Nothing here imports ``ray`` at module level; Ray is the execution engine of ``jobs``.
"""
