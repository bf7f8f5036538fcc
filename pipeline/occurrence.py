"""How many tokens of a training sample one occurrence may take.

The data layer (``pipeline.data``) places an item as ``EOD + item + EOD`` between a sample's first
and last tokens, which it never overwrites; ``taggant validate`` (``pipeline.preflight``) checks
item lengths against the same limit without loading the data layer's Parquet and Megatron code.
"""

RESERVED_TOKENS = 3
"""Sample tokens an occurrence can never use: the shared first and last tokens and the EOD that
precedes the item."""


def max_item_tokens(seq_length: int) -> int:
    """Longest item (tokens, EOD not counted) an occurrence can place in a sample."""
    return seq_length - RESERVED_TOKENS
